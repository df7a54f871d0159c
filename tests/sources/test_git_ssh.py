"""SSH deploy keys against a real sshd (its own host key, one authorized deploy key, git-shell only).

The right key with the server's host key in known_hosts fetches; a host key that is not in
known_hosts (or a different one is) is refused by ssh's strict checking; a key the server does
not know is ``AuthFailed``. The private key's text never reaches an error message or a log line,
and nothing of it lands in the clone.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from gitrepo import GitRemote
from sshd_server import GitSshServer, make_key, require_sshd

from reconciler.errors import AuthError, HostKeyError
from reconciler.sources.git import GitSource
from reconciler.sources.git.credentials import GitCredentials

pytestmark = [pytest.mark.git, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GitSource's git and ssh inherit os.environ: keep the developer's ~/.gitconfig and ~/.ssh out.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def sshd() -> Path:
    return require_sshd()


@pytest.fixture
def server(sshd: Path, tmp_path: Path) -> Iterator[GitSshServer]:
    with GitSshServer(sshd, tmp_path / "sshd") as running:
        yield running


def _private_key_lines(key: Path) -> list[str]:
    """The base64 lines of a private key: what must never be shown anywhere."""
    return [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]


def _poll(remote: GitRemote, server: GitSshServer, state_dir: Path, credentials: GitCredentials) -> object:
    with GitSource(url=server.url(remote.bare), path="mesh", state_dir=state_dir, credentials=credentials) as source:
        return source.poll()


def test_the_deploy_key_and_the_servers_host_key_in_known_hosts_fetch_the_config(
    remote: GitRemote, server: GitSshServer, state_dir: Path, tmp_path: Path
) -> None:
    credentials = GitCredentials(ssh_key=server.deploy_key, known_hosts=server.known_hosts(tmp_path / "known_hosts"))

    revision = _poll(remote, server, state_dir, credentials)

    assert revision is not None
    assert revision.sha == remote.head()  # type: ignore[attr-defined]
    assert "Accepted publickey" in server.log
    stored = b"".join(path.read_bytes() for path in state_dir.rglob("*") if path.is_file())
    assert all(line.encode() not in stored for line in _private_key_lines(server.deploy_key))


def test_git_shell_lets_the_deploy_key_run_git_and_nothing_else(server: GitSshServer, tmp_path: Path) -> None:
    known_hosts = server.known_hosts(tmp_path / "known_hosts")
    command = ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known_hosts}", "-i", str(server.deploy_key)]
    command += ["-p", str(server.port), f"{server.user}@127.0.0.1", "cat /etc/passwd"]

    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode != 0
    assert "root:" not in done.stdout
    assert "unrecognized command" in done.stderr


def test_a_host_key_missing_from_known_hosts_is_refused_as_host_key_rejected_saying_what_to_do(
    remote: GitRemote, server: GitSshServer, state_dir: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    credentials = GitCredentials(ssh_key=server.deploy_key, known_hosts=empty)

    with pytest.raises(HostKeyError) as excinfo:
        _poll(remote, server, state_dir, credentials)

    assert excinfo.value.reason == "HostKeyRejected"
    assert str(excinfo.value).endswith(
        f"failed: Host key verification failed: the SSH host key of [127.0.0.1]:{server.port} is not in the "
        "known_hosts file (--git-known-hosts); add it (ssh-keyscan the host and check the fingerprint with its admins)"
    )
    assert "Accepted publickey" not in server.log  # refused before the key was offered
    assert not (state_dir / "repo").exists()


def test_a_changed_host_key_is_refused_like_an_unknown_one(
    remote: GitRemote, server: GitSshServer, state_dir: Path, tmp_path: Path
) -> None:
    # known_hosts names the address with another key: a man in the middle, or a reinstalled server.
    impostor = make_key(tmp_path / "impostor", comment="impostor")
    public = (tmp_path / "impostor.pub").read_text().split()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{server.port} {public[0]} {public[1]}\n")
    credentials = GitCredentials(ssh_key=server.deploy_key, known_hosts=known_hosts)

    with pytest.raises(HostKeyError) as excinfo:
        _poll(remote, server, state_dir, credentials)

    served = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(server.host_key)], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()[1]
    assert impostor.exists()
    assert str(excinfo.value).endswith(
        f"failed: Host key verification failed: the SSH host key of [127.0.0.1]:{server.port} differs from the one "
        f"in the known_hosts file (--git-known-hosts); it sent {served} (a reinstalled server, or someone in between): "
        "refused"
    )


def test_a_key_the_server_does_not_know_is_auth_failed_and_its_text_is_in_no_message_or_log(
    remote: GitRemote, server: GitSshServer, state_dir: Path, tmp_path: Path
) -> None:
    wrong = make_key(tmp_path / "wrong_key", comment="wrong")
    credentials = GitCredentials(ssh_key=wrong, known_hosts=server.known_hosts(tmp_path / "known_hosts"))

    with structlog.testing.capture_logs() as logs, pytest.raises(AuthError) as excinfo:
        _poll(remote, server, state_dir, credentials)

    assert excinfo.value.reason == "AuthFailed"
    assert "Permission denied (publickey)" in str(excinfo.value)
    assert "Accepted publickey" not in server.log
    shown = str(excinfo.value) + repr(logs)
    assert [event["reason"] for event in logs if event["event"] == "git.clone_failed"] == ["AuthFailed"]
    for key in (wrong, server.deploy_key):
        assert all(line not in shown for line in _private_key_lines(key))
