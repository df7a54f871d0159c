"""What put a config in front of the proxies: its origin.

The engine serves configs, not commits: a rollout serves a commit's config with other
weights, step by step, and a rollback serves an earlier one again. An :class:`Origin`
names the commit a served config belongs to and the change that served it; status, the
generation, synced tracking and the stored last good follow it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from reconciler.api.document import OriginDocument
from reconciler.errors import UsageError
from reconciler.sources.revision import Revision

__all__ = ["Change", "Origin"]


class Change(StrEnum):
    """What served a config."""

    #: A new commit of the source, its config as committed.
    COMMIT = "commit"
    #: A commit's config with the weights of one rollout step (``Origin.step`` says which).
    ROLLOUT_STEP = "rollout-step"
    #: A rollout going back to an earlier config.
    ROLLBACK = "rollback"
    #: The stored last good commit, served at start before the source is reachable.
    RESTORE = "restore"
    #: A proxy NACKed what was served: the last config every proxy ACKed, served again.
    NACK_ROLLBACK = "nack-rollback"


@dataclass(frozen=True, slots=True)
class Origin:
    """A served config's commit (``revision``), the ``change`` that served it and, for a config
    that is not the commit's own (a rollout step's weights), the ``step`` it is.

    ``step`` is ``None`` exactly when the config is the commit's as committed; a rollout step needs one.
    """

    revision: Revision
    change: Change = Change.COMMIT
    step: str | None = None

    def __post_init__(self) -> None:
        if self.change is Change.ROLLOUT_STEP and not self.step:
            raise UsageError("a rollout step's origin names its step")

    @property
    def as_committed(self) -> bool:
        """The config is the commit's own (not a step's weights): a later commit with its tree has the same."""
        return self.step is None

    def again(self, change: Change) -> Origin:
        """The same config (commit and step) served again by ``change``."""
        return dataclasses.replace(self, change=change)

    def describe(self) -> str:
        """``revision <sha12>``, and the step when there is one, for status messages and logs."""
        label = f"revision {self.revision.short_sha}"
        return f"{label} ({self.step})" if self.step else label

    def document(self) -> OriginDocument:
        """As the status document shows it."""
        return OriginDocument(change=self.change.value, sha=self.revision.sha, step=self.step)
