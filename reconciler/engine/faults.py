"""Fault points, for tests only: the daemon kills itself (SIGKILL) at a named point of a reconcile.

Off unless the environment variable :data:`ENV_VAR` is set when the daemon starts (read once, by
``run_daemon``). Never set it in production: it exists so the fault suite (``tests/e2e_faults``) can
prove that a crash at any of these points costs no traffic and leaves no half-written state.

``RECONCILER_FAULT=POINT:kill[:SHA]``, e.g. ``after-validation:kill`` or ``mid-publish:kill:3f2a9c0``.
With ``SHA`` (a prefix) only that revision triggers it, so the restored revision a restart serves first
does not. The points, in the order a new revision meets them:

===========================  ====================================================================
``after-fetch``              the source returned the new revision; nothing validated
``after-validation``         validated and translated for every proxy; nothing published
``after-publish-before-ack`` the xDS cache and status hold the new generation; no proxy was sent it
``mid-publish``              a proxy ACKed part of the new generation (one xDS type), not all of it
``mid-state-save``           every proxy ACKed it; its row is written inside the store's transaction,
                             not committed
===========================  ====================================================================
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import structlog

from reconciler.errors import UsageError

__all__ = ["ENV_VAR", "Fault", "FaultPoint", "arm_from_environment", "reached"]

log = structlog.get_logger("reconciler.faults")

#: The environment variable that arms a fault point (test-only).
ENV_VAR = "RECONCILER_FAULT"


class FaultPoint(StrEnum):
    """Where in a reconcile a fault can be triggered (see the module docstring)."""

    AFTER_FETCH = "after-fetch"
    AFTER_VALIDATION = "after-validation"
    AFTER_PUBLISH_BEFORE_ACK = "after-publish-before-ack"
    MID_PUBLISH = "mid-publish"
    MID_STATE_SAVE = "mid-state-save"


@dataclass(frozen=True, slots=True)
class Fault:
    """An armed fault: kill the process when ``point`` is reached for a revision whose sha starts ``sha_prefix``."""

    point: FaultPoint
    sha_prefix: str = ""

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """``POINT:kill[:SHA]``; raises UsageError for anything else."""
        point, _, rest = spec.strip().partition(":")
        action, _, sha = rest.partition(":")
        known = ", ".join(p.value for p in FaultPoint)
        if point not in {p.value for p in FaultPoint} or action != "kill":
            raise UsageError(f"{ENV_VAR} must be POINT:kill[:SHA] with POINT one of {known}, not {spec[:80]!r}")
        return cls(FaultPoint(point), sha.lower())


#: The one armed fault of this process; set once at start, before any pass.
_armed: Fault | None = None


def arm_from_environment(environ: Mapping[str, str] = os.environ) -> Fault | None:
    """Arm the fault :data:`ENV_VAR` names (none when it is unset or empty); warn loudly when one is armed."""
    global _armed  # noqa: PLW0603 - one switch per process, read once at start
    spec = environ.get(ENV_VAR, "")
    _armed = Fault.parse(spec) if spec else None
    if _armed is not None:
        log.warning("faults.armed", point=_armed.point.value, sha=_armed.sha_prefix or None, hint="test-only")
    return _armed


def reached(point: FaultPoint, *, sha: str) -> None:
    """Called at each point: SIGKILL this process when the armed fault is ``point`` for revision ``sha``."""
    fault = _armed
    if fault is None or fault.point is not point or not sha.startswith(fault.sha_prefix):
        return
    log.warning("faults.kill", point=point.value, sha=sha[:12])
    os.kill(os.getpid(), signal.SIGKILL)
