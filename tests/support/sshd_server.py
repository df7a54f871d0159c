"""A real sshd on loopback that serves git only, to one deploy key: for the SSH credential tests.

:func:`sshd_binary` installs Debian's openssh-server once (``install_sshd.sh`` beside this file)
and returns sshd's path; where that is impossible here (no apt, no root, no network) it raises
:class:`SshdUnavailable` with the reason, and the tests skip with it, or fail under CI (``CI`` set),
like tests/kube does with its API server.

:class:`GitSshServer` writes its own host key, an ``authorized_keys`` holding one generated deploy
key (``restrict``: no tty, no forwarding) and an ``sshd_config`` that forces ``git-shell`` (so the key
can run ``git-upload-pack`` and nothing else), then runs ``sshd -D -e`` on a free port of
127.0.0.1 as the current user. Paths in its URLs are absolute: ``ssh://USER@127.0.0.1:PORT/abs/repo.git``.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from reconciler.harness.envoy import free_port
from reconciler.harness.lifecycle import stop_process

__all__ = ["INSTALL_SCRIPT", "GitSshServer", "SshdUnavailable", "make_key", "require_sshd", "sshd_binary"]

INSTALL_SCRIPT = Path(__file__).resolve().parent / "install_sshd.sh"
#: The script's exit status for "impossible on this machine".
_IMPOSSIBLE = 3
#: sshd is up in well under a second; headroom for a loaded machine.
_START_TIMEOUT = 30.0


class SshdUnavailable(Exception):
    """sshd cannot be installed on this machine (the reason is the message)."""


def sshd_binary() -> Path:
    """Debian's sshd, installed first when missing; raises SshdUnavailable where that is impossible."""
    if shutil.which("bash") is None or shutil.which("flock") is None:
        raise SshdUnavailable("bash and flock are needed to install openssh-server")
    if shutil.which("ssh-keygen") is None or shutil.which("git-shell") is None:
        raise SshdUnavailable("ssh-keygen (openssh-client) and git-shell (git) are needed")
    done = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600, check=False)
    if done.returncode == _IMPOSSIBLE:
        raise SshdUnavailable(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "install impossible")
    if done.returncode != 0:
        raise RuntimeError(f"installing openssh-server failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def require_sshd() -> Path:
    """:func:`sshd_binary`, or skip the test saying why it is missing; under CI (``CI`` set) fail instead."""
    try:
        return sshd_binary()
    except SshdUnavailable as reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SSH tests, but: {reason}")
        pytest.skip(f"no sshd on this machine: {reason}")


def make_key(path: Path, *, comment: str = "reconciler-test") -> Path:
    """A new ed25519 key pair at ``path`` (private, mode 0600) and ``path.pub``; returns ``path``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path


class GitSshServer:
    """Use as ``with GitSshServer(sshd, root) as server:``; ``server.url(bare)``, ``server.deploy_key``."""

    def __init__(self, sshd: Path, root: Path) -> None:
        self._sshd = sshd
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.host_key = make_key(root / "ssh_host_ed25519_key", comment="host")
        self.deploy_key = make_key(root / "deploy_key", comment="deploy")
        authorized = root / "authorized_keys"
        authorized.write_text(f"restrict {(root / 'deploy_key.pub').read_text().strip()}\n")
        self.port = free_port()
        self._config = root / "sshd_config"
        self._config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    f"AllowUsers {self.user}",
                    # The test's files live under a world-readable tmp dir; sshd's ownership checks would refuse them.
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    # git only: git-shell runs git-upload-pack (and receive-pack) on a path, nothing else.
                    'ForceCommand git-shell -c "$SSH_ORIGINAL_COMMAND"',
                    "AllowTcpForwarding no",
                    "X11Forwarding no",
                    "PermitTTY no",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        self.log_path = root / "sshd.log"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, bare: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{bare.resolve()}"

    def known_hosts(self, path: Path) -> Path:
        """A known_hosts file at ``path`` holding this server's host key for its address and port."""
        public = (self.root / "ssh_host_ed25519_key.pub").read_text().split()
        path.write_text(f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n")
        return path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> GitSshServer:
        if os.geteuid() == 0:
            # Privilege separation needs this directory; Debian's service creates it at boot, tests run without.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(self._sshd), "-D", "-e", "-f", str(self._config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self._process.returncode}:\n{self.log[-4000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as probe:
                    if probe.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        stop_process(self._process, timeout=5)
        raise RuntimeError(f"sshd did not answer on 127.0.0.1:{self.port}:\n{self.log[-4000:]}")

    def __exit__(self, *_: object) -> None:
        if self._process is not None:
            stop_process(self._process, timeout=5)
