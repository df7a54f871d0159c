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

from reconciler.engine.origin import Origin
from reconciler.model.text import MESSAGE_CHARS, excerpt
from reconciler.sources.revision import Revision
from reconciler.validate.findings import Finding

__all__ = ["EngineStatus", "Reason", "RevisionInfo", "SyncError"]


class Reason(StrEnum):
    """Why the last reconcile pass ended the way it did."""

    APPLIED = "Applied"
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


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


@dataclass(frozen=True, slots=True)
class RevisionInfo:
    """A revision as status shows it."""

    sha: str
    message: str = ""
    author: str = ""
    committed_at: datetime | None = None

    @classmethod
    def of(cls, revision: Revision) -> RevisionInfo:
        return cls(
            sha=revision.sha,
            message=excerpt(revision.message.strip().splitlines()[0], MESSAGE_CHARS)
            if revision.message.strip()
            else "",
            author=excerpt(revision.author, MESSAGE_CHARS),
            committed_at=revision.committed_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "sha": self.sha,
            "message": self.message,
            "author": self.author,
            "committedAt": _iso(self.committed_at),
        }


@dataclass(frozen=True, slots=True)
class SyncError:
    """The last failed pass: which commit, why, and every finding with its file:line."""

    reason: Reason
    message: str
    at: datetime
    sha: str | None = None
    findings: tuple[Finding, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason.value,
            "message": self.message,
            "at": _iso(self.at),
            "sha": self.sha,
            "findings": [finding.to_json() for finding in self.findings if finding.severity == "error"],
        }


@dataclass(slots=True)
class EngineStatus:
    """Mutable, engine-owned; read by the HTTP API."""

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
    #: Warnings and notes about the served config (validation and translation); read when asked.
    warnings: Callable[[], Sequence[Finding]] = field(default=lambda: ())

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "branch": self.branch,
            "path": self.path,
            "headSha": self.head_sha,
            "served": self.served.to_json() if self.served else None,
            "origin": self.origin.to_json() if self.origin else None,
            "servedSince": _iso(self.served_since),
            "syncedAt": _iso(self.synced_at),
            "synced": self.synced,
            "generation": self.generation,
            "reason": self.reason.value,
            "message": self.message,
            "lastAttempt": _iso(self.last_attempt),
            "lastError": self.last_error.to_json() if self.last_error else None,
            "warnings": [finding.to_json() for finding in self.warnings()],
            "ready": self.served is not None and not self.served_rejected,
        }
