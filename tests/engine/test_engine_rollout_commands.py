"""A user's pause, resume, promote and abort act on a running rollout at once; inapplicable ones are refused."""

from __future__ import annotations

import pytest
from memsource import ack_all
from rollout_yaml import policy_yaml
from test_engine_rollouts import POLICY, V1, V2, Mesh, mesh, start_v2_rollout

from reconciler.engine.origin import Change
from reconciler.errors import RolloutCommandError, RolloutNotFoundError
from reconciler.rollout.decide import Command, Phase

__all__ = ["mesh"]

HEALTHY = (200, 0)


def walking(mesh: Mesh) -> None:
    """A rollout 100/0 → 0/100 in steps 10, 50; its first step served and ACKed."""
    start_v2_rollout(mesh, policy_yaml(steps="10, 50", interval="30s", min_requests=100))
    ack_all(mesh.gateway)
    assert mesh.served() == {V1: 90, V2: 10}


def test_a_paused_rollout_holds_its_step_through_healthy_traffic_and_a_resume_walks_on(mesh: Mesh) -> None:
    walking(mesh)

    paused = mesh.controller.command(POLICY, Command.PAUSE)
    mesh.later(31, canary=HEALTHY, stable=1_000)
    mesh.later(600, canary=HEALTHY, stable=1_000)

    assert (paused.phase, paused.step) == ("Paused", 0)
    assert mesh.phase() is Phase.PAUSED
    assert mesh.served() == {V1: 90, V2: 10}

    resumed = mesh.controller.command(POLICY, Command.RESUME)
    assert resumed.phase == "Progressing"
    # The step starts over at the resume: counts from before it are not judged.
    assert resumed.acked_at == mesh.clock.now
    mesh.later(31, canary=HEALTHY, stable=1_000)

    assert mesh.served() == {V1: 50, V2: 50}


def test_a_promote_serves_the_next_step_now_and_a_full_promote_serves_the_goal_now(mesh: Mesh) -> None:
    walking(mesh)

    promoted = mesh.controller.command(POLICY, Command.PROMOTE)

    assert mesh.served() == {V1: 50, V2: 50}
    assert (promoted.phase, promoted.step, promoted.message) == ("Progressing", 1, "promoted by a user (promote)")
    origin = mesh.engine.status.origin
    assert origin is not None
    assert (origin.change, origin.step) == (Change.ROLLOUT_STEP, "step 2 (50%)")

    finished = mesh.controller.command(POLICY, Command.PROMOTE_FULL)
    ack_all(mesh.gateway)

    assert mesh.served() == {V2: 100}
    assert (finished.step, finished.steps) == (2, 2)
    assert mesh.phase() is Phase.SUCCEEDED


def test_an_abort_serves_the_pre_rollout_weights_and_ends_the_rollout_aborted(mesh: Mesh) -> None:
    walking(mesh)
    mesh.controller.command(POLICY, Command.PROMOTE)

    aborted = mesh.controller.command(POLICY, Command.ABORT)

    assert mesh.served() == {V1: 100}
    assert aborted.phase == "Aborted"
    assert aborted.served["default/reviews#1"] == {"reviews.example.com:v1": 100, "reviews.example.com:v2": 0}
    origin = mesh.engine.status.origin
    assert origin is not None
    assert origin.change is Change.ROLLBACK
    assert [entry.record.reason for entry in mesh.controller.records(POLICY)][-1] == "aborted by a user"


def test_the_document_a_command_returns_is_the_one_the_status_api_shows(mesh: Mesh) -> None:
    walking(mesh)

    paused = mesh.controller.command(POLICY, Command.PAUSE)

    assert mesh.controller.documents() == (paused,)


@pytest.mark.parametrize(
    ("before", "command", "why"),
    [
        ((), Command.RESUME, "it is not paused or stalled"),
        ((Command.PAUSE,), Command.PAUSE, "it is already paused"),
        ((Command.PROMOTE_FULL,), Command.PROMOTE, "it already serves git's weights"),
        ((Command.ABORT,), Command.RESUME, "the rollout has ended: Aborted"),
        ((Command.ABORT,), Command.ABORT, "the rollout has ended: Aborted"),
    ],
)
def test_a_command_that_does_not_apply_to_the_phase_is_refused_and_changes_nothing(
    mesh: Mesh, before: tuple[Command, ...], command: Command, why: str
) -> None:
    walking(mesh)
    for earlier in before:
        mesh.controller.command(POLICY, earlier)
    documents, served = mesh.controller.documents(), mesh.served()

    with pytest.raises(RolloutCommandError, match=why):
        mesh.controller.command(POLICY, command)

    assert (mesh.controller.documents(), mesh.served()) == (documents, served)


def test_a_command_for_a_policy_with_no_rollout_is_not_found(mesh: Mesh) -> None:
    walking(mesh)

    with pytest.raises(RolloutNotFoundError, match="no rollout under RolloutPolicy default/ratings"):
        mesh.controller.command("default/ratings", Command.PAUSE)
