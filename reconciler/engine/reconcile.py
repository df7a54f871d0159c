"""The one reconcile pass: fetch → validate → translate → serve → record status.

Every pass ends by writing status with a named :class:`Reason`, success or not.
A revision is published whole or not at all: it must validate, and it must
translate consistently for every connected proxy (the cache's publish is
all-or-nothing), before any proxy sees it. On any failure the last good snapshot
keeps serving. CPU work (validation, translation) and disk writes run in worker
threads so the loop serving every ADS stream never stalls.

"Synced" means every target accepted the served generation (:attr:`Engine.acknowledgers`):
every connected proxy (at least one) has ACKed it in full, and in CRD mode the API server
accepted every object of it (with ``--sink kubernetes`` alone, that acceptance only). It is
derived from the cache's ACK events and the sinks' notices, never from a timer.

Envoy's word is final: a revision any proxy NACKs before it is synced is refused
(``Rejected``) and the last revision every proxy ACKed is published again, so all
proxies run one config. The store therefore holds the last synced revision, or, when the
proxies are the only target, the last published one while no proxy is connected to ACK it;
a rejection rewrites it.

What is served is a config with an :class:`~reconciler.engine.origin.Origin` (the commit it
belongs to, and what served it: a commit, a rollout step, a rollback, a restore, a NACK
rollback), published by :meth:`Engine.serve`, the one way in for all of them. The origin is
the served state's identity: a new generation per served config, synced when every proxy
ACKed that generation, and a new commit counts as "the served config" only when what is served
is a commit's config as committed with the same tree. The store keeps commits, never a step's
weights: once an origin is synced, the commit it belongs to is saved. A restart serves that commit
through the gate like any other (:meth:`Engine.restore`): as committed, or, when the rollout
controller stored a rollout for its config tree, with that rollout's weights.

Failures are exception classes (:mod:`reconciler.errors`); :data:`_FAILURES` is the one table
that says what each means for status (its :class:`Reason`) and for the loop (retry or wait).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from reconciler.api.document import PROXIES
from reconciler.engine import faults
from reconciler.engine.faults import FaultPoint
from reconciler.engine.guard import RemovalGuard, ResourceKey, resource_keys
from reconciler.engine.origin import Change, Origin
from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.engine.state import SourceIdentity, StateStore
from reconciler.engine.status import EngineStatus, Reason, RevisionInfo, SyncError
from reconciler.errors import (
    Cancelled,
    InvalidConfigError,
    PathNotFoundError,
    ReconcilerError,
    SourceError,
    StateError,
    TranslationError,
)
from reconciler.loader import DecodeCache, load_files
from reconciler.model.config import MeshConfig
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits
from reconciler.model.text import MESSAGE_CHARS, excerpt
from reconciler.sources.revision import ALLOW_REMOVAL_FILE, ConfigSource, Revision
from reconciler.translate import ServiceRegistry
from reconciler.translate.memo import TranslationCache
from reconciler.translate.provenance import producers_of
from reconciler.translate.proxy import ProxyIdentity
from reconciler.translate.snapshot import SHORT_NAMES
from reconciler.validate.findings import Code, Finding, Severity
from reconciler.xds.cache import EventKind, SnapshotCache, XdsEvent

__all__ = ["Acknowledger", "ConfigSink", "Engine", "PassResult", "RevisionGate"]

log = structlog.get_logger("reconciler.engine")

#: Proxies may connect while a revision is being translated; translate their shapes too, a few rounds at most.
_LATE_PROXY_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class PassResult:
    """How one :meth:`Engine.reconcile` pass ended, for the loop."""

    #: The source's head config is what is served.
    ok: bool
    #: Status' reason after the pass (after a pass cut short by shutdown: the last real outcome).
    reason: Reason
    #: A failure that may pass by itself (a fetch): try again on backoff. Otherwise the next poll or
    #: trigger comes first: a refused commit stays refused until a new commit arrives (Flux's "stalled").
    retry: bool = False


class RevisionGate(Protocol):
    """Serves a commit's config as committed or as a rollout's step (``engine.rollouts.RolloutController``)."""

    def serve_revision(self, revision: Revision, config: ConfigSnapshots, *, change: Change) -> bool:
        """Serve ``revision``'s validated ``config`` through :meth:`Engine.serve`; False when it was refused."""
        ...

    async def serve_revision_off_loop(self, revision: Revision, config: ConfigSnapshots, *, change: Change) -> bool:
        """:meth:`serve_revision` with what it translates translated in a worker thread (the loop serves meanwhile)."""
        ...


class Acknowledger(Protocol):
    """A target a generation is served to: the proxies' :class:`~reconciler.xds.cache.SnapshotCache`, a sink."""

    def all_acked(self, generation: int) -> bool:
        """Whether ``generation`` (or a later one) reached this target in full."""
        ...


class ConfigSink(Acknowledger, Protocol):
    """Where else a served config goes besides the proxies' cache: the cluster's Istio objects in CRD mode."""

    #: Who acknowledges what it is handed, as status' ``syncedBy`` names it (``apiServer``).
    target: str

    def served(self, config: ConfigSnapshots, origin: Origin, *, generation: int) -> None:
        """``config`` is served now as ``generation``, because of ``origin``; hand it on without blocking."""
        ...

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the loop whenever :meth:`all_acked` may have turned true."""
        ...


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: Reason
    retry: bool


#: What each failure means for status and for the loop: the one table from exception class to Reason,
#: looked up along the raised exception's MRO (so a subclass listed apart wins over its base).
#: Cancelled (SourceAborted too) is not here: the daemon stopping is not an outcome.
_FAILURES: dict[type[ReconcilerError], _Failure] = {
    # The head commit has no config directory: a refusal of that commit, not a failed fetch, so it is
    # not retried on backoff. The source reports it again on every poll until a commit brings it back.
    PathNotFoundError: _Failure(Reason.PATH_NOT_FOUND, retry=False),
    SourceError: _Failure(Reason.FETCH_FAILED, retry=True),
    InvalidConfigError: _Failure(Reason.VALIDATION_FAILED, retry=False),
    TranslationError: _Failure(Reason.TRANSLATION_FAILED, retry=False),
    StateError: _Failure(Reason.STATE_FAILED, retry=True),
}


def _failure_of(error: BaseException, *, otherwise: _Failure) -> _Failure:
    """The table's entry for ``error``; ``otherwise`` for an exception the table does not name (a bug)."""
    return next((_FAILURES[kind] for kind in type(error).__mro__ if kind in _FAILURES), otherwise)


#: The status reason a served config ends its pass with, by what served it.
_SERVED_REASONS = {
    Change.COMMIT: Reason.APPLIED,
    Change.ROLLOUT_STEP: Reason.ROLLOUT_STEP,
    Change.ROLLBACK: Reason.ROLLOUT_ROLLBACK,
    Change.RESTORE: Reason.RESTORED,
    Change.NACK_ROLLBACK: Reason.REJECTED,
}


@dataclass(frozen=True, slots=True)
class _Published:
    """A config published and its origin: what a NACK rollback publishes again."""

    origin: Origin
    snapshots: ConfigSnapshots


class Engine:
    """Owns the served config; one :meth:`reconcile` call is one pass, :meth:`serve` serves any config."""

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
        cluster_domain: str | None = None,
        proxies_acknowledge: bool = True,
    ) -> None:
        """``proxies_acknowledge``: False when no proxy is served (``--sink kubernetes`` alone): the sinks alone do."""
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
        self._served_resources: frozenset[ResourceKey] = frozenset()
        # The validation/translation failure of the source's current head, until a new head replaces it.
        self._head_rejection: SyncError | None = None
        self._synced_check_pending = False
        self._rollback_on_nack = rollback_on_nack
        self._current: _Published | None = None
        # The last config every connected proxy ACKed in full: what a NACKed one is rolled back to.
        self._acked: _Published | None = None
        # One writer thread: saves land in the order they were asked for (a rollback after the save it undoes).
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-save")
        self._gate: RevisionGate | None = None
        # Set by abort(), read by the checkpoint that loading and translation call between files and proxies.
        self._stopping = threading.Event()
        # The cluster's services (reconciler.kube), merged before the ServiceEntries'; None: no cluster.
        self._cluster: ServiceRegistry | None = None
        # Set when a cluster is configured: its Services' hosts are never "missing", listed yet or not.
        self._cluster_domain = cluster_domain
        self._sinks: list[ConfigSink] = []
        self._proxies_acknowledge = proxies_acknowledge
        status.synced_by = (PROXIES,) if proxies_acknowledge else ()
        cache.add_listener(self._on_xds_event)

    def add_sink(self, sink: ConfigSink) -> None:
        """Hand every config served from now on to ``sink`` too (commits, rollout steps, rollbacks, restores).

        A generation is synced only once ``sink`` acknowledged it too.
        """
        self._sinks.append(sink)
        self.status.synced_by = (sink.target, *self.status.synced_by)
        sink.add_listener(self._check_synced_soon)

    @property
    def acknowledgers(self) -> tuple[Acknowledger, ...]:
        """What must have a generation for it to be synced: the proxies' cache (when served), every sink."""
        return ((self._cache,) if self._proxies_acknowledge else ()) + tuple(self._sinks)

    def _unacknowledged(self) -> bool:
        """Nothing can acknowledge what is served: the proxies are the only target and none is connected."""
        return not self._sinks and not self._cache.proxies()

    def govern(self, gate: RevisionGate) -> None:
        """From now on serve every commit (new, adopted at start, restored) through ``gate``."""
        self._gate = gate

    @property
    def served_config(self) -> ConfigSnapshots | None:
        """The config the proxies are being given now (``None`` before anything was served)."""
        return self._current.snapshots if self._current is not None else None

    @property
    def translations(self) -> TranslationCache:
        """The per-service translation work kept between passes (every ConfigSnapshots the engine serves shares it)."""
        return self._decode_cache.translations

    def registry_for(self, config: MeshConfig) -> ServiceRegistry:
        """The services ``config`` is translated with: the cluster's (when watched), then its ServiceEntries'.

        A Kubernetes Service wins over a ServiceEntry of the same host and namespace, as in Istio.
        """
        own = self._decode_cache.translations.registry(config, cluster_domain=self._cluster_domain)  # once per config
        return self._cluster.merged(own) if self._cluster is not None else own

    async def update_cluster(self, registry: ServiceRegistry) -> None:
        """The cluster's services changed: serve what is served again, with them (same origin, new generation).

        Only the translation of the served config is redone (memoised per proxy shape, in a worker
        thread), no fetch and no validation; when only endpoints changed, only the load assignments
        differ, so the ADS streams push EDS alone (each type is versioned by content).
        """
        self._cluster = registry
        await self._refresh_cluster()

    async def _refresh_cluster(self) -> None:
        while (current := self._current) is not None and self._cluster is not None:
            config = current.snapshots.config
            registry = self.registry_for(config)
            if registry == current.snapshots.registry:
                return
            snapshots = ConfigSnapshots(
                config=config, registry=registry, findings=current.snapshots.warnings(), checkpoint=self._checkpoint
            )
            try:
                await asyncio.to_thread(snapshots.translate_all, self._cache.proxies())
            except Cancelled:
                return
            except Exception as error:
                # The served config keeps serving with the endpoints it had; the next change tries again.
                log.warning("engine.endpoints_not_served", error=excerpt(str(error), MESSAGE_CHARS))
                return
            if self._current is current:  # else a commit or a rollout step came meanwhile: look again
                self.serve(snapshots, origin=current.origin)
                return

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
            self._fail(_FAILURES[StateError].reason, str(error), sha=None)
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

    async def reconcile(self, *, trigger: str) -> PassResult:
        """One pass: poll the source and serve its head config when it changed."""
        self.status.last_attempt = self._clock()
        laps = _Laps()
        try:
            revision = await asyncio.to_thread(self._source.poll)
            laps.lap("fetch")
        except Cancelled:
            # The daemon is stopping: not a failure of the source, so status keeps the last real outcome.
            log.info("engine.pass_aborted", sha=self.status.head_sha)
            return self._result(ok=False)
        except Exception as error:
            return self._poll_failed(error)
        head = self._source.head_sha
        if revision is None:
            self.status.head_sha = head
            # Nothing new: the fetch worked, so only a rejected head commit is still an error.
            if self._head_rejection is not None:
                self._record_failure(self._head_rejection)
                return self._result(ok=False)
            self.status.last_error = None
            self._succeed(Reason.UP_TO_DATE, f"serving {self._served_label()}; no config change")
            return self._result(ok=True)
        current = self._current
        if current is not None and self._already_served(current.origin, revision):
            await self._adopt(revision, current, head=head)
            return self._result(ok=True)
        faults.reached(FaultPoint.AFTER_FETCH, sha=revision.sha)
        log.info("engine.revision", sha=revision.short_sha, trigger=trigger)
        self._succeed(Reason.PROGRESSING, f"validating and translating revision {revision.short_sha}")
        return self._result(ok=await self._apply_off_loop(revision, head=head, laps=laps))

    def _already_served(self, origin: Origin, revision: Revision) -> bool:
        """Whether what ``origin`` serves is what ``revision`` is to be served as, so nothing is published again.

        A commit's own config with the same tree; with a gate, also a rollout's step or rollback for that
        tree: serving git's weights again for a rolled-back (or half-walked) commit would undo the rollout.
        Only a new config tree is compared with the served weights again.
        """
        if revision.config_tree != origin.revision.config_tree:
            return False
        return origin.as_committed or (self._gate is not None and origin.change in _ROLLOUT_CHANGES)

    def _result(self, *, ok: bool) -> PassResult:
        return PassResult(ok=ok, reason=self.status.reason)

    def _poll_failed(self, error: Exception) -> PassResult:
        self.status.head_sha = self._source.head_sha or self.status.head_sha
        failure = _failure_of(error, otherwise=_FAILURES[SourceError])
        if not isinstance(error, SourceError):
            # A source must raise SourceError; anything else is a bug, but not one that may stop the daemon.
            log.error("engine.poll_crashed", exc_info=error)
            detail = f"internal error: {error!r}"
        elif isinstance(error, PathNotFoundError):
            # Not a head rejection either: the source reports it again on every poll.
            detail = f"{error}; still serving {self._served_label()}"
        else:
            detail = f"{error.reason}: {error}"
        self._fail(failure.reason, detail, sha=self.status.head_sha)
        return PassResult(ok=False, reason=failure.reason, retry=failure.retry)

    async def _adopt(self, revision: Revision, current: _Published, *, head: str | None) -> None:
        """A new commit whose config equals what is served (e.g. a revert of a rejected commit)."""
        self._head_rejection = None
        # A rollout's step or rollback stays what it is: only the commit it belongs to is the new one.
        origin = (
            Origin(revision) if current.origin.as_committed else dataclasses.replace(current.origin, revision=revision)
        )
        adopted = _Published(origin, current.snapshots)
        self._acked = adopted if self._acked == current else self._acked
        self._current = adopted
        if self._acked == self._current or self._unacknowledged():
            await self._persist(revision)
        # No await from here on: a status reader sees head, served revision, error and reason change together.
        self.status.head_sha = head
        self.status.served = RevisionInfo.of(revision)
        self.status.origin = adopted.origin
        self.status.last_error = None
        if origin.as_committed:
            self._succeed(Reason.UP_TO_DATE, f"revision {revision.short_sha} has the served config")
        else:
            # A restart's first pass meets the rollout's commit: what is served is still its step (or rollback).
            self._succeed(_SERVED_REASONS[origin.change], f"serving {origin.describe()}; no config change")

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
            snapshots = self._prepare(revision, self._cache.proxies())
        except Exception as error:
            return self._refuse(revision, error)
        return self._serve_commit(revision, snapshots, change=Change.RESTORE)

    async def _apply_off_loop(self, revision: Revision, *, head: str | None, laps: _Laps) -> bool:
        """Load and translate in a worker thread, then publish on the loop.

        Validating and translating thousands of resources takes seconds of CPU; done on the
        event loop it would stall every ADS stream (ACKs, reconnects) and /healthz meanwhile.
        Until the outcome is known, status keeps the previous head: a reader never sees the new
        head next to the previous revision's syncedAt or error and mistakes them for the new one's.
        """
        try:
            snapshots = await asyncio.to_thread(self._prepare, revision, self._cache.proxies(), laps=laps)
            for _ in range(_LATE_PROXY_ROUNDS):
                late = snapshots.untranslated(self._cache.proxies())
                if not late:
                    break
                await asyncio.to_thread(snapshots.translate_all, late)
            laps.lap("translate")
        except Cancelled:
            # The daemon is stopping: like an aborted poll, not an outcome of the revision.
            log.info("engine.pass_aborted", sha=revision.short_sha)
            return False
        except Exception as error:
            published = self._refuse(revision, error)
        else:
            faults.reached(FaultPoint.AFTER_VALIDATION, sha=revision.sha)
            published = not self._refuse_removal(revision, snapshots) and await self._serve_commit_off_loop(
                revision, snapshots
            )
            laps.lap("publish")
        # Where the pass's time went (fetch and read, load and validate, translate, publish), to find what to speed up.
        log.debug("engine.pass_timings", sha=revision.short_sha, **laps.milliseconds)
        self.status.head_sha = head  # in the same step as the outcome it belongs to
        if published and self._unacknowledged():
            # No proxy to ACK it (today's behaviour): good as far as anyone can tell. Otherwise it is
            # saved once every target has it (_update_synced): each proxy ACKed it, the API server accepted it.
            await self._persist(revision)
        if published:
            await self._refresh_cluster()  # the cluster changed while this revision was translated
        return published

    def _prepare(
        self, revision: Revision, proxies: tuple[ProxyIdentity, ...], *, laps: _Laps | None = None
    ) -> ConfigSnapshots:
        """The revision's config as snapshots, translated for every given proxy.

        Runs in a worker thread; the only shared state it touches is the decode cache,
        which no other code uses and which one pass at a time owns.

        Raises InvalidConfigError when validation found errors, TranslationError when a proxy's
        snapshot would be inconsistent, Cancelled after abort().
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
            cluster_domain=self._cluster_domain,
        )
        if laps is not None:
            laps.lap("validate")
        if not result.ok:
            errors = [finding for finding in result.findings if finding.severity is Severity.ERROR]
            raise InvalidConfigError(
                f"{len(errors)} error(s) in revision {revision.short_sha}, first: {errors[0].format()}",
                findings=result.findings,
            )
        snapshots = ConfigSnapshots(
            config=result.config,
            registry=self.registry_for(result.config),
            findings=result.findings,
            # Validation translated these shapes already, with the ServiceEntries alone.
            seeds=result.translations if self._cluster is None else None,
            checkpoint=self._checkpoint,
            cache=self._decode_cache.translations,  # and the other shapes share its per-service work
        )
        snapshots.translate_all(proxies)
        return snapshots

    def _refuse(self, revision: Revision, error: Exception) -> bool:
        """Record why ``revision``'s config is not served (the last good keeps serving); always False."""
        # Anything but a failure of the config is a bug in loading or translation: it must neither stop
        # the daemon (the last good revision keeps serving) nor be retried as if the revision were fine.
        failure = _failure_of(error, otherwise=_FAILURES[TranslationError])
        findings: tuple[Finding, ...] = ()
        if isinstance(error, InvalidConfigError):
            message, findings = f"{error}; still serving {self._served_label()}", error.findings
        elif isinstance(error, TranslationError):
            message, findings = str(error), error.findings
        else:
            log.error("engine.apply_crashed", sha=revision.short_sha, exc_info=error)
            failure = _FAILURES[TranslationError]
            message = (
                f"internal error applying revision {revision.short_sha}: {error!r}; "
                f"still serving {self._served_label()}"
            )
        self._head_rejection = self._fail(failure.reason, message, sha=revision.sha, findings=findings)
        return False

    def _refuse_removal(self, revision: Revision, snapshots: ConfigSnapshots) -> bool:
        """Refuse (True) a valid revision that would remove all routing or too much of what is served.

        Not applied to a restored revision: it is what was served before the restart.
        """
        refusal = self._removal_guard.refusal(served=self._served_resources, proposed=resource_keys(snapshots.config))
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

    def _serve_commit(self, revision: Revision, config: ConfigSnapshots, *, change: Change) -> bool:
        if self._gate is not None:
            return self._gate.serve_revision(revision, config, change=change)
        return self.serve(config, origin=Origin(revision, change))

    async def _serve_commit_off_loop(self, revision: Revision, config: ConfigSnapshots) -> bool:
        """A new commit's config, translated for every proxy already: a gate's rollout step translates off the loop."""
        if self._gate is not None:
            return await self._gate.serve_revision_off_loop(revision, config, change=Change.COMMIT)
        return self.serve(config, origin=Origin(revision, Change.COMMIT))

    def serve(self, config: ConfigSnapshots, *, origin: Origin) -> bool:
        """Publish ``config`` to every proxy as one new generation, served because of ``origin``.

        The one way a config reaches the proxies: a commit, a restore, a NACK rollback, and the
        steps and rollbacks of a rollout. ``config`` is validated; it is translated here for any
        connected proxy it was not translated for yet (all-or-nothing). From here on status, the
        generation, synced tracking and the stored last good follow ``origin``: once every proxy
        ACKed it, ``origin.revision`` is saved as last good. False when the cache refused it: the
        reason is recorded like a refused commit's, and the config served before keeps serving.
        """
        try:
            return self._publish(config, origin)
        except Exception as error:
            return self._refuse(origin.revision, error)

    def _publish(self, config: ConfigSnapshots, origin: Origin) -> bool:
        generation = self._cache.publish(config)
        self._head_rejection = None
        now = self._clock()
        reason = _SERVED_REASONS[origin.change]
        self._current = _Published(origin, config)
        self.status.served_rejected = False
        self._served_resources = resource_keys(config.config)
        self.status.served = RevisionInfo.of(origin.revision)
        self.status.origin = origin
        self.status.served_since = now
        self.status.synced_at = None
        self.status.generation = generation
        self.status.last_error = None
        self.status.warnings = config.warnings
        self._succeed(reason, f"serving {origin.describe()}")
        for sink in self._sinks:
            sink.served(config, origin, generation=generation)
        log.info(
            "engine.published",
            sha=origin.revision.short_sha,
            generation=generation,
            reason=reason.value,
            change=origin.change.value,
        )
        faults.reached(FaultPoint.AFTER_PUBLISH_BEFORE_ACK, sha=origin.revision.sha)
        self._update_synced()
        return True

    def _on_xds_event(self, event: XdsEvent) -> None:
        if event.kind is EventKind.ACK and self._current is not None:
            faults.reached(FaultPoint.MID_PUBLISH, sha=self._current.origin.revision.sha)
        if event.kind is EventKind.NACK:
            try:
                # After the stream has finished handling the NACK: a rollback publishes to every stream.
                asyncio.get_running_loop().call_soon(self._on_nack, event)
            except RuntimeError:
                self._on_nack(event)
            return
        if event.kind in (EventKind.SNAPSHOT_ACKED, EventKind.CONNECT, EventKind.DISCONNECT):
            self._check_synced_soon()

    def _check_synced_soon(self) -> None:
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
        """Synced: every target has the served generation (at least one proxy, each ACKed it; the API server)."""
        self._synced_check_pending = False
        generation = self.status.generation
        synced = generation > 0 and all(target.all_acked(generation) for target in self.acknowledgers)
        if synced and self.status.synced_at is None:
            # When this generation first reached every proxy; a proxy joining later does not move it.
            self.status.synced_at = self._clock()
            # The sha makes the log a per-revision record of when every proxy accepted it.
            served = self.status.served
            log.info("engine.synced", sha=served.sha[:12] if served else None, generation=generation)
            current = self._current
            if current is not None and current != self._acked and not self.status.served_rejected:
                self._acked = current
                self._persist_soon(current.origin.revision)
        self.status.synced = synced

    def _on_nack(self, event: XdsEvent) -> None:
        """A proxy rejected part of a snapshot: refuse the config, unless it is not (or no longer) the point."""
        current = self._current
        if current is None or event.generation != self.status.generation or self.status.served_rejected:
            # About a generation no longer served (a rollback or a newer config replaced it), or already refused.
            return
        kind = SHORT_NAMES.get(event.type_url, event.type_url)
        if current == self._acked:
            # Every proxy ACKed it before: one that joined later rejects it (its host, its Envoy). Rolling the
            # others back would not help it; status shows its NACK and `reconciler status` fails.
            log.warning(
                "engine.nack_of_synced_revision",
                sha=current.origin.revision.short_sha,
                node_id=event.node_id,
                type=kind,
                message=event.message,
            )
            return
        rejected = current.origin
        what = f"proxy {event.node_id} rejected the {kind} of {rejected.describe()}: {event.message}"
        target = self._acked if self._rollback_on_nack else None
        if target is not None and self.serve(target.snapshots, origin=target.origin.again(Change.NACK_ROLLBACK)):
            # Every proxy ACKed this config before: it is the ACKed one (a NACK of it rolls nothing back).
            self._acked = self._current
            outcome = f"serving {target.origin.describe()} again, the last one every proxy ACKed"
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
            sha=rejected.revision.sha,
            findings=self._nack_findings(current, event),
        )
        # The store may hold the rejected revision (saved while no proxy was connected): never restore it as good.
        self._persist_soon(self._acked.origin.revision if self._acked is not None else None)

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
        return self._current.origin.describe() if self._current is not None else "nothing (no good revision yet)"

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


class _Laps:
    """Milliseconds per phase of one pass, each from the end of the phase before (the first from its creation)."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.milliseconds: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.milliseconds[f"{phase}_ms"] = round((now - self._last) * 1000, 1)
        self._last = now


#: Configs a rollout derives from a commit's: with a gate, what a commit with their tree is served as.
_ROLLOUT_CHANGES = frozenset({Change.ROLLOUT_STEP, Change.ROLLBACK})


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
