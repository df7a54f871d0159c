"""The one reconcile pass: fetch → validate → translate → publish → record status.

Every pass ends by writing status with a named :class:`Reason`, success or not.
A revision is published whole or not at all: it must validate, and it must
translate consistently for every connected proxy, before any proxy sees it.
On any failure the last good snapshot keeps serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import structlog

from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.engine.state import StateStore
from reconciler.engine.status import EngineStatus, Reason, RevisionInfo, SyncError
from reconciler.errors import SourceError, StateError, TranslationError
from reconciler.loader import load_files
from reconciler.sources.revision import ConfigSource, Revision
from reconciler.translate import build_registry
from reconciler.validate.findings import Finding, Severity
from reconciler.xds.cache import SnapshotCache

__all__ = ["Engine"]

log = structlog.get_logger("reconciler.engine")

#: How long to wait for every proxy to ACK a revision before calling it "not synced yet".
ACK_WAIT_SECONDS = 60.0


class Engine:
    """Owns the served revision; one :meth:`reconcile` call is one pass."""

    def __init__(
        self,
        *,
        source: ConfigSource,
        cache: SnapshotCache,
        store: StateStore,
        status: EngineStatus,
        clock: Callable[[], datetime],
        default_namespace: str = "default",
        file_prefix: str = "",
    ) -> None:
        self._source = source
        self._cache = cache
        self._store = store
        self._clock = clock
        self._namespace = default_namespace
        self._prefix = file_prefix
        self.status = status
        self._served_tree: str | None = None
        # The validation/translation failure of the source's current head, until a new head replaces it.
        self._head_rejection: SyncError | None = None
        self._ack_watch: asyncio.Task[None] | None = None

    def restore(self) -> bool:
        """Serve the stored last good revision at once (before the source is reachable)."""
        try:
            revision = self._store.load_last_good()
        except StateError as error:
            self._fail(Reason.STATE_FAILED, str(error), sha=None)
            return False
        if revision is None:
            return False
        applied = self._apply_guarded(revision, reason=Reason.RESTORED, save=False)
        if applied:
            log.info("engine.restored", sha=revision.short_sha)
        return applied

    async def reconcile(self, *, trigger: str) -> bool:
        """One pass. True when the source's head config is what is served."""
        self.status.last_attempt = self._clock()
        try:
            revision = await asyncio.to_thread(self._source.poll)
        except SourceError as error:
            self.status.head_sha = self._source.head_sha or self.status.head_sha
            self._fail(Reason.FETCH_FAILED, f"{error.reason}: {error}", sha=self.status.head_sha)
            return False
        self.status.head_sha = self._source.head_sha
        if revision is None:
            # Nothing new: the fetch worked, so only a rejected head commit is still an error.
            if self._head_rejection is not None:
                self._record_failure(self._head_rejection)
                return False
            self.status.last_error = None
            self._succeed(Reason.UP_TO_DATE, f"serving {self._served_label()}; no config change")
            return True
        if revision.config_tree == self._served_tree:
            self._adopt(revision)
            return True
        log.info("engine.revision", sha=revision.short_sha, trigger=trigger)
        return self._apply_guarded(revision, reason=Reason.APPLIED, save=True)

    def _adopt(self, revision: Revision) -> None:
        """A new commit whose config equals what is served (e.g. a revert of a rejected commit)."""
        self._head_rejection = None
        self.status.served = RevisionInfo.of(revision)
        self.status.last_error = None
        self._save(revision)
        self._succeed(Reason.UP_TO_DATE, f"revision {revision.short_sha} has the served config")

    def _save(self, revision: Revision) -> None:
        try:
            self._store.save_last_good(revision)
        except StateError as error:
            # Serving the new revision is right; only restart-resume is at risk. Say so loudly.
            log.error("engine.state_save_failed", sha=revision.short_sha, error=str(error))

    def _apply_guarded(self, revision: Revision, *, reason: Reason, save: bool) -> bool:
        """:meth:`_apply`, with a bug in loading or translation reported as that revision's failure.

        An unexpected exception must neither stop the daemon (the last good revision keeps
        serving) nor be retried as if the revision were fine.
        """
        try:
            return self._apply(revision, reason=reason, save=save)
        except Exception as error:
            log.exception("engine.apply_crashed", sha=revision.short_sha)
            self._head_rejection = self._fail(
                Reason.TRANSLATION_FAILED,
                f"internal error applying revision {revision.short_sha}: {error!r}; "
                f"still serving {self._served_label()}",
                sha=revision.sha,
            )
            return False

    def _apply(self, revision: Revision, *, reason: Reason, save: bool) -> bool:
        files = {f"{self._prefix}{path}": content for path, content in revision.files.items()}
        result = load_files(files, default_namespace=self._namespace)
        if not result.ok:
            errors = [f for f in result.findings if f.severity is Severity.ERROR]
            first = errors[0]
            self._head_rejection = self._fail(
                Reason.VALIDATION_FAILED,
                f"{len(errors)} error(s) in revision {revision.short_sha}, first: {first.format()}; "
                f"still serving {self._served_label()}",
                sha=revision.sha,
                findings=result.findings,
            )
            return False
        snapshots = ConfigSnapshots(config=result.config, registry=build_registry(result.config))
        try:
            for proxy in self._cache.proxies():
                snapshots.snapshot_for(proxy)
        except TranslationError as error:
            self._head_rejection = self._fail(Reason.TRANSLATION_FAILED, str(error), sha=revision.sha)
            return False
        generation = self._cache.publish(snapshots)
        if save:
            self._save(revision)
        self._head_rejection = None
        now = self._clock()
        self._served_tree = revision.config_tree
        self.status.served = RevisionInfo.of(revision)
        self.status.served_since = now
        self.status.synced_at = None
        self.status.generation = generation
        self.status.last_error = None
        self._succeed(reason, f"serving revision {revision.short_sha}")
        log.info("engine.published", sha=revision.short_sha, generation=generation, reason=reason.value)
        self._watch_acks(generation)
        return True

    def _watch_acks(self, generation: int) -> None:
        """Record when every connected proxy has ACKed this generation: our "synced"."""
        if self._ack_watch is not None:
            self._ack_watch.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # outside an event loop (tools, tests) nothing can ACK, so there is nothing to wait for

        async def watch() -> None:
            acked = await self._cache.wait_for_acks(generation, timeout=ACK_WAIT_SECONDS)
            if acked and self.status.generation == generation:
                self.status.synced_at = self._clock()
                log.info("engine.synced", generation=generation, proxies=len(self._cache.statuses()))

        self._ack_watch = loop.create_task(watch())

    def _served_label(self) -> str:
        return f"revision {self.status.served.sha[:12]}" if self.status.served else "nothing (no good revision yet)"

    def _succeed(self, reason: Reason, message: str) -> None:
        self.status.reason = reason
        self.status.message = message

    def _fail(self, reason: Reason, message: str, *, sha: str | None, findings: tuple[Finding, ...] = ()) -> SyncError:
        error = SyncError(reason=reason, message=message, at=self._clock(), sha=sha, findings=findings)
        self._record_failure(error)
        log.warning("engine.pass_failed", reason=reason.value, sha=sha, message=message)
        return error

    def _record_failure(self, error: SyncError) -> None:
        self.status.reason = error.reason
        self.status.message = error.message
        self.status.last_error = error
