"""A daemon following a private remote over SSH: a real sshd, a deploy key, known_hosts checking.

The daemon serves the remote's head with the deploy key; restarted with a known_hosts that does
not hold the server's key it keeps serving its last good revision and says ``HostKeyRejected``;
with a key the server does not know, ``AuthFailed``. The private key's text is then searched for
in everything the daemon showed: its log, status, metrics, every command line seen meanwhile
(``ps``) and every file under its state dir.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from command_lines import CommandLines
from daemon_harness import Daemon, Mesh
from sshd_server import GitSshServer, make_key, require_sshd

pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads command lines from /proc"),
    pytest.mark.timeout(180),
]


def _key_lines(key: Path) -> list[str]:
    return [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]


def _failed_with(reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: bool(status["lastError"]) and status["lastError"]["message"].startswith(f"{reason}: ")


def test_a_deploy_key_serves_the_remote_an_unknown_host_or_wrong_key_is_named_and_the_key_is_never_shown(
    mesh: Mesh, daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    sshd = require_sshd()
    wrong = make_key(tmp_path / "wrong_key", comment="wrong")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    outputs: dict[str, str] = {}

    with GitSshServer(sshd, tmp_path / "sshd") as server, CommandLines().running() as ps:
        known_hosts = server.known_hosts(tmp_path / "known_hosts")
        daemon = daemons(
            repo=server.url(mesh.repo.bare),
            extra_args=["--git-ssh-key", str(server.deploy_key), "--git-known-hosts", str(known_hosts)],
        )
        daemon.start()
        synced = daemon.wait_synced(mesh.initial_sha, timeout=60)
        outputs["status with the key"] = json.dumps(daemon.status())
        daemon.stop()

        # The same daemon, restarted with a known_hosts that does not hold the server's key.
        daemon.extra_args = ("--git-ssh-key", str(server.deploy_key), "--git-known-hosts", str(empty))
        daemon.start()
        unknown_host = daemon.wait_status("HostKeyRejected", _failed_with("HostKeyRejected"), timeout=60)
        outputs["status of an unknown host"] = json.dumps(unknown_host)
        daemon.stop()

        # And with a key the server does not know.
        daemon.extra_args = ("--git-ssh-key", str(wrong), "--git-known-hosts", str(known_hosts))
        daemon.start()
        wrong_key = daemon.wait_status("AuthFailed", _failed_with("AuthFailed"), timeout=60)
        outputs["status of a wrong key"] = json.dumps(wrong_key)
        with urllib.request.urlopen(daemon.url + "/metrics", timeout=10) as metrics:
            outputs["metrics"] = metrics.read().decode()
        daemon.stop()
        accepted = server.log.count("Accepted publickey")

    assert synced["served"]["sha"] == mesh.initial_sha
    assert "is not in the known_hosts file (--git-known-hosts)" in unknown_host["lastError"]["message"]
    assert "Permission denied (publickey)" in wrong_key["lastError"]["message"]
    for refused in (unknown_host, wrong_key):
        assert refused["served"]["sha"] == mesh.initial_sha  # the last good revision, restored, keeps serving
        assert refused["ready"] is True
    assert accepted >= 1  # the deploy key was used, and only while it was given
    ssh_children = [line for line in ps.seen if line.startswith("ssh ") and "BatchMode=yes" in line]
    assert ssh_children, "no ssh child was seen: the command lines were not sampled"
    assert all("StrictHostKeyChecking=yes" in line for line in ssh_children)

    outputs["log"] = daemon.log_path.read_text(errors="replace")
    outputs.update({f"command line {number}": line for number, line in enumerate(sorted(ps.seen))})
    files = (path for path in daemon.state_dir.rglob("*") if path.is_file())
    outputs.update({f"state file {path}": path.read_bytes().decode(errors="replace") for path in files})
    for key in (server.deploy_key, wrong):
        for line in _key_lines(key):
            leaks = [name for name, text in outputs.items() if line in text]
            assert leaks == [], f"a line of {key.name} appears in {leaks}"
