"""GitSource against real repositories: a bare remote on disk, over git://, and an HTTP 401 server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import structlog
from gitrepo import GitRemote, git, git_daemon, has_git_daemon

from reconciler.errors import FetchError, SourceError, UsageError
from reconciler.loader import load_files
from reconciler.model.limits import InputLimits, SkippedFile, SkipReason
from reconciler.sources.git import GitSource, redact_url
from reconciler.validate.findings import Code

pytestmark = pytest.mark.git

GATEWAY = b"kind: Gateway\nname: public\n"


@pytest.fixture(autouse=True)
def _hermetic_git(monkeypatch: pytest.MonkeyPatch) -> None:
    # GitSource's git subprocesses inherit os.environ: keep the developer's ~/.gitconfig
    # (credential helpers, url rewrites) out of the tests.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def source(remote: GitRemote, state_dir: Path) -> Iterator[GitSource]:
    with GitSource(url=remote.url, branch="main", path="mesh", state_dir=state_dir, timeout_seconds=20) as src:
        yield src


def _reason(excinfo: pytest.ExceptionInfo[SourceError]) -> str:
    return excinfo.value.reason


# -- the happy path ------------------------------------------------------------------


def test_first_poll_returns_head_revision_with_config_files(source: GitSource, remote: GitRemote) -> None:
    revision = source.poll()

    assert revision is not None
    assert revision.sha == remote.head()
    assert dict(revision.files) == {"gateway.yaml": GATEWAY}  # README.md is outside mesh/ anyway
    assert revision.config_tree == git("rev-parse", "HEAD:mesh", cwd=remote.work)
    assert revision.message == "initial mesh config"
    assert revision.author == "Test Author <author@example.test>"
    assert revision.committed_at is not None
    assert source.head_sha == remote.head()
    assert (source.repo_dir / "HEAD").is_file()


def test_same_head_is_not_returned_twice(source: GitSource) -> None:
    assert source.poll() is not None
    assert source.poll() is None
    assert source.poll() is None


def test_commit_outside_config_path_is_skipped(source: GitSource, remote: GitRemote) -> None:
    source.poll()
    readme_sha = remote.commit({"README.md": "# now with docs\n"}, "docs only")

    assert source.poll() is None
    assert source.head_sha == readme_sha


def test_commit_inside_config_path_is_a_new_revision(source: GitSource, remote: GitRemote) -> None:
    source.poll()
    remote.commit({"README.md": "# docs\n"}, "docs only")
    sha = remote.commit({"mesh/routes/reviews.yml": "kind: VirtualService\n"}, "route reviews")

    revision = source.poll()

    assert revision is not None
    assert revision.sha == sha
    assert set(revision.files) == {"gateway.yaml", "routes/reviews.yml"}


def test_the_removal_marker_in_the_config_directory_opts_that_revision_in(source: GitSource, remote: GitRemote) -> None:
    first = source.poll()
    remote.commit({"reconciler-allow-removal": "", "mesh/routes/reviews.yml": "kind: VirtualService\n"}, "root")
    at_root = source.poll()
    remote.commit({"mesh/reconciler-allow-removal": "", "mesh/gateway.yaml": None}, "tear down")
    in_mesh = source.poll()

    assert first is not None
    assert at_root is not None
    assert in_mesh is not None
    assert (first.allow_removal, at_root.allow_removal, in_mesh.allow_removal) == (False, False, True)
    assert set(in_mesh.files) == {"routes/reviews.yml"}


def test_only_visible_yaml_files_are_read(source: GitSource, remote: GitRemote) -> None:
    remote.commit(
        {
            "mesh/notes.txt": "not config",
            "mesh/.hidden/secret.yaml": "kind: Nope\n",
            "mesh/.#gateway.yaml": "editor lock",
            "mesh/nested/deeper/dr.YAML": "kind: DestinationRule\n",
        },
        "assorted files",
    )
    os.symlink("gateway.yaml", remote.work / "mesh" / "link.yaml")
    remote.commit({}, "a symlink")

    with structlog.testing.capture_logs() as logs:
        revision = source.poll()

    assert revision is not None
    assert set(revision.files) == {"gateway.yaml", "nested/deeper/dr.YAML"}
    # Never followed (it may point out of the repository), but never dropped silently either.
    skipped = [entry for entry in logs if entry["event"] == "git.config_file_skipped"]
    assert [(entry["file"], entry["reason"], entry["log_level"]) for entry in skipped] == [
        ("link.yaml", "Symlink", "warning")
    ]
    # ...and the loader turns it into a warning finding.
    assert revision.skipped == (SkippedFile("link.yaml", SkipReason.SYMLINK),)


def test_a_file_over_the_size_limit_is_left_unread_and_a_revision_over_the_total_is_not_read(
    remote: GitRemote, state_dir: Path
) -> None:
    remote.commit({"mesh/big.yaml": "#" * 3000, "mesh/small.yaml": "#" * 1000}, "a big file")
    limits = InputLimits(file_bytes=2048, revision_bytes=4096)
    with GitSource(url=remote.url, path="mesh", state_dir=state_dir, limits=limits) as src:
        revision = src.poll()
    assert revision is not None
    assert set(revision.files) == {"gateway.yaml", "small.yaml"}
    assert revision.skipped == (SkippedFile("big.yaml", SkipReason.FILE_TOO_LARGE, size=3000),)

    remote.commit({"mesh/more.yaml": "#" * 2040, "mesh/small.yaml": "#" * 2040, "mesh/big.yaml": None}, "more")
    with GitSource(url=remote.url, path="mesh", state_dir=state_dir, limits=limits) as src:
        revision = src.poll()
    assert revision is not None
    assert revision.files == {}
    assert revision.skipped == (SkippedFile("more.yaml", SkipReason.REVISION_TOO_LARGE, size=4107, files=3),)


def test_a_file_that_is_not_utf8_is_an_error_finding_not_a_replacement_character(
    source: GitSource, remote: GitRemote
) -> None:
    (remote.work / "mesh" / "latin1.yaml").write_bytes("kind: Gateway\nname: caf\u00e9\n".encode("latin-1"))
    remote.commit({}, "a Latin-1 file")
    revision = source.poll()
    assert revision is not None

    result = load_files(revision.files, skipped=revision.skipped)

    (finding,) = [f for f in result.findings if f.file == "latin1.yaml"]
    assert (finding.code, finding.line) == (Code.NOT_UTF8, 2)
    assert "byte 0xe9 at offset 23" in finding.message


def test_whole_repository_is_read_when_path_is_empty(remote: GitRemote, state_dir: Path) -> None:
    remote.commit({"top.yml": "kind: Sidecar\n"}, "top-level file")
    with GitSource(url=remote.url, state_dir=state_dir) as src:
        revision = src.poll()

    assert revision is not None
    assert set(revision.files) == {"top.yml", "mesh/gateway.yaml"}


def test_revert_is_a_new_revision_with_previous_content(source: GitSource, remote: GitRemote) -> None:
    first = source.poll()
    bad = remote.commit({"mesh/gateway.yaml": "kind: Gateway\nname: broken\n"}, "break the gateway")
    broken = source.poll()
    revert_sha = remote.revert(bad)

    reverted = source.poll()

    assert first is not None
    assert broken is not None
    assert reverted is not None
    assert reverted.sha == revert_sha
    assert reverted.sha not in {first.sha, broken.sha}
    assert reverted.files == first.files
    assert reverted.config_tree == first.config_tree
    assert reverted.message.startswith("Revert")


def test_force_push_rewriting_history_is_followed(source: GitSource, remote: GitRemote) -> None:
    base = remote.head()
    remote.commit({"mesh/gateway.yaml": "kind: Gateway\nname: v2\n"}, "v2")
    old = source.poll()

    with structlog.testing.capture_logs() as logs:
        rewritten = remote.rewrite_to(base, {"mesh/gateway.yaml": "kind: Gateway\nname: v2-amended\n"}, "v2'")
        revision = source.poll()

    assert old is not None
    assert revision is not None
    assert revision.sha == rewritten
    assert revision.files["gateway.yaml"] == b"kind: Gateway\nname: v2-amended\n"
    warnings = [entry for entry in logs if entry["event"] == "git.history_rewritten"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["old"] == old.sha[:12]


def test_fast_forward_is_not_reported_as_rewrite(source: GitSource, remote: GitRemote) -> None:
    source.poll()
    with structlog.testing.capture_logs() as logs:
        remote.commit({"mesh/a.yaml": "kind: A\n"}, "a")
        source.poll()

    assert not [entry for entry in logs if entry["event"] == "git.history_rewritten"]


def test_several_commits_fetched_at_once_are_not_reported_as_rewrite(source: GitSource, remote: GitRemote) -> None:
    source.poll()
    with structlog.testing.capture_logs() as logs:
        remote.commit({"mesh/a.yaml": "kind: A\n"}, "a")
        remote.commit({"mesh/b.yaml": "kind: B\n"}, "b")
        assert source.poll() is not None

    assert not [entry for entry in logs if entry["event"] == "git.history_rewritten"]


def test_a_new_commit_reads_only_the_files_it_changed(source: GitSource, remote: GitRemote) -> None:
    remote.commit({"mesh/a.yaml": "kind: A\n", "mesh/b.yaml": "kind: B\n"}, "a and b")
    first = source.poll()
    remote.commit({"mesh/a.yaml": "kind: A2\n", "mesh/b.yaml": None, "mesh/c.yaml": "kind: C\n"}, "a2, c, no b")

    second = source.poll()

    assert first is not None
    assert second is not None
    assert dict(second.files) == {"gateway.yaml": GATEWAY, "a.yaml": b"kind: A2\n", "c.yaml": b"kind: C\n"}
    # The unchanged file is the very content read before: git was not asked for it again.
    assert second.files["gateway.yaml"] is first.files["gateway.yaml"]


def test_files_read_before_count_toward_the_revision_limit(remote: GitRemote, state_dir: Path) -> None:
    remote.commit({"mesh/small.yaml": "#" * 1000}, "a small file")
    limits = InputLimits(file_bytes=4096, revision_bytes=4096)
    with GitSource(url=remote.url, path="mesh", state_dir=state_dir, limits=limits) as src:
        assert src.poll() is not None
        remote.commit({"mesh/more.yaml": "#" * 3100}, "more")
        revision = src.poll()

    assert revision is not None
    assert revision.files == {}
    size = 1000 + 3100 + len(GATEWAY)
    assert revision.skipped == (SkippedFile("more.yaml", SkipReason.REVISION_TOO_LARGE, size=size, files=3),)


def test_read_returns_any_fetched_commit_without_changing_poll_state(source: GitSource, remote: GitRemote) -> None:
    first_sha = remote.head()
    source.poll()
    remote.commit({"mesh/gateway.yaml": "kind: Gateway\nname: v2\n"}, "v2")
    assert source.poll() is not None

    old = source.read(first_sha)

    assert old.files == {"gateway.yaml": GATEWAY}
    assert source.read().sha == remote.head()
    assert source.poll() is None


def test_reading_an_unknown_commit_is_read_failed_not_a_reclone(source: GitSource) -> None:
    source.poll()
    marker = source.repo_dir / "reconciler-test-marker"
    marker.write_text("same clone")

    for bogus in ("0" * 40, "no-such-ref", "--upload-pack=x"):
        with pytest.raises(SourceError) as excinfo:
            source.read(bogus)
        assert _reason(excinfo) == "ReadFailed"
    assert marker.exists()


def test_concurrent_polls_return_the_revision_once(source: GitSource) -> None:
    start = threading.Barrier(4)

    def poll() -> object:
        start.wait()
        return source.poll()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: poll(), range(4)))

    assert sum(result is not None for result in results) == 1


def test_restart_reuses_existing_clone(remote: GitRemote, state_dir: Path) -> None:
    with GitSource(url=remote.url, path="mesh", state_dir=state_dir) as first:
        first.poll()
    marker = state_dir / "repo" / "reconciler-test-marker"
    marker.write_text("still the same clone")
    sha = remote.commit({"mesh/more.yaml": "kind: More\n"}, "more")

    with GitSource(url=remote.url, path="mesh", state_dir=state_dir) as second:
        revision = second.poll()

    assert revision is not None
    assert revision.sha == sha
    assert marker.exists()


# -- failures --------------------------------------------------------------------------


def test_unreachable_remote_raises_fetch_failed_and_keeps_clone(source: GitSource, remote: GitRemote) -> None:
    good = source.poll()
    hidden = remote.bare.with_name("moved-away.git")
    remote.bare.rename(hidden)
    try:
        with pytest.raises(SourceError) as excinfo:
            source.poll()
    finally:
        hidden.rename(remote.bare)

    assert _reason(excinfo) == FetchError.reason == "FetchFailed"
    assert str(remote.bare) in str(excinfo.value)
    assert (source.repo_dir / "HEAD").is_file()
    assert good is not None
    assert source.read().files == good.files


def test_sync_resumes_when_remote_returns(source: GitSource, remote: GitRemote) -> None:
    source.poll()
    sha = remote.commit({"mesh/gateway.yaml": "kind: Gateway\nname: while-down\n"}, "pushed during outage")
    hidden = remote.bare.with_name("moved-away.git")
    remote.bare.rename(hidden)
    with pytest.raises(SourceError):
        source.poll()
    hidden.rename(remote.bare)

    revision = source.poll()

    assert revision is not None
    assert revision.sha == sha
    assert revision.files["gateway.yaml"] == b"kind: Gateway\nname: while-down\n"


def test_first_clone_of_unreachable_remote_raises_clone_failed(tmp_path: Path, state_dir: Path) -> None:
    src = GitSource(url=str(tmp_path / "nothing-here.git"), state_dir=state_dir)

    with pytest.raises(SourceError) as excinfo:
        src.poll()

    assert _reason(excinfo) == "CloneFailed"
    assert not (state_dir / "repo").exists()
    assert list(state_dir.iterdir()) == []  # the staging directory was cleaned up


def test_missing_branch_is_reported(remote: GitRemote, state_dir: Path) -> None:
    src = GitSource(url=remote.url, branch="does-not-exist", state_dir=state_dir)

    with pytest.raises(SourceError) as excinfo:
        src.poll()

    assert _reason(excinfo) == "BranchNotFound"
    assert "does-not-exist" in str(excinfo.value)


def test_branch_deleted_after_clone_is_reported_and_clone_kept(remote: GitRemote, state_dir: Path) -> None:
    remote.push_branch("release")
    with GitSource(url=remote.url, branch="release", path="mesh", state_dir=state_dir) as src:
        assert src.poll() is not None
        git("push", "--quiet", "origin", "--delete", "release", cwd=remote.work)

        with pytest.raises(SourceError) as excinfo:
            src.poll()

        assert _reason(excinfo) == "BranchNotFound"
        assert src.read().files == {"gateway.yaml": GATEWAY}


def test_missing_config_path_raises_path_not_found_until_it_appears(remote: GitRemote, state_dir: Path) -> None:
    with GitSource(url=remote.url, path="istio/prod", state_dir=state_dir) as src:
        with pytest.raises(SourceError) as excinfo:
            src.poll()
        assert _reason(excinfo) == "PathNotFound"

        remote.commit({"istio/prod/vs.yaml": "kind: VirtualService\n"}, "add prod config")
        revision = src.poll()

    assert revision is not None
    assert dict(revision.files) == {"vs.yaml": b"kind: VirtualService\n"}


def test_corrupt_clone_is_recloned_while_running(source: GitSource, remote: GitRemote) -> None:
    source.poll()
    (source.repo_dir / "HEAD").write_text("this is not a ref\n")
    sha = remote.commit({"mesh/gateway.yaml": "kind: Gateway\nname: after-corruption\n"}, "after")

    revision = source.poll()

    assert revision is not None
    assert revision.sha == sha
    assert (source.repo_dir / "HEAD").read_text() != "this is not a ref\n"


def test_corrupt_clone_found_at_startup_is_replaced(remote: GitRemote, state_dir: Path) -> None:
    broken = state_dir / "repo"
    broken.mkdir()
    (broken / "garbage").write_text("not a repository")

    with GitSource(url=remote.url, path="mesh", state_dir=state_dir) as src:
        revision = src.poll()

    assert revision is not None
    assert not (broken / "garbage").exists()
    assert sorted(entry.name for entry in state_dir.iterdir()) == ["repo"]


def test_failed_reclone_leaves_the_old_directory_in_place(remote: GitRemote, state_dir: Path, tmp_path: Path) -> None:
    broken = state_dir / "repo"
    broken.mkdir()
    (broken / "garbage").write_text("maybe someone's data")
    src = GitSource(url=str(tmp_path / "nothing-here.git"), state_dir=state_dir)

    with pytest.raises(SourceError) as excinfo:
        src.poll()

    assert _reason(excinfo) == "CloneFailed"
    assert (broken / "garbage").exists()


# -- auth over HTTP --------------------------------------------------------------------


class _Always401(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _unauthorised_http_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Always401)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_auth_failure_is_reported_as_auth_failed(state_dir: Path) -> None:
    with _unauthorised_http_server() as port:
        src = GitSource(url=f"http://127.0.0.1:{port}/mesh.git", state_dir=state_dir)
        with pytest.raises(SourceError) as excinfo:
            src.poll()

    assert _reason(excinfo) == "AuthFailed"


def test_rejected_credentials_are_auth_failed_and_never_logged(state_dir: Path) -> None:
    with _unauthorised_http_server() as port, structlog.testing.capture_logs() as logs:
        src = GitSource(url=f"http://deploy:hunter2-token@127.0.0.1:{port}/mesh.git", state_dir=state_dir)
        with pytest.raises(SourceError) as excinfo:
            src.poll()

    assert _reason(excinfo) == "AuthFailed"
    assert "hunter2-token" not in str(excinfo.value)
    assert "hunter2-token" not in repr(logs)
    assert src.url == f"http://deploy:***@127.0.0.1:{port}/mesh.git"


# -- git:// ----------------------------------------------------------------------------


@pytest.mark.skipif(not has_git_daemon(), reason="git daemon is not installed")
def test_clone_over_git_daemon_on_loopback(remote: GitRemote, state_dir: Path) -> None:
    with git_daemon(remote.bare.parent) as port:
        url = f"git://127.0.0.1:{port}/{remote.bare.name}"
        with GitSource(url=url, path="mesh", state_dir=state_dir, timeout_seconds=20) as src:
            first = src.poll()
            # Push through the daemon too (receive-pack is enabled), then fetch it back.
            git("remote", "set-url", "origin", url, cwd=remote.work)
            sha = remote.commit({"mesh/vs.yaml": "kind: VirtualService\n"}, "over git://")
            second = src.poll()

    assert first is not None
    assert first.files == {"gateway.yaml": GATEWAY}
    assert second is not None
    assert second.sha == sha
    with pytest.raises(SourceError) as excinfo:
        src.poll()  # the daemon is gone: connection refused
    assert _reason(excinfo) == "FetchFailed"
    assert src.read().sha == sha


# -- arguments -------------------------------------------------------------------------


@pytest.mark.parametrize("branch", ["", "-upload-pack=evil", "a..b", "has space", "refs/heads/main", "x.lock"])
def test_invalid_branch_names_are_usage_errors(branch: str, state_dir: Path) -> None:
    with pytest.raises(UsageError):
        GitSource(url="https://example.test/mesh.git", branch=branch, state_dir=state_dir)


@pytest.mark.parametrize("url", ["", "--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/x"])
def test_dangerous_urls_are_usage_errors(url: str, state_dir: Path) -> None:
    with pytest.raises(UsageError):
        GitSource(url=url, state_dir=state_dir)


def test_config_path_may_not_escape_the_repository(state_dir: Path) -> None:
    with pytest.raises(UsageError):
        GitSource(url="https://example.test/mesh.git", path="../etc", state_dir=state_dir)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@git.example/m.git", "https://user:***@git.example/m.git"),
        ("https://ghp_token@github.com/o/m.git", "https://***@github.com/o/m.git"),
        ("ssh://git@git.example/m.git", "ssh://git@git.example/m.git"),
        ("git@github.com:o/m.git", "git@github.com:o/m.git"),
        ("/srv/git/m.git", "/srv/git/m.git"),
    ],
)
def test_urls_are_redacted_for_logs(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_state_dir_is_created_when_missing(remote: GitRemote, tmp_path: Path) -> None:
    state = tmp_path / "does" / "not" / "exist"
    with GitSource(url=remote.url, path="mesh", state_dir=state) as src:
        assert src.poll() is not None
    assert (state / "repo").is_dir()
    shutil.rmtree(state)


def test_clone_with_damaged_objects_is_recloned(source: GitSource, remote: GitRemote) -> None:
    source.poll()
    source.close()  # let go of gitpython's cat-file process, as a restart would
    for obj in (source.repo_dir / "objects").rglob("*"):
        if obj.is_file() and obj.parent.name != "info":
            obj.chmod(0o644)
            obj.write_bytes(b"garbage")
    sha = remote.commit({"mesh/gateway.yaml": "kind: Gateway\nname: after-damage\n"}, "after damage")

    revision = source.poll()

    assert revision is not None
    assert revision.sha == sha
    assert revision.files["gateway.yaml"] == b"kind: Gateway\nname: after-damage\n"


def test_damage_found_only_when_reading_triggers_a_reclone(remote: GitRemote, state_dir: Path) -> None:
    with GitSource(url=remote.url, path="mesh", state_dir=state_dir) as first:
        first.poll()
    # Explode the pack into loose objects, then break only the gateway.yaml blob:
    # commits and trees stay intact, so fetch negotiation succeeds and the damage
    # shows only when the restarted source reads the file.
    repo = state_dir / "repo"
    packs = repo / "objects" / "pack"
    for pack in packs.glob("*.pack"):
        moved = pack.rename(repo / pack.name)
        for sibling in packs.glob(f"{pack.stem}.*"):
            sibling.unlink()
        with moved.open("rb") as stream:
            subprocess.run(["git", "unpack-objects", "-q"], cwd=repo, stdin=stream, check=True)
        moved.unlink()
    blob = git("rev-parse", "HEAD:mesh/gateway.yaml", cwd=remote.work)
    loose = repo / "objects" / blob[:2] / blob[2:]
    loose.chmod(0o644)
    loose.write_bytes(b"garbage")

    with structlog.testing.capture_logs() as logs, GitSource(url=remote.url, path="mesh", state_dir=state_dir) as src:
        revision = src.poll()

    assert revision is not None
    assert revision.files == {"gateway.yaml": GATEWAY}
    corrupt = [entry for entry in logs if entry["event"] == "git.clone_corrupt"]
    assert len(corrupt) == 1
    assert [entry["event"] for entry in logs].index("git.clone_corrupt") > [entry["event"] for entry in logs].index(
        "git.fetched"
    )


def test_a_clone_from_a_hung_remote_ends_at_the_timeout_as_fetch_timed_out(state_dir: Path) -> None:
    # A listener that accepts TCP connections (via the backlog) but never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        src = GitSource(url=f"git://127.0.0.1:{port}/mesh.git", state_dir=state_dir, timeout_seconds=1.0)
        started = time.monotonic()
        with pytest.raises(SourceError) as excinfo:
            src.poll()

    assert time.monotonic() - started < 10
    assert _reason(excinfo) == "FetchTimedOut"
    assert "did not finish within 1 s (--git-timeout)" in str(excinfo.value)


def test_a_git_source_cannot_be_watched_so_the_daemon_relies_on_webhooks_and_polls(tmp_path: Path) -> None:
    with GitSource(url=str(tmp_path / "remote.git"), state_dir=tmp_path / "state") as source:
        assert source.watch(lambda: None) is None
