"""GitSource when things go wrong locally or at shutdown: abort() on a hung remote, a full or unwritable state dir."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import small_disk
import structlog
from gitrepo import GitRemote, git, git_daemon, has_git_daemon
from stalling_remote import StallingRemote

from reconciler.errors import FetchTimeoutError, SourceAborted, SourceError, StateDirNotWritableError
from reconciler.sources.git import GitSource

pytestmark = pytest.mark.git


@pytest.fixture(autouse=True)
def _hermetic_git(monkeypatch: pytest.MonkeyPatch) -> None:
    # GitSource's git subprocesses inherit os.environ: keep the developer's ~/.gitconfig out.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def _events(logs: list[dict[str, object]]) -> list[object]:
    return [entry["event"] for entry in logs]


def _cloned_sha(state_dir: Path) -> str:
    return git("rev-parse", "refs/remotes/origin/main", cwd=state_dir / "repo")


# -- abort() ---------------------------------------------------------------------------


class _SilentServer:
    """A TCP listener on loopback that accepts connections and never says a word."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            self.connections.append(connection)
            self.connected.set()

    def peer_closed(self, timeout: float) -> bool:
        """Whether the first client closed its end (its process is gone) within ``timeout`` seconds."""
        connection = self.connections[0]
        connection.settimeout(timeout)
        try:
            while connection.recv(4096):
                pass  # an HTTP request line and headers; git:// sends its request too
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return True

    def close(self) -> None:
        # shutdown() wakes the accept() blocked in the thread; close() alone does not (Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)
        for connection in self.connections:
            connection.close()


@contextmanager
def _silent_server() -> Iterator[_SilentServer]:
    server = _SilentServer()
    try:
        yield server
    finally:
        server.close()


def _poll_in_thread(src: GitSource) -> tuple[threading.Thread, list[Exception]]:
    raised: list[Exception] = []

    def run() -> None:
        try:
            src.poll()
        except Exception as error:  # handed to the test to assert on
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


@pytest.mark.skipif(not has_git_daemon(), reason="git daemon is not installed")
def test_a_fetch_from_a_remote_that_stops_answering_times_out_keeps_the_clone_and_the_next_poll_recovers(
    remote: GitRemote, state_dir: Path
) -> None:
    with git_daemon(remote.bare.parent) as port, StallingRemote(port) as front:
        url = f"git://127.0.0.1:{front.port}/{remote.bare.name}"
        with GitSource(url=url, path="mesh", state_dir=state_dir, timeout_seconds=1.0) as src:
            assert src.poll() is not None
            before = _cloned_sha(state_dir)
            front.stall()
            newer = remote.commit({"mesh/gateway.yaml": "kind: Gateway\nname: renamed\n"}, "rename the gateway")
            with pytest.raises(FetchTimeoutError) as excinfo:
                src.poll()
            kept = _cloned_sha(state_dir)
            front.answer()
            revision = src.poll()

    assert excinfo.value.reason == "FetchTimedOut"
    assert f"git fetch of {url} (branch 'main') failed: did not finish within 1 s" in str(excinfo.value)
    assert front.stalled == 1
    assert kept == before
    assert revision is not None
    assert revision.sha == newer


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_abort_ends_a_fetch_hung_on_a_silent_remote_and_keeps_the_clone(
    scheme: str, remote: GitRemote, state_dir: Path
) -> None:
    with GitSource(url=remote.url, path="mesh", state_dir=state_dir) as first:
        first.poll()
    before = _cloned_sha(state_dir)

    with _silent_server() as server, structlog.testing.capture_logs() as logs:
        # The same clone, now pointed at a remote that hangs; timeout far beyond the test's patience.
        src = GitSource(url=f"{scheme}://127.0.0.1:{server.port}/mesh.git", state_dir=state_dir, timeout_seconds=300)
        thread, raised = _poll_in_thread(src)
        assert server.connected.wait(timeout=20), "git never connected to the silent remote"
        started = time.monotonic()
        src.abort()
        thread.join(timeout=10)
        elapsed = time.monotonic() - started
        # For http the socket belongs to git-remote-http, a child of git fetch: it must die too.
        helper_gone = server.peer_closed(timeout=5)

    assert not thread.is_alive(), "poll() still running 10 s after abort()"
    assert elapsed < 5
    assert len(raised) == 1
    assert isinstance(raised[0], SourceError)
    assert raised[0].reason == SourceAborted.reason == "Aborted"
    assert helper_gone
    assert "git.cloning" not in _events(logs)
    assert "git.clone_corrupt" not in _events(logs)
    assert _cloned_sha(state_dir) == before
    assert sorted(entry.name for entry in state_dir.iterdir()) == ["repo"]


def test_stalled_http_transfer_is_ended_by_git_low_speed_limit(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon's environment wins over the built-in 1000 bytes/s for 30 s; 1 s keeps the test short.
    monkeypatch.setenv("GIT_HTTP_LOW_SPEED_TIME", "1")
    with _silent_server() as server:
        src = GitSource(url=f"http://127.0.0.1:{server.port}/mesh.git", state_dir=state_dir, timeout_seconds=300)
        started = time.monotonic()
        with pytest.raises(SourceError) as excinfo:
            src.poll()

    assert time.monotonic() - started < 15
    assert excinfo.value.reason == "CloneFailed"
    assert "too slow" in str(excinfo.value).lower()  # git's own verdict, not our timeout


def test_abort_during_the_first_clone_leaves_no_partial_clone(state_dir: Path) -> None:
    with _silent_server() as server:
        src = GitSource(url=f"git://127.0.0.1:{server.port}/mesh.git", state_dir=state_dir, timeout_seconds=300)
        thread, raised = _poll_in_thread(src)
        assert server.connected.wait(timeout=20), "git never connected to the silent remote"
        src.abort()
        thread.join(timeout=10)

    assert not thread.is_alive()
    assert [getattr(error, "reason", error) for error in raised] == ["Aborted"]
    assert list(state_dir.iterdir()) == []  # neither repo nor the staging directory


def test_polls_after_abort_raise_at_once_without_fetching(remote: GitRemote, state_dir: Path) -> None:
    with GitSource(url=remote.url, path="mesh", state_dir=state_dir) as src:
        first = src.poll()
        remote.commit({"mesh/gateway.yaml": "kind: Gateway\nname: after-abort\n"}, "pushed during shutdown")
        src.abort()  # nothing running: it still makes the source refuse new network work

        with pytest.raises(SourceError) as polled:
            src.poll()
        with pytest.raises(SourceError) as fetched:
            src.fetch()
        kept = src.read()

    assert polled.value.reason == fetched.value.reason == "Aborted"
    assert first is not None
    assert _cloned_sha(state_dir) == first.sha  # the new commit was never fetched
    assert kept.files == first.files  # the local clone is still readable


# -- a state dir that cannot be written ------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a disk that really fills up. Needs root (and mount rights), else the test is skipped."""
    with small_disk.small_tmpfs(tmp_path / "tmpfs", size="2m") as mountpoint:
        yield mountpoint


def test_full_disk_is_state_dir_not_writable_and_never_triggers_a_reclone(remote: GitRemote, small_tmpfs: Path) -> None:
    with GitSource(url=remote.url, path="mesh", state_dir=small_tmpfs) as src:
        src.poll()
        before = _cloned_sha(small_tmpfs)
        # Random bytes do not compress: the fetch has to write ~300 KiB of objects.
        pushed = remote.commit({"mesh/blob.txt": os.urandom(150_000).hex()}, "bigger than the free space")
        filler = small_disk.fill(small_tmpfs)

        with structlog.testing.capture_logs() as logs:
            for _retry in range(2):
                with pytest.raises(SourceError) as excinfo:
                    src.poll()
                assert excinfo.value.reason == StateDirNotWritableError.reason == "StateDirNotWritable"
                assert "No space left on device" in str(excinfo.value)
        assert "git.cloning" not in _events(logs)
        assert "git.clone_corrupt" not in _events(logs)
        assert _cloned_sha(small_tmpfs) == before

        filler.unlink()
        revision = src.poll()

    assert revision is not None
    assert revision.sha == pushed


def test_changed_url_on_a_full_disk_is_state_dir_not_writable_not_corruption(
    remote: GitRemote, small_tmpfs: Path
) -> None:
    with GitSource(url=remote.url, path="mesh", state_dir=small_tmpfs) as first:
        expected = first.poll()
    filler = small_disk.fill(small_tmpfs)

    # The same remote under another URL: remote.origin.url has to be rewritten, and cannot be.
    with (
        structlog.testing.capture_logs() as logs,
        GitSource(url=f"file://{remote.bare}", state_dir=small_tmpfs) as src,
        pytest.raises(SourceError) as excinfo,
    ):
        src.poll()
    filler.unlink()
    with GitSource(url=remote.url, path="mesh", state_dir=small_tmpfs) as same_url:
        # Full again: with an unchanged URL nothing needs writing, so an up-to-date poll works.
        small_disk.fill(small_tmpfs)
        revision = same_url.poll()

    assert excinfo.value.reason == "StateDirNotWritable"
    assert "git.cloning" not in _events(logs)
    assert "git.clone_corrupt" not in _events(logs)
    assert revision is not None
    assert expected is not None
    assert revision.sha == expected.sha


_FAKE_GIT = """#!/bin/sh
case "$1" in
fetch)
    printf '%s\\n' "$FAKE_GIT_FETCH_STDERR" >&2
    exit 128
    ;;
esac
exec "$REAL_GIT" "$@"
"""


@pytest.fixture
def fetch_fails_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Put a git first on PATH whose ``fetch`` fails with the given stderr; every other command is the real git."""
    real_git = shutil.which("git")
    assert real_git is not None
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    fake = bin_dir / "git"
    fake.write_text(_FAKE_GIT)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)

    def install(stderr: str) -> None:
        monkeypatch.setenv("REAL_GIT", real_git)
        monkeypatch.setenv("FAKE_GIT_FETCH_STDERR", stderr)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    return install


# Real stderr of git 2.39 for a state dir it cannot write, captured on a full tmpfs and as an
# unprivileged user on a read-only clone; replayed by a fake git so the test runs without root.


@pytest.mark.parametrize(
    "stderr",
    [
        "fatal: unable to write loose object file: No space left on device\nfatal: unpack-objects failed",
        "error: insufficient permission for adding an object to repository database ./objects\n"
        "fatal: failed to write object\nfatal: unpack-objects failed",
        "error: unable to create temporary file: Read-only file system\nfatal: index-pack failed",
        "fatal: Unable to create '/var/lib/reconciler/repo/packed-refs.lock': Permission denied",
    ],
    ids=["disk-full", "insufficient-permission", "read-only", "permission-denied"],
)
def test_unwritable_state_dir_messages_are_not_read_as_corruption(
    stderr: str, remote: GitRemote, state_dir: Path, fetch_fails_with: Callable[[str], None]
) -> None:
    with GitSource(url=remote.url, path="mesh", state_dir=state_dir) as first:
        first.poll()
    fetch_fails_with(stderr)

    with (
        structlog.testing.capture_logs() as logs,
        GitSource(url=remote.url, path="mesh", state_dir=state_dir) as src,
        pytest.raises(SourceError) as excinfo,
    ):
        src.poll()

    assert excinfo.value.reason == "StateDirNotWritable"
    assert "git.cloning" not in _events(logs)


def test_remote_side_permission_denied_is_not_blamed_on_the_state_dir(
    remote: GitRemote, state_dir: Path, fetch_fails_with: Callable[[str], None]
) -> None:
    with GitSource(url=remote.url, path="mesh", state_dir=state_dir) as first:
        first.poll()
    # The server's own trouble, relayed on "remote:" lines.
    fetch_fails_with("remote: fatal: unable to open object: Permission denied")

    with GitSource(url=remote.url, path="mesh", state_dir=state_dir) as src, pytest.raises(SourceError) as excinfo:
        src.poll()

    assert excinfo.value.reason == "FetchFailed"
