"""Fault points (test-only): off unless RECONCILER_FAULT names one, and a bad value is a usage error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.engine import faults
from reconciler.engine.faults import ENV_VAR, Fault, FaultPoint, arm_from_environment, reached
from reconciler.errors import UsageError


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    yield
    arm_from_environment({})


def test_no_fault_is_armed_without_the_variable_and_reaching_a_point_does_nothing() -> None:
    assert arm_from_environment({}) is None

    for point in FaultPoint:
        reached(point, sha="0" * 40)  # still alive


def test_the_variable_arms_one_point_for_revisions_whose_sha_starts_with_the_prefix() -> None:
    armed = arm_from_environment({ENV_VAR: "mid-state-save:kill:ABC123"})

    assert armed == Fault(FaultPoint.MID_STATE_SAVE, "abc123")
    reached(FaultPoint.MID_STATE_SAVE, sha="abd" + "0" * 37)  # another revision: alive
    reached(FaultPoint.AFTER_FETCH, sha="abc123" + "0" * 34)  # another point: alive


def test_reaching_the_armed_point_for_its_revision_kills_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, signum: killed.append((pid, signum)))
    arm_from_environment({ENV_VAR: "after-validation:kill"})

    reached(FaultPoint.AFTER_VALIDATION, sha="f" * 40)

    assert killed == [(faults.os.getpid(), faults.signal.SIGKILL)]


@pytest.mark.parametrize("spec", ["after-fetch", "after-fetch:crash", "before-fetch:kill", ":kill"])
def test_a_value_that_is_not_point_kill_is_a_usage_error_naming_the_points(spec: str) -> None:
    with pytest.raises(UsageError, match="after-fetch, after-validation"):
        arm_from_environment({ENV_VAR: spec})
