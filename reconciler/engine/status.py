"""What the daemon reports about itself: served revision, last error, conditions.

The engine owns one :class:`EngineStatus` and rewrites it at the end of every
reconcile pass, success or not (Flux's habit: status is always written, with a
named reason).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from reconciler.api.document import PROXIES, EngineDocument, ErrorDocument, RevisionInfo
from reconciler.engine.origin import Origin
from reconciler.validate.findings import Finding

__all__ = ["EngineStatus", "Reason", "RevisionInfo", "SyncError"]


class Reason(StrEnum):
    """Why the last reconcile pass ended the way it did."""

    APPLIED = "Applied"
    #: A rollout's step is served: the head commit's config with the step's weights, not git's (docs/rollouts.md).
    ROLLOUT_STEP = "RolloutStep"
    #: A rollout was rolled back (or aborted): the head commit's config with the weights from before the rollout.
    ROLLOUT_ROLLBACK = "RolloutRollback"
    UP_TO_DATE = "UpToDate"
    RESTORED = "Restored"
    VALIDATION_FAILED = "ValidationFailed"
    TRANSLATION_FAILED = "TranslationFailed"
    FETCH_FAILED = "FetchFailed"
    #: The head commit has no directory at ``--path`` (removed or renamed): refused, not retried on backoff.
    PATH_NOT_FOUND = "PathNotFound"
    #: The revision would remove all routing, or more of the served resources than allowed (engine/guard.py).
    REMOVAL_REFUSED = "RemovalRefused"
    STATE_FAILED = "StateFailed"
    #: A proxy NACKed the revision: refused like a validation failure, the last ACKed revision is served again.
    REJECTED = "Rejected"
    PROGRESSING = "Progressing"


@dataclass(frozen=True, slots=True)
class SyncError:
    """The last failed pass: which commit, why, and every finding with its file:line."""

    reason: Reason
    message: str
    at: datetime
    sha: str | None = None
    findings: tuple[Finding, ...] = ()

    def document(self) -> ErrorDocument:
        """As status shows it: only the error-level findings (warnings are listed with the served config)."""
        return ErrorDocument(
            reason=self.reason.value,
            message=self.message,
            at=self.at,
            sha=self.sha,
            findings=tuple(finding for finding in self.findings if finding.severity == "error"),
        )


@dataclass(slots=True)
class EngineStatus:
    """Mutable, engine-owned; the HTTP API serves its :meth:`document`."""

    repo: str
    branch: str
    path: str
    head_sha: str | None = None
    served: RevisionInfo | None = None
    #: What served the served config: its commit and the change (commit, rollout step, rollback, restore, ...).
    origin: Origin | None = None
    served_since: datetime | None = None
    synced_at: datetime | None = None
    synced: bool = False
    generation: int = 0
    reason: Reason = Reason.PROGRESSING
    message: str = "starting"
    last_attempt: datetime | None = None
    last_error: SyncError | None = None
    #: A proxy NACKed the served revision and nothing every proxy ACKed could be served instead.
    served_rejected: bool = False
    #: Who must accept a generation for it to be synced (``syncedBy``): the proxies, the API server, or both.
    synced_by: tuple[str, ...] = (PROXIES,)
    #: Warnings and notes about the served config (validation and translation); read when asked.
    warnings: Callable[[], Sequence[Finding]] = field(default=lambda: ())

    def document(self) -> EngineDocument:
        """The engine's part of the status document, as it stands now."""
        return EngineDocument(
            repo=self.repo,
            branch=self.branch,
            path=self.path,
            head_sha=self.head_sha,
            served=self.served,
            origin=self.origin.document() if self.origin else None,
            served_since=self.served_since,
            synced_at=self.synced_at,
            synced=self.synced,
            generation=self.generation,
            reason=self.reason.value,
            message=self.message,
            last_attempt=self.last_attempt,
            last_error=self.last_error.document() if self.last_error else None,
            warnings=tuple(self.warnings()),
            ready=self.served is not None and not self.served_rejected,
            synced_by=self.synced_by,
        )

    def to_json(self) -> dict[str, Any]:
        """The engine's part of the wire document (``/api/v1/status`` without ``proxies``)."""
        return self.document().to_json()
