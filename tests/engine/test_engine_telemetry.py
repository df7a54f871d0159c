"""The daemon's Prometheus registry shows each rollout's phase and step, and counts its decisions."""

from __future__ import annotations

from memsource import EngineFactory, MemorySource, ack_all
from rollout_yaml import policy_yaml
from test_engine_rollouts import Mesh, Run, mesh_of, start_v2_rollout

from reconciler.engine.telemetry import DaemonMetrics
from reconciler.rollout.decide import Phase

LABELS = {"namespace": "default", "policy": "reviews"}


def watched(source: MemorySource, make_engine: EngineFactory, run: Run) -> tuple[Mesh, DaemonMetrics]:
    mesh, cache = mesh_of(source, make_engine, run)
    telemetry = DaemonMetrics(cache=cache)
    telemetry.watch_rollouts(mesh.controller)
    return mesh, telemetry


def phases(telemetry: DaemonMetrics) -> dict[str, float | None]:
    return {
        phase.value: telemetry.registry.get_sample_value("reconciler_rollout_phase", {**LABELS, "phase": phase.value})
        for phase in Phase
    }


def test_a_walking_rollout_shows_its_phase_and_step_and_a_promotion_is_counted_once_every_proxy_acked_the_goal(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    mesh, telemetry = watched(source, make_engine, run)
    assert telemetry.registry.get_sample_value("reconciler_rollout_step", LABELS) is None
    start_v2_rollout(mesh, policy_yaml(steps="10, 50", interval="30s", min_requests=100))
    ack_all(mesh.gateway)
    mesh.later(31, canary=(200, 0), stable=1_000)

    assert telemetry.registry.get_sample_value("reconciler_rollout_step", LABELS) == 1
    assert phases(telemetry) == {phase.value: float(phase is Phase.PROGRESSING) for phase in Phase}

    ack_all(mesh.gateway)
    mesh.later(31, canary=(200, 0), stable=1_000)
    ack_all(mesh.gateway)

    assert phases(telemetry)["Succeeded"] == 1
    assert telemetry.registry.get_sample_value("reconciler_rollout_promotions_total", LABELS) == 1
    assert telemetry.registry.get_sample_value("reconciler_rollout_rollbacks_total", LABELS) is None
    advances = telemetry.registry.get_sample_value(
        "reconciler_rollout_decisions_total", {**LABELS, "action": "advance"}
    )
    assert advances == 2  # the start and step 1


def test_a_rollback_is_counted_and_the_phase_gauge_moves_to_rolled_back(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    mesh, telemetry = watched(source, make_engine, run)
    start_v2_rollout(mesh, policy_yaml(steps="10, 50", min_requests=20, interval="2s"))
    ack_all(mesh.gateway)

    mesh.later(3, canary=(100, 30), stable=900)

    assert phases(telemetry)["RolledBack"] == 1
    assert phases(telemetry)["Progressing"] == 0
    assert telemetry.registry.get_sample_value("reconciler_rollout_rollbacks_total", LABELS) == 1
    rollbacks = telemetry.registry.get_sample_value(
        "reconciler_rollout_decisions_total", {**LABELS, "action": "roll_back"}
    )
    assert rollbacks == 1
