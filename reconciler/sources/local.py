"""The working-tree edge: a local directory of mesh YAML as a config source.

For ``reconciler run --path mesh/`` without a git remote, and for editing config
with instant feedback. :meth:`LocalDirSource.read` snapshots the directory into a
:class:`Revision` whose SHA is a content hash; :meth:`LocalDirSource.watch` calls
back once per burst of changes (an editor's save is several events: write temp,
rename, chmod...), after ``debounce_seconds`` without further events.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from reconciler.errors import PathNotFoundError, SourceReadError, WatchError
from reconciler.loader.files import read_tree
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits
from reconciler.sources.revision import ALLOW_REMOVAL_FILE, Revision, content_hash, is_config_file

__all__ = ["WATCH_SETTLE_SECONDS", "LocalDirSource", "LocalWatch"]

log = structlog.get_logger(__name__)

# Events that mean "something changed". watchdog also reports opened/closed-without-
# write; counting those would make our own read() after a callback trigger the next one.
_CHANGE_EVENTS = frozenset({"created", "deleted", "modified", "moved", "closed"})
_CONFIGMAP_DATA_LINK = "..data"


#: Seconds a watched directory must stay quiet after a change before it is read: long enough for a "save all" or a
#: small checkout to finish, so a half-written tree is rarely read (one that is read is only a pass more).
WATCH_SETTLE_SECONDS = 0.5


class LocalDirSource:
    """A directory of config files (``*.yaml``/``*.yml``, hidden entries skipped), read within ``limits``.

    A symlink is followed only to a file inside the directory; a file over the size limit is not read.
    """

    def __init__(
        self, path: Path, *, limits: InputLimits = DEFAULT_LIMITS, settle_seconds: float = WATCH_SETTLE_SECONDS
    ) -> None:
        self._root = Path(path)
        self._limits = limits
        self._settle = settle_seconds
        self._lock = threading.Lock()
        self._seen_sha: str | None = None

    @property
    def path(self) -> Path:
        """The directory read."""
        return self._root

    @property
    def settle_seconds(self) -> float:
        """Seconds a watch waits for quiet after a change before it calls back."""
        return self._settle

    @property
    def head_sha(self) -> str | None:
        """The content hash of the last revision :meth:`poll` returned."""
        return self._seen_sha

    def read(self) -> Revision:
        """Snapshot the directory now. Raises :class:`PathNotFoundError` or :class:`SourceReadError`."""
        if not self._root.is_dir():
            raise PathNotFoundError(f"config directory {self._root} does not exist")
        try:
            read = read_tree(self._root, limits=self._limits)
        except OSError as error:
            # A file deleted between listing and reading lands here too; the watcher
            # will report that deletion and the next read sees a consistent tree.
            raise SourceReadError(f"reading {self._root} failed: {error}") from error
        allow_removal = (self._root / ALLOW_REMOVAL_FILE).is_file()
        # Hashed with the files: adding or deleting the marker alone is a new revision, as in git.
        hashed = {**read.files, ALLOW_REMOVAL_FILE: b""} if allow_removal else read.files
        digest = content_hash(hashed, read.skipped)
        return Revision(
            sha=digest,
            files=read.files,
            skipped=read.skipped,
            config_tree=digest,
            message=f"working tree {self._root}",
            allow_removal=allow_removal,
        )

    def abort(self) -> None:
        """Nothing to cut short: reading a local directory does not wait on anyone."""

    def close(self) -> None:
        """Nothing to release: a watch is stopped through its own handle."""

    def poll(self) -> Revision | None:
        """The directory's Revision if its content changed since the last poll, else ``None``."""
        revision = self.read()
        with self._lock:
            if revision.sha == self._seen_sha:
                return None
            self._seen_sha = revision.sha
        return revision

    def watch(self, callback: Callable[[], object], debounce_seconds: float | None = None) -> LocalWatch:
        """Call ``callback()`` once after each burst of config-file changes (``ConfigSource.watch``).

        A burst ends after ``debounce_seconds`` without changes (default: the source's ``settle_seconds``).

        ``callback`` runs on a background thread: hand off to an event loop with
        ``loop.call_soon_threadsafe`` (its return value is ignored). Stop with :meth:`LocalWatch.stop` (or use the
        returned handle as a context manager).
        """
        if not self._root.is_dir():
            raise PathNotFoundError(f"cannot watch {self._root}: not a directory")
        settle = self._settle if debounce_seconds is None else debounce_seconds
        watch = LocalWatch(root=self._root, callback=callback, debounce_seconds=settle)
        watch.start()
        return watch


class _Debouncer:
    """Calls ``callback`` once ``delay`` seconds after the latest :meth:`poke`.

    One long-lived thread rather than a restarted ``threading.Timer`` per event: a
    ``git checkout`` can produce thousands of events in a burst.
    """

    def __init__(self, callback: Callable[[], object], delay: float) -> None:
        self._callback = callback
        self._delay = delay
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="reconciler-watch-debounce", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        with self._cond:
            self._deadline = time.monotonic() + self._delay
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and self._deadline is None:
                    self._cond.wait()
                deadline = self._deadline
                if self._stopped or deadline is None:
                    return
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue  # re-check: a poke may have moved the deadline
                self._deadline = None
            # Outside the lock: the callback may be slow, and events during it should
            # schedule the next call rather than block the watchdog thread.
            try:
                self._callback()
            except Exception:
                log.exception("local.watch_callback_failed", reason="CallbackFailed")


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, debouncer: _Debouncer) -> None:
        self._root = root
        self._debouncer = debouncer

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.event_type not in _CHANGE_EVENTS:
            return
        if event.is_directory and event.event_type == "modified":
            # A directory is "modified" whenever an entry in it changes; that entry has
            # its own event, so this one would only let README edits through.
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(self._relevant(os.fsdecode(path), is_dir=event.is_directory) for path in paths if path):
            self._debouncer.poke()

    def _relevant(self, path: str, *, is_dir: bool) -> bool:
        try:
            relative = Path(path).relative_to(self._root).as_posix()
        except ValueError:
            return False
        if relative == _CONFIGMAP_DATA_LINK:
            # A Kubernetes ConfigMap volume updates by atomically renaming a new
            # '..data' symlink into place; the visible files are symlinks through it
            # and never change themselves, so this rename is the only sign of an update.
            return True
        if is_dir:
            # A created, renamed or deleted directory may hold config files; a hidden one (.git) never counts.
            return relative != "." and not any(part.startswith(".") for part in relative.split("/"))
        return is_config_file(relative) or relative == ALLOW_REMOVAL_FILE


class LocalWatch:
    """A running watch on a directory (from :meth:`LocalDirSource.watch`)."""

    def __init__(self, *, root: Path, callback: Callable[[], object], debounce_seconds: float) -> None:
        # watchdog reports absolute, resolved paths; resolve ours so relative_to matches.
        self._root = root.resolve()
        self._debouncer = _Debouncer(callback, debounce_seconds)
        self._observer = Observer()
        self._observer.schedule(_Handler(self._root, self._debouncer), str(self._root), recursive=True)
        self._started = False
        self._stopped = False

    def start(self) -> None:
        """Start watching. :meth:`LocalDirSource.watch` already did; calling it again is a no-op."""
        if self._started or self._stopped:
            return
        self._debouncer.start()
        try:
            self._observer.start()
        except OSError as error:
            self._debouncer.stop()
            raise WatchError(f"cannot watch {self._root}: {error}") from error
        self._started = True
        log.info("local.watching", path=str(self._root))

    def stop(self) -> None:
        """Stop watching; a pending (debounced) callback is dropped. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._started:
            self._observer.stop()
            self._observer.join()
        self._debouncer.stop()
        log.info("local.watch_stopped", path=str(self._root))

    def __enter__(self) -> LocalWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
