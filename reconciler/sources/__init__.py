"""Config sources: the I/O edge where mesh config comes in.

A git remote (:class:`~reconciler.sources.git.GitSource`, cloned and fetched with
gitpython) or a local directory (:class:`~reconciler.sources.local.LocalDirSource`,
watched with watchdog) turns into :class:`~reconciler.sources.revision.Revision`
values: plain, already-read file contents the engine hands to the pure core.
Push webhooks (:mod:`reconciler.sources.webhook`) only wake a source early; every
failure leaves this package as a :class:`~reconciler.errors.SourceError` subclass, one per failure.
"""

from reconciler.sources.backoff import Backoff
from reconciler.sources.git import GitSource
from reconciler.sources.local import LocalDirSource
from reconciler.sources.revision import ConfigSource, Revision, Watch
from reconciler.sources.webhook import PushEvent

__all__ = [
    "Backoff",
    "ConfigSource",
    "GitSource",
    "LocalDirSource",
    "PushEvent",
    "Revision",
    "Watch",
]
