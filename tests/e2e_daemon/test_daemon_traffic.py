"""git push moves real traffic through a real Envoy; a bad commit moves nothing; git revert undoes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from daemon_harness import CLI, Daemon, Mesh, line_of, measure, run_command

from reconciler.harness.envoy import EnvoyProcess

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(120)]

#: 1,000 requests at p = 0.2 have a standard deviation of 1.3 points; 5 points is ~4 of them.
TOLERANCE = 5.0


def logged(daemon: Daemon, event: str) -> list[dict[str, Any]]:
    """The daemon's JSON log entries named ``event``, oldest first."""
    entries = []
    for line in daemon.log_path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a library may write a line that is not JSON
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == event:
                entries.append(entry)
    return entries


def test_a_push_moves_traffic_a_bad_commit_changes_nothing_and_reverts_restore_the_split(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[..., EnvoyProcess]
) -> None:
    daemon = daemons(repo=mesh.repo.url).start()
    daemon.wait_synced(mesh.initial_sha)
    gateway(daemon, mesh)
    daemon.wait_synced(mesh.initial_sha, proxies=1)
    before = measure(mesh)
    assert before.share("v1") == 100.0
    assert before.errors == {}

    canary = mesh.push_weights(80, 20)
    daemon.sync()
    daemon.wait_synced(canary, proxies=1)
    split = measure(mesh)
    assert split.share("v2") == pytest.approx(20, abs=TOLERANCE)
    assert split.share("v1") + split.share("v2") == 100.0

    files = mesh.files(v1=80, v2=20)
    bad_vs = files["mesh/virtualservice.yaml"].replace("subset: v2\n      weight: 20", "subset: v3\n      weight: 20")
    assert bad_vs != files["mesh/virtualservice.yaml"]
    bad = mesh.repo.commit({"mesh/virtualservice.yaml": bad_vs}, "reviews: typo in subset")
    daemon.sync()
    status = daemon.wait_status("the bad commit refused", lambda s: (s["lastError"] or {}).get("sha") == bad)
    assert status["reason"] == "ValidationFailed"
    assert status["served"]["sha"] == canary
    assert [(f["file"], f["line"], f["code"]) for f in status["lastError"]["findings"]] == [
        ("mesh/virtualservice.yaml", line_of(bad_vs, "subset: v3"), "IST0101")
    ]
    # The log names the refused commit and every finding, not only the first (in the message).
    [refused] = [entry for entry in logged(daemon, "engine.pass_failed") if entry["sha"] == bad]
    [finding] = refused["findings"]
    assert finding.startswith(f"mesh/virtualservice.yaml:{line_of(bad_vs, 'subset: v3')} IST0101 ")
    unchanged = measure(mesh)
    assert unchanged.share("v2") == pytest.approx(20, abs=TOLERANCE)
    assert unchanged.share("v1") + unchanged.share("v2") == 100.0

    fixed = mesh.repo.revert(bad)
    daemon.sync()
    status = daemon.wait_synced(fixed, proxies=1)
    assert status["reason"] == "UpToDate"

    undone = mesh.repo.revert(canary)
    daemon.sync()
    daemon.wait_synced(undone, proxies=1)
    assert measure(mesh).share("v1") == 100.0

    # One line per published revision, when every proxy had ACKed it; the revert of the bad commit published nothing.
    assert [entry["sha"] for entry in logged(daemon, "engine.synced")] == [
        mesh.initial_sha[:12],
        canary[:12],
        undone[:12],
    ]

    shown = run_command([*CLI, "status", "--server", daemon.url], timeout=30)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"SERVED   {undone[:12]}" in shown.stdout
    assert shown.stdout.splitlines()[-1].split()[:5] == ["ingress-1", "SYNCED", "SYNCED", "SYNCED", "SYNCED"]
