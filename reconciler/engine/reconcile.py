"""The one reconcile pass: fetch → validate → translate → publish → record status.

Every pass ends by writing status with a named :class:`Reason`, success or not.
A revision is published whole or not at all: it must validate, and it must
translate consistently for every connected proxy (the cache's publish is
all-or-nothing), before any proxy sees it. On any failure the last good snapshot
keeps serving. CPU work (validation, translation) and disk writes run in worker
threads so the loop serving every ADS stream never stalls.

"Synced" means Envoy accepted it: every connected proxy (at least one) has ACKed
the served generation in full. It is derived from the cache's ACK events, never
from a timer.

Envoy's word is final: a revision any proxy NACKs before it is synced is refused
(``Rejected``) and the last revision every proxy ACKed is published again, so all
proxies run one config. The store therefore holds the last synced revision, or the
last published one while no proxy is connected to ACK it; a rejection rewrites it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import structlog

from reconciler.engine.guard import RemovalGuard, ResourceKey, resource_keys
from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.engine.state import SourceIdentity, StateStore
from reconciler.engine.status import EngineStatus, Reason, RevisionInfo, SyncError
from reconciler.errors import Cancelled, ReconcilerError, SourceError, StateError, TranslationError
from reconciler.loader import DecodeCache, LoadResult, load_files
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits
from reconciler.model.text import MESSAGE_CHARS, excerpt
from reconciler.sources.git import GitFailure
from reconciler.sources.revision import ALLOW_REMOVAL_FILE, ConfigSource, Revision
from reconciler.translate import build_registry
from reconciler.translate.provenance import producers_of
from reconciler.translate.proxy import ProxyIdentity
from reconciler.translate.snapshot import SHORT_NAMES
from reconciler.validate.findings import Code, Finding, Severity
from reconciler.xds.cache import EventKind, SnapshotCache, XdsEvent

__all__ = ["Engine"]

log = structlog.get_logger("reconciler.engine")

#: Proxies may connect while a revision is being translated; translate their shapes too, a few rounds at most.
_LATE_PROXY_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class _Published:
    """A revision and the snapshots published for it: what a rollback publishes again."""

    revision: Revision
    snapshots: ConfigSnapshots


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
        rollback_on_nack: bool = True,
        limits: InputLimits = DEFAULT_LIMITS,
        removal_guard: RemovalGuard | None = None,
    ) -> None:
        self._source = source
        self._cache = cache
        self._store = store
        self._clock = clock
        self._namespace = default_namespace
        self._prefix = file_prefix
        self._limits = limits
        self._removal_guard = removal_guard or RemovalGuard()  # None: the guard's defaults
        self._decode_cache = DecodeCache()
        self.status = status
        # What the stored revision must have come from to be served on restart.
        self._identity = SourceIdentity.of(repo=status.repo, branch=status.branch, path=status.path)
        self._served_tree: str | None = None
        self._served_resources: frozenset[ResourceKey] = frozenset()
        # The validation/translation failure of the source's current head, until a new head replaces it.
        self._head_rejection: SyncError | None = None
        self._synced_check_pending = False
        self._rollback_on_nack = rollback_on_nack
        self._current: _Published | None = None
        # The last revision every connected proxy ACKed in full: what a NACKed revision is rolled back to.
        self._acked: _Published | None = None
        # One writer thread: saves land in the order they were asked for (a rollback after the save it undoes).
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-save")
        # Set by abort(), read by the checkpoint that loading and translation call between files and proxies.
        self._stopping = threading.Event()
        cache.add_listener(self._on_xds_event)

    def abort(self) -> None:
        """Stop a pass's loading and translation at their next checkpoint, for shutdown; safe from any thread.

        Final, like a source's abort: every later pass stops at its first checkpoint too.
        """
        self._stopping.set()

    def _checkpoint(self) -> None:
        if self._stopping.is_set():
            raise Cancelled("the daemon is stopping")

    def restore(self) -> bool:
        """Serve the stored last good revision at once (before the source is reachable).

        Only a revision stored for this same repository, branch and path: after a restart with
        other flags on the same state volume, the old source's config must not be served as ready.
        """
        try:
            stored = self._store.load_last_good()
        except StateError as error:
            self._fail(Reason.STATE_FAILED, str(error), sha=None)
            return False
        if stored is None:
            return False
        revision = stored.revision
        if stored.source != self._identity:
            came_from = (
                stored.source.describe()
                if stored.source is not None
                else "an unknown source (stored before the source was recorded)"
            )
            log.warning(
                "engine.restore_skipped",
                sha=revision.short_sha,
                reason="SourceChanged" if stored.source is not None else "SourceUnknown",
                stored=came_from,
                configured=self._identity.describe(),
            )
            self._succeed(
                Reason.PROGRESSING,
                f"not serving stored revision {revision.short_sha}: it came from {came_from}, "
                f"not {self._identity.describe()}; waiting for the source",
            )
            return False
        applied = self._restore_now(revision)
        if applied:
            log.info("engine.restored", sha=revision.short_sha)
        return applied

    async def reconcile(self, *, trigger: str) -> bool:
        """One pass. True when the source's head config is what is served."""
        self.status.last_attempt = self._clock()
        try:
            revision = await asyncio.to_thread(self._source.poll)
        except Exception as error:
            if isinstance(error, SourceError) and error.reason == GitFailure.ABORTED:
                # The daemon is stopping: not a failure of the source, so status keeps the last real outcome.
                log.info("engine.pass_aborted", sha=self.status.head_sha)
                return False
            self.status.head_sha = self._source.head_sha or self.status.head_sha
            if isinstance(error, SourceError) and error.reason == Reason.PATH_NOT_FOUND:  # the sources' same name
                # The head commit has no config directory: a refusal of that commit, not a failed fetch,
                # so it is not retried on backoff. Not a head rejection either: the source reports it
                # again on every poll until a commit brings the directory back.
                self._fail(
                    Reason.PATH_NOT_FOUND,
                    f"{error}; still serving {self._served_label()}",
                    sha=self.status.head_sha,
                )
                return False
            if not isinstance(error, SourceError):
                # A source must raise SourceError; anything else is a bug, but not one that may stop the daemon.
                log.error("engine.poll_crashed", exc_info=error)
            detail = f"{error.reason}: {error}" if isinstance(error, SourceError) else f"internal error: {error!r}"
            self._fail(Reason.FETCH_FAILED, detail, sha=self.status.head_sha)
            return False
        head = self._source.head_sha
        if revision is None:
            self.status.head_sha = head
            # Nothing new: the fetch worked, so only a rejected head commit is still an error.
            if self._head_rejection is not None:
                self._record_failure(self._head_rejection)
                return False
            self.status.last_error = None
            self._succeed(Reason.UP_TO_DATE, f"serving {self._served_label()}; no config change")
            return True
        if revision.config_tree == self._served_tree:
            await self._adopt(revision, head=head)
            return True
        log.info("engine.revision", sha=revision.short_sha, trigger=trigger)
        self._succeed(Reason.PROGRESSING, f"validating and translating revision {revision.short_sha}")
        return await self._apply_off_loop(revision, head=head)

    async def _adopt(self, revision: Revision, *, head: str | None) -> None:
        """A new commit whose config equals what is served (e.g. a revert of a rejected commit)."""
        self._head_rejection = None
        current = self._current
        if current is not None:
            adopted = _Published(revision, current.snapshots)
            self._acked = adopted if self._acked == current else self._acked
            self._current = adopted
        if self._acked == self._current or not self._cache.proxies():
            await self._persist(revision)
        # No await from here on: a status reader sees head, served revision, error and reason change together.
        self.status.head_sha = head
        self.status.served = RevisionInfo.of(revision)
        self.status.last_error = None
        self._succeed(Reason.UP_TO_DATE, f"revision {revision.short_sha} has the served config")

    def _persist(self, revision: Revision | None) -> asyncio.Future[None]:
        """Save ``revision`` as last good (None: forget the stored one) on the writer thread."""
        return asyncio.get_running_loop().run_in_executor(self._saver, self._save, revision)

    def _persist_soon(self, revision: Revision | None) -> None:
        """:meth:`_persist` from an event callback; driven without a loop (tools, tests), save now."""
        try:
            self._persist(revision)
        except RuntimeError:
            self._save(revision)

    def _save(self, revision: Revision | None) -> None:
        # Serving the new revision is right; only restart-resume is at risk. Say so loudly, never stop.
        sha = revision.short_sha if revision is not None else None
        try:
            if revision is None:
                self._store.forget_last_good()
            else:
                self._store.save_last_good(revision, source=self._identity)
        except StateError as error:
            log.error("engine.state_save_failed", sha=sha, error=str(error))
        except Exception as error:
            log.error("engine.state_save_failed", sha=sha, error=repr(error), exc_info=error)

    def _restore_now(self, revision: Revision) -> bool:
        """Load, translate and publish the stored revision on the calling thread: nothing serves yet."""
        try:
            prepared = self._prepare(revision, self._cache.proxies())
        except Exception as error:
            return self._refuse_crashed(revision, error)
        return self._publish_guarded(revision, prepared, reason=Reason.RESTORED)

    async def _apply_off_loop(self, revision: Revision, *, head: str | None) -> bool:
        """Load and translate in a worker thread, then publish on the loop.

        Validating and translating thousands of resources takes seconds of CPU; done on the
        event loop it would stall every ADS stream (ACKs, reconnects) and /healthz meanwhile.
        Until the outcome is known, status keeps the previous head: a reader never sees the new
        head next to the previous revision's syncedAt or error and mistakes them for the new one's.
        """
        try:
            prepared = await asyncio.to_thread(self._prepare, revision, self._cache.proxies())
            if isinstance(prepared, ConfigSnapshots):
                for _ in range(_LATE_PROXY_ROUNDS):
                    late = prepared.untranslated(self._cache.proxies())
                    if not late:
                        break
                    await asyncio.to_thread(prepared.translate_all, late)
        except Cancelled:
            # The daemon is stopping: like an aborted poll, not an outcome of the revision.
            log.info("engine.pass_aborted", sha=revision.short_sha)
            return False
        except Exception as error:
            published = self._refuse_crashed(revision, error)
        else:
            published = not self._refuse_removal(revision, prepared) and self._publish_guarded(
                revision, prepared, reason=Reason.APPLIED
            )
        self.status.head_sha = head  # in the same step as the outcome it belongs to
        if published and not self._cache.proxies():
            # No proxy to ACK it (today's behaviour): good as far as anyone can tell. With proxies,
            # it is saved once every one ACKed it (_update_synced).
            await self._persist(revision)
        return published

    def _prepare(self, revision: Revision, proxies: tuple[ProxyIdentity, ...]) -> LoadResult | ConfigSnapshots:
        """The validation failure, or snapshots translated for every given proxy.

        Runs in a worker thread; the only shared state it touches is the decode cache,
        which no other code uses and which one pass at a time owns.

        Raises TranslationError when a proxy's snapshot would be inconsistent, Cancelled after abort().
        """
        files = {f"{self._prefix}{path}": content for path, content in revision.files.items()}
        skipped = [dataclasses.replace(entry, path=f"{self._prefix}{entry.path}") for entry in revision.skipped]
        result = load_files(
            files,
            skipped=skipped,
            default_namespace=self._namespace,
            cache=self._decode_cache,
            limits=self._limits,
            checkpoint=self._checkpoint,
        )
        if not result.ok:
            return result
        snapshots = ConfigSnapshots(
            config=result.config,
            registry=build_registry(result.config),
            findings=result.findings,
            checkpoint=self._checkpoint,
        )
        snapshots.translate_all(proxies)
        return snapshots

    def _refuse_crashed(self, revision: Revision, error: Exception) -> bool:
        if isinstance(error, TranslationError):
            self._head_rejection = self._fail(
                Reason.TRANSLATION_FAILED, str(error), sha=revision.sha, findings=error.findings
            )
            return False
        # A bug in loading or translation must neither stop the daemon (the last good revision
        # keeps serving) nor be retried as if the revision were fine.
        log.error("engine.apply_crashed", sha=revision.short_sha, exc_info=error)
        self._head_rejection = self._fail(
            Reason.TRANSLATION_FAILED,
            f"internal error applying revision {revision.short_sha}: {error!r}; still serving {self._served_label()}",
            sha=revision.sha,
        )
        return False

    def _refuse_removal(self, revision: Revision, prepared: LoadResult | ConfigSnapshots) -> bool:
        """Refuse (True) a valid revision that would remove all routing or too much of what is served.

        Not applied to a restored revision: it is what was served before the restart.
        """
        if not isinstance(prepared, ConfigSnapshots):
            return False
        refusal = self._removal_guard.refusal(served=self._served_resources, proposed=resource_keys(prepared.config))
        if refusal is None:
            return False
        marker = f"{self._prefix}{ALLOW_REMOVAL_FILE}"
        if revision.allow_removal:
            log.warning("engine.removal_allowed", sha=revision.short_sha, marker=marker, would_refuse=refusal)
            return False
        self._head_rejection = self._fail(
            Reason.REMOVAL_REFUSED,
            f"revision {revision.short_sha} {refusal}; still serving {self._served_label()}. "
            f"If that is intended, commit the file {marker} with it (delete it in the next commit)",
            sha=revision.sha,
        )
        return True

    def _publish_guarded(self, revision: Revision, prepared: LoadResult | ConfigSnapshots, *, reason: Reason) -> bool:
        try:
            return self._publish(revision, prepared, reason=reason)
        except Exception as error:
            return self._refuse_crashed(revision, error)

    def _publish(self, revision: Revision, prepared: LoadResult | ConfigSnapshots, *, reason: Reason) -> bool:
        if isinstance(prepared, LoadResult):
            errors = [f for f in prepared.findings if f.severity is Severity.ERROR]
            first = errors[0]
            self._head_rejection = self._fail(
                Reason.VALIDATION_FAILED,
                f"{len(errors)} error(s) in revision {revision.short_sha}, first: {first.format()}; "
                f"still serving {self._served_label()}",
                sha=revision.sha,
                findings=prepared.findings,
            )
            return False
        generation = self._cache.publish(prepared)
        self._head_rejection = None
        now = self._clock()
        self._current = _Published(revision, prepared)
        self.status.served_rejected = False
        self._served_tree = revision.config_tree
        self._served_resources = resource_keys(prepared.config)
        self.status.served = RevisionInfo.of(revision)
        self.status.served_since = now
        self.status.synced_at = None
        self.status.generation = generation
        self.status.last_error = None
        self.status.warnings = prepared.warnings
        self._succeed(reason, f"serving revision {revision.short_sha}")
        log.info("engine.published", sha=revision.short_sha, generation=generation, reason=reason.value)
        self._update_synced()
        return True

    def _on_xds_event(self, event: XdsEvent) -> None:
        if event.kind is EventKind.NACK:
            try:
                # After the stream has finished handling the NACK: a rollback publishes to every stream.
                asyncio.get_running_loop().call_soon(self._on_nack, event)
            except RuntimeError:
                self._on_nack(event)
            return
        if event.kind not in (EventKind.SNAPSHOT_ACKED, EventKind.CONNECT, EventKind.DISCONNECT):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._update_synced()  # driven without a loop (tools, tests): nothing to coalesce
            return
        # A rollout to N proxies brings N ACK events; one check per loop turn keeps that O(N), not O(N²).
        if not self._synced_check_pending:
            self._synced_check_pending = True
            loop.call_soon(self._update_synced)

    def _update_synced(self) -> None:
        """Synced: at least one proxy, and every connected one ACKed the served generation in full."""
        self._synced_check_pending = False
        generation = self.status.generation
        synced = generation > 0 and self._cache.all_acked(generation)
        if synced and self.status.synced_at is None:
            # When this generation first reached every proxy; a proxy joining later does not move it.
            self.status.synced_at = self._clock()
            # The sha makes the log a per-revision record of when every proxy accepted it.
            served = self.status.served
            log.info("engine.synced", sha=served.sha[:12] if served else None, generation=generation)
            current = self._current
            if current is not None and current != self._acked and not self.status.served_rejected:
                self._acked = current
                self._persist_soon(current.revision)
        self.status.synced = synced

    def _on_nack(self, event: XdsEvent) -> None:
        """A proxy rejected part of a snapshot: refuse the revision, unless it is not (or no longer) the point."""
        current = self._current
        if current is None or event.generation != self.status.generation or self.status.served_rejected:
            # About a generation no longer served (a rollback or a newer revision replaced it), or already refused.
            return
        kind = SHORT_NAMES.get(event.type_url, event.type_url)
        if current == self._acked:
            # Every proxy ACKed it before: one that joined later rejects it (its host, its Envoy). Rolling the
            # others back would not help it; status shows its NACK and `reconciler status` fails.
            log.warning(
                "engine.nack_of_synced_revision",
                sha=current.revision.short_sha,
                node_id=event.node_id,
                type=kind,
                message=event.message,
            )
            return
        rejected = current.revision
        what = f"proxy {event.node_id} rejected the {kind} of revision {rejected.short_sha}: {event.message}"
        target = self._acked if self._rollback_on_nack else None
        if target is not None and self._publish_guarded(target.revision, target.snapshots, reason=Reason.REJECTED):
            outcome = f"serving revision {target.revision.short_sha} again, the last one every proxy ACKed"
        else:
            self.status.served_rejected = True
            outcome = (
                "still serving it (--no-rollback-on-nack)"
                if not self._rollback_on_nack
                else "still serving it: no revision was ACKed by every proxy before"
            )
        self._head_rejection = self._fail(
            Reason.REJECTED,
            f"{what}; {outcome}",
            sha=rejected.sha,
            findings=self._nack_findings(current, event),
        )
        # The store may hold the rejected revision (saved while no proxy was connected): never restore it as good.
        self._persist_soon(self._acked.revision if self._acked is not None else None)

    def _nack_findings(self, rejected: _Published, event: XdsEvent) -> tuple[Finding, ...]:
        """Each Istio resource that made an Envoy resource named in the NACK, at its file:line."""
        proxy = next((p for p in self._cache.proxies() if p.node_id == event.node_id), None)
        if proxy is None:
            return ()
        try:
            snapshot = rejected.snapshots.snapshot_for(proxy)
        except ReconcilerError:
            return ()
        kind = SHORT_NAMES.get(event.type_url, event.type_url)
        findings = []
        for name in snapshot.resources(event.type_url):
            if not _mentions(event.message, name):
                continue
            for producer in producers_of(rejected.snapshots.config, type_url=event.type_url, name=name):
                resource = producer.resource
                findings.append(
                    Finding(
                        code=Code.ENVOY_REJECTED,
                        severity=Severity.ERROR,
                        message=f"proxy {event.node_id} rejected {kind} {name}: {event.message}",
                        file=resource.source.file,
                        line=producer.line,
                        path=producer.path,
                        kind=resource.kind.value,
                        namespace=resource.namespace,
                        name=resource.name,
                    )
                )
        return tuple(findings)

    def _served_label(self) -> str:
        return f"revision {self.status.served.sha[:12]}" if self.status.served else "nothing (no good revision yet)"

    def _succeed(self, reason: Reason, message: str) -> None:
        self.status.reason = reason
        self.status.message = message

    def _fail(self, reason: Reason, message: str, *, sha: str | None, findings: tuple[Finding, ...] = ()) -> SyncError:
        # Git's stderr, an exception's text: bounded here once for status, /readyz and the log.
        message = excerpt(message, MESSAGE_CHARS)
        error = SyncError(reason=reason, message=message, at=self._clock(), sha=sha, findings=findings)
        self._record_failure(error)
        log.warning("engine.pass_failed", reason=reason.value, sha=sha, message=message, findings=_logged(findings))
        return error

    def _record_failure(self, error: SyncError) -> None:
        self.status.reason = error.reason
        self.status.message = error.message
        self.status.last_error = error


#: Error findings one log line lists; a commit with thousands of them must not make a giant line.
_LOGGED_FINDINGS = 20


def _mentions(message: str, name: str) -> bool:
    """Whether ``message`` names ``name`` as a whole (``0.0.0.0_80`` is not in ``0.0.0.0_8080``)."""
    return re.search(rf"(?<![\w.|-]){re.escape(name)}(?![\w.|-])", message) is not None


def _logged(findings: tuple[Finding, ...]) -> list[str]:
    """Every error finding as ``file:line CODE message``; past the cap, ``+N more`` stands for the rest."""
    errors = [f"{f.file}:{f.line} {f.code.value} {f.message}" for f in findings if f.severity is Severity.ERROR]
    if len(errors) <= _LOGGED_FINDINGS:
        return errors
    return [*errors[:_LOGGED_FINDINGS], f"+{len(errors) - _LOGGED_FINDINGS} more"]
