"""The one exception hierarchy of reconciler.

Every error the package raises on purpose derives from :class:`ReconcilerError`.
Third-party exceptions (gitpython, grpc, yaml, kubernetes, OS errors) are caught at
the edge that called the library and re-raised as one of these, with the original
chained as ``__cause__``::

    ReconcilerError
    ├── UsageError                 bad command-line input or arguments (CLI exit code 2)
    ├── InvalidConfigError         validation found error-level findings in a revision (carries them)
    ├── TranslationError           a valid model could not be turned into a consistent snapshot
    ├── SourceError                the config source failed; ``reason`` names how, for status and logs
    │   ├── FetchError                 FetchFailed: network or server; the clone is kept
    │   │   └── FetchTimeoutError          FetchTimedOut: the remote did not finish within --git-timeout
    │   ├── AuthError                  AuthFailed: the remote refused the credentials, or there were none
    │   │   └── HostKeyError               HostKeyRejected: the SSH host key is not the one in known_hosts
    │   ├── BranchNotFoundError        BranchNotFound: the remote has no such branch
    │   ├── CloneError                 CloneFailed: no usable clone, and making one failed
    │   ├── StateDirNotWritableError   StateDirNotWritable: disk full, read-only, permissions
    │   ├── PathNotFoundError          PathNotFound: no config directory at the head (a refusal, not a fetch failure)
    │   ├── SourceReadError            ReadFailed: reading the config out of the clone or directory failed
    │   ├── WatchError                 WatchFailed: the directory cannot be watched
    │   ├── PayloadError               BadPayload: a webhook body is not a push we can read
    │   ├── SignatureError             BadSignature: a webhook's signature or token did not verify
    │   └── SourceAborted              Aborted: a poll was cut short for shutdown (also a Cancelled)
    ├── XdsError                   ADS server / proxy protocol failure
    ├── KubeError                  the Kubernetes API failed, refused, or answered something unreadable
    │   └── KubeExpiredError           410 Gone: a watch's resourceVersion is too old; list again
    ├── StateError                 the embedded state store could not be read or written
    ├── RolloutNotFoundError       no rollout under that RolloutPolicy (HTTP 404)
    ├── RolloutCommandError        a user's command that does not apply to the rollout's phase (HTTP 409)
    ├── Cancelled                  the work was stopped, not failed: the daemon is shutting down
    │   └── SourceAborted              (see above)
    └── EnvoyError                 a local Envoy process (validate mode, tests, demo) failed

Errors are values with context: each carries a human message and, where it has
them, the file, line and field path the user needs to fix the problem. The engine
decides what each class means for status (its ``Reason``, retry or not) in one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = [
    "AuthError",
    "BranchNotFoundError",
    "Cancelled",
    "CloneError",
    "EnvoyError",
    "FetchError",
    "FetchTimeoutError",
    "HostKeyError",
    "InvalidConfigError",
    "KubeError",
    "KubeExpiredError",
    "PathNotFoundError",
    "PayloadError",
    "ReconcilerError",
    "RolloutCommandError",
    "RolloutNotFoundError",
    "SignatureError",
    "SourceAborted",
    "SourceError",
    "SourceReadError",
    "StateDirNotWritableError",
    "StateError",
    "TranslationError",
    "UsageError",
    "WatchError",
    "XdsError",
]


class ReconcilerError(Exception):
    """Base of every error reconciler raises on purpose."""


class UsageError(ReconcilerError):
    """The command line or an API call was used wrongly (exit code 2)."""


class Cancelled(ReconcilerError):
    """The work was stopped, not failed: the daemon is shutting down.

    Raised by a checkpoint (:mod:`reconciler.model.checkpoint`) between files, resources and
    proxies, and, as :class:`SourceAborted`, by a source whose poll was aborted.
    """


class InvalidConfigError(ReconcilerError):
    """Validation produced error-level findings; ``findings`` holds all of them (warnings too)."""

    def __init__(self, message: str, *, findings: Sequence[Any]) -> None:
        super().__init__(message)
        self.findings = tuple(findings)


class TranslationError(ReconcilerError):
    """A validated model could not be turned into a consistent Envoy snapshot.

    ``findings`` holds, when the cause is in the config, the findings that point at it
    (file, line, field path): e.g. a value Envoy's own constraints reject.
    """

    def __init__(self, message: str, *, findings: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.findings = tuple(findings)


class SourceError(ReconcilerError):
    """Fetching or reading the config source (git, webhook, working tree) failed.

    Raise a subclass: each is one failure, and its ``reason`` is the name status messages and logs show.
    """

    reason: ClassVar[str] = "SourceFailed"


class FetchError(SourceError):
    """The fetch failed (network, server, timeout); the existing clone is kept."""

    reason = "FetchFailed"


class FetchTimeoutError(FetchError):
    """A git fetch or clone did not finish within its timeout (a remote that accepts and never answers).

    The git process is ended and the existing clone kept; like any failed fetch, the next poll retries.
    """

    reason = "FetchTimedOut"


class AuthError(SourceError):
    """The remote refused the credentials, or there were none to give."""

    reason = "AuthFailed"


class HostKeyError(AuthError):
    """ssh refused the server: its host key is not in known_hosts, or differs from the one there."""

    reason = "HostKeyRejected"


class BranchNotFoundError(SourceError):
    """The remote has no such branch."""

    reason = "BranchNotFound"


class CloneError(SourceError):
    """There is no usable clone and making one failed."""

    reason = "CloneFailed"


class StateDirNotWritableError(SourceError):
    """The state dir cannot be written (disk full, read-only, permissions); never a reason to re-clone."""

    reason = "StateDirNotWritable"


class PathNotFoundError(SourceError):
    """The config path is not a directory (at the fetched commit, or on disk)."""

    reason = "PathNotFound"


class SourceReadError(SourceError):
    """Reading the config out of the clone or the directory failed."""

    reason = "ReadFailed"


class WatchError(SourceError):
    """A directory cannot be watched for changes."""

    reason = "WatchFailed"


class PayloadError(SourceError):
    """A webhook request's body is not a push event this daemon can read."""

    reason = "BadPayload"


class SignatureError(SourceError):
    """A webhook request's signature or token is missing or wrong."""

    reason = "BadSignature"


class SourceAborted(SourceError, Cancelled):
    """A source's poll or fetch was cut short by its ``abort()``: stopping, like :class:`Cancelled`."""

    reason = "Aborted"


class XdsError(ReconcilerError):
    """The ADS server or a proxy stream broke a protocol rule."""


class KubeError(ReconcilerError):
    """The Kubernetes API failed, refused a request, or answered something unreadable.

    ``status`` is the HTTP status (or a watch ERROR event's code) when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeExpiredError(KubeError):
    """410 Gone: the resourceVersion a watch resumes from was compacted away; list again (client-go's relist)."""


class StateError(ReconcilerError):
    """The embedded state store could not be read or written."""


class RolloutNotFoundError(ReconcilerError):
    """No rollout runs, or ran, under the RolloutPolicy named (``namespace/name``)."""


class RolloutCommandError(ReconcilerError):
    """A user's command does not apply to the rollout as it stands (ended, not paused, serving git's weights)."""


class EnvoyError(ReconcilerError):
    """A local Envoy process (validation, tests, demo) failed to start or rejected config."""
