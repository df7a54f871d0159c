"""One snapshot of the mesh config as a source saw it: which files, at which commit.

A :class:`Revision` is what every config source hands to the engine. It is a plain
value: the file contents are already read, so the engine never touches git or the
disk again to use it. The content hash (:func:`content_hash`) lives here so the
git and working-tree sources agree on it; the file-selection rule
(:func:`is_config_file`) lives in :mod:`reconciler.model.source`, below the loader
too, so ``reconciler validate DIR`` reads exactly the files the daemon serves. It is
re-exported here for the sources.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

from reconciler.model.limits import SkippedFile
from reconciler.model.source import CONFIG_SUFFIXES, is_config_file

__all__ = [
    "ALLOW_REMOVAL_FILE",
    "CONFIG_SUFFIXES",
    "ConfigSource",
    "Revision",
    "Watch",
    "content_hash",
    "is_config_file",
]


#: A file of this name in the config directory (any content) lets that revision remove any share of the
#: served resources, all of them included (see :mod:`reconciler.engine.guard`). Not YAML, so never config.
ALLOW_REMOVAL_FILE = "reconciler-allow-removal"


def content_hash(files: Mapping[str, bytes], skipped: Sequence[SkippedFile] = ()) -> str:
    """A stable SHA-256 hex digest of a set of files (path and content, order-independent).

    Lengths are hashed with each part so that no two different file sets can be
    framed into the same byte stream. Files left unread count by path, reason and
    size: a directory too large to read is not the same as an empty one.
    """
    digest = hashlib.sha256()
    for path in sorted(files):
        encoded = path.encode("utf-8")
        content = files[path]
        digest.update(b"%d:" % len(encoded))
        digest.update(encoded)
        digest.update(b"%d:" % len(content))
        digest.update(content)
    for entry in sorted(skipped, key=lambda entry: (entry.path, entry.reason)):
        framed = f"\0{entry.reason}:{entry.size}:{len(entry.path)}:{entry.path}"
        digest.update(framed.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _frozen_files(files: Mapping[str, bytes]) -> Mapping[str, bytes]:
    return MappingProxyType(dict(sorted(files.items())))


@dataclass(frozen=True, slots=True)
class Revision:
    """The config files at one commit (or one state of a working tree).

    ``sha`` is the commit SHA, or :func:`content_hash` of the files for a working
    tree. ``files`` maps paths relative to the config directory to raw bytes; only
    files passing :func:`is_config_file` are present. ``config_tree`` identifies the
    config directory's content (git tree id, or the content hash): two revisions
    with equal ``config_tree`` carry the same files, which is how commits that do
    not touch the config are skipped. ``skipped`` are the config files the source did
    not read (symlinks, files over the size limits); the loader reports each.
    ``allow_removal``: the config directory holds :data:`ALLOW_REMOVAL_FILE`.
    """

    sha: str
    files: Mapping[str, bytes]
    config_tree: str
    message: str = ""
    author: str = ""
    committed_at: datetime | None = None
    skipped: tuple[SkippedFile, ...] = ()
    allow_removal: bool = False

    def __post_init__(self) -> None:
        # The file map is copied and made read-only so a Revision can be shared between
        # threads (the source polls in a worker thread, the engine reads on the loop).
        object.__setattr__(self, "files", _frozen_files(self.files))

    @property
    def short_sha(self) -> str:
        """The first 12 characters of ``sha``, for log lines and status output."""
        return self.sha[:12]


class Watch(Protocol):
    """A running watch on a source (from :meth:`ConfigSource.watch`)."""

    def stop(self) -> None:
        """Stop watching; a change not yet reported is dropped. Idempotent."""
        ...


class ConfigSource(Protocol):
    """What the engine and the daemon need from any config source (git remote or local directory).

    Calls block (git, disk); the engine runs them with ``asyncio.to_thread``.
    """

    @property
    def head_sha(self) -> str | None:
        """The newest SHA (or content hash) the source has seen, ``None`` before the first poll."""
        ...

    def poll(self) -> Revision | None:
        """The new revision if the config changed since the last poll, else ``None``."""
        ...

    def abort(self) -> None:
        """Cut short a :meth:`poll` running in another thread, for shutdown; that poll raises SourceAborted.

        Safe to call at any time, from any thread. Final: later polls raise at once too, so an
        abort that arrives just before a poll starts its network call is not missed.
        """
        ...

    def watch(self, callback: Callable[[], object]) -> Watch | None:
        """Call ``callback()`` (from another thread) after each burst of config changes, until stopped.

        ``None`` when the source cannot be watched (a git remote: pushes arrive by webhook, or by the poll).
        """
        ...

    def close(self) -> None:
        """Release what the source holds (helper processes, open files); waits for a poll still running."""
        ...
