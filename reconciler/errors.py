"""The one exception hierarchy of reconciler.

Every error the package raises on purpose derives from :class:`ReconcilerError`.
Third-party exceptions (gitpython, grpc, yaml, kubernetes, OS errors) are caught at
the edge that called the library and re-raised as one of these, with the original
chained as ``__cause__``::

    ReconcilerError
    ├── UsageError          bad command-line input or arguments (CLI exit code 2)
    ├── ConfigError         the user's mesh config cannot be used
    │   └── InvalidConfigError   validation found error-level findings (carries them)
    ├── TranslationError    a valid model could not be turned into a consistent snapshot
    ├── SourceError         git/webhook/watch edge failed (fetch, clone, auth, rewrite)
    │   └── SignatureError       a webhook's signature or token did not verify
    ├── XdsError            ADS server / proxy protocol failure
    ├── StateError          the embedded state store could not be read or written
    ├── Cancelled           a pass was stopped at a checkpoint (the daemon is shutting down)
    └── EnvoyError          a local Envoy process (validate mode, tests, demo) failed

Errors are values with context: each carries a human message and, where it has
them, the file, line and field path the user needs to fix the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "Cancelled",
    "ConfigError",
    "EnvoyError",
    "InvalidConfigError",
    "ReconcilerError",
    "SignatureError",
    "SourceError",
    "StateError",
    "TranslationError",
    "UsageError",
    "XdsError",
]


class ReconcilerError(Exception):
    """Base of every error reconciler raises on purpose."""


class UsageError(ReconcilerError):
    """The command line or an API call was used wrongly (exit code 2)."""


class Cancelled(ReconcilerError):
    """Raised by a checkpoint (:mod:`reconciler.model.checkpoint`): the work was stopped, not failed."""


class ConfigError(ReconcilerError):
    """The mesh configuration cannot be used."""


class InvalidConfigError(ConfigError):
    """Validation produced error-level findings; ``findings`` holds all of them."""

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
    """Fetching or reading the config source (git, webhook, working tree) failed."""

    def __init__(self, message: str, *, reason: str = "SourceFailed") -> None:
        super().__init__(message)
        self.reason = reason


class SignatureError(SourceError):
    """A webhook request's signature or token is missing or wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="BadSignature")


class XdsError(ReconcilerError):
    """The ADS server or a proxy stream broke a protocol rule."""


class StateError(ReconcilerError):
    """The embedded state store could not be read or written."""


class EnvoyError(ReconcilerError):
    """A local Envoy process (validation, tests, demo) failed to start or rejected config."""
