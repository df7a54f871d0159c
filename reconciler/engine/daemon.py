"""The daemon: wires source, engine, xDS server and HTTP API, and runs the loop.

Its parts live beside it: :mod:`~reconciler.engine.settings` (what it is configured with),
:mod:`~reconciler.engine.source_factory` (which source), :mod:`~reconciler.engine.lock` (one
daemon per state dir), :mod:`~reconciler.engine.telemetry` (Prometheus).

The loop reconciles on start, then on every trigger (webhook, manual sync, file
save) or poll tick, whichever comes first. Failures back off with jitter up to
the poll interval; a trigger always cuts the wait short. A stop (SIGTERM, Ctrl-C)
during a pass aborts the source's poll instead of waiting for a hung fetch, and stops
loading and translation at their next checkpoint (between files, resources and proxies).

The daemon runs with larger garbage-collector thresholds (``settings.GC_THRESHOLDS``): a big
translation otherwise spends a quarter of its CPU in collections walking the loaded config.

One daemon owns a state directory (:class:`~reconciler.engine.lock.StateDirLock`): a second
one fails fast instead of fighting over the clone.

With leader election (``settings.leader``, :mod:`reconciler.kube.lease`) replicas share a Lease.
A follower serves its HTTP API (``/readyz`` answers 503 ``Follower`` naming the holder) and
nothing else: no fetch, no xDS port, no rollout. The replica that takes the Lease reads the
rollout state the previous leader left in the cluster (:mod:`~reconciler.engine.cluster_state`),
then starts like a single daemon. A leader that loses the Lease stops moving rollouts at once
and stops (``KubeError``; restarted, it is a follower); a clean stop releases the Lease.

One Kubernetes client (:class:`~reconciler.kube.client.KubeClient`) serves the Lease, the rollout
state, CRD mode's applier and the endpoint informers: one connection pool, one configuration read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from aiohttp import web

from reconciler.api.access import AccessPolicy, RateLimiter, RejectionLog, secured_application
from reconciler.api.config import config_routes
from reconciler.api.document import DriftDocument, EngineDocument, OriginDocument
from reconciler.api.rollouts import rollout_routes
from reconciler.api.standby import FOLLOWER_REASON, Standby, standby_middleware
from reconciler.api.status import status_routes
from reconciler.api.tls import server_tls_context
from reconciler.api.webhook import webhook_routes
from reconciler.engine.certificates import CertificateExpiry
from reconciler.engine.cluster_state import ClusterRolloutStore
from reconciler.engine.drift import DriftMonitor
from reconciler.engine.faults import arm_from_environment
from reconciler.engine.heap import HeapTrimmer, StartupHeap, libc_trim
from reconciler.engine.kube_sink import ClusterDriftCollector, KubernetesSink
from reconciler.engine.lock import StateDirLock
from reconciler.engine.reconcile import Engine, PassResult
from reconciler.engine.rollouts import RolloutController
from reconciler.engine.settings import GC_THRESHOLDS, KubeSettings, LeaderSettings, Settings
from reconciler.engine.source_factory import make_source
from reconciler.engine.state import SqliteStateStore
from reconciler.engine.status import EngineStatus
from reconciler.engine.telemetry import DaemonMetrics
from reconciler.errors import KubeError, ReconcilerError, StateError
from reconciler.kube.apply import IstioApplier
from reconciler.kube.client import KubeClient
from reconciler.kube.endpoints import ClusterEndpoints
from reconciler.kube.lease import LeaderElector, LeaseTiming, default_identity, default_namespace
from reconciler.metrics import MetricsService, MetricsStore
from reconciler.model.address import is_loopback, parse_address
from reconciler.model.config import MeshConfig
from reconciler.sources.backoff import Backoff
from reconciler.sources.revision import Watch
from reconciler.sources.webhook import PushEvent
from reconciler.xds.admin import fetch_config_dump
from reconciler.xds.cache import SnapshotCache
from reconciler.xds.server import XdsServer, start_server

__all__ = ["run_daemon"]

log = structlog.get_logger("reconciler.daemon")


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def run_daemon(settings: Settings, *, ready: Callable[[int, int], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM (or until cancelled). ``ready(xds_port, http_port)`` is called once both listen.

    Raises StateError at once when another daemon holds ``settings.state.dir``; with a cluster
    (endpoints, CRD mode, leader election), KubeError when its configuration cannot be read; with
    leader election, KubeError after leadership was lost (the replica stepped down: its restart
    comes back as a follower).
    """
    arm_from_environment()  # test-only fault points (RECONCILER_FAULT); off unless set
    lock = StateDirLock(settings.state.dir)
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        # Collection is paused from the restore until the first pass is collected and frozen (see StartupHeap).
        with StartupHeap() as heap:
            uses_cluster = settings.kube.enabled or settings.kube.apply or settings.leader.enabled
            if not uses_cluster:
                await _run_locked(settings, ready=ready, kube=None, leadership=None, heap=heap)
                return
            kube = await KubeClient.connect(settings.kube.kubeconfig)
            try:
                leadership = _Leadership.of(settings.leader, kube) if settings.leader.enabled else None
                await _run_locked(settings, ready=ready, kube=kube, leadership=leadership, heap=heap)
            finally:
                await kube.close()
    finally:
        gc.set_threshold(*thresholds)
        lock.release()


@dataclass(frozen=True, slots=True)
class _Leadership:
    """Leader election's parts: the Lease, and the rollout state every replica reads."""

    elector: LeaderElector
    store: ClusterRolloutStore

    @classmethod
    def of(cls, settings: LeaderSettings, api: KubeClient) -> _Leadership:
        namespace = settings.namespace or default_namespace()
        elector = LeaderElector(
            api=api,
            namespace=namespace,
            name=settings.name,
            identity=settings.identity or default_identity(),
            timing=LeaseTiming(
                lease_duration=settings.lease_duration,
                renew_deadline=settings.renew_deadline,
                retry_period=settings.retry_period,
            ),
        )
        store = ClusterRolloutStore(
            api=api,
            namespace=namespace,
            name=f"{settings.name}-rollouts",
            loop=asyncio.get_running_loop(),
            leading=lambda: elector.is_leader,
            timeout=settings.renew_deadline,
        )
        return cls(elector, store)

    def standby(self) -> Standby | None:
        """Who leads, while this replica follows; None while it holds the Lease."""
        return None if self.elector.is_leader else Standby(lease=self.elector.lease, leader=self.elector.holder)

    def document(self, engine: EngineDocument) -> EngineDocument:
        """``engine`` as a follower shows it: not ready (a Service sends proxies to the leader only), and who leads."""
        standby = self.standby()
        if standby is None:
            return engine
        return dataclasses.replace(engine, ready=False, reason=FOLLOWER_REASON, message=standby.message)


async def _run_locked(
    settings: Settings,
    *,
    ready: Callable[[int, int], None] | None,
    kube: KubeClient | None,
    leadership: _Leadership | None,
    heap: StartupHeap,
) -> None:
    """The daemon's run on its locked state dir; ``kube``: the one cluster client, when a cluster is used.

    ``heap`` is frozen after the first pass.
    """
    source, repo_label, prefix = make_source(settings)
    cache = SnapshotCache(
        push_debounce=settings.xds.push_debounce,
        push_max_delay=settings.xds.push_max_delay,
        remember_nodes=settings.xds.remember_nodes,
        remember_seconds=settings.xds.remember_seconds,
    )
    metrics = DaemonMetrics(cache=cache)
    status = EngineStatus(repo=repo_label, branch=settings.source.branch, path=settings.source.path)
    state = SqliteStateStore(settings.state.dir)
    engine = Engine(
        source=source,
        cache=cache,
        store=state,
        status=status,
        clock=_utc_now,
        default_namespace=settings.source.namespace,
        file_prefix=prefix,
        rollback_on_nack=settings.xds.rollback_on_nack,
        limits=settings.source.limits,
        removal_guard=settings.safety.removal_guard,
        # With a cluster (endpoints or CRD mode) its Services are real hosts, whether listed yet or not.
        cluster_domain=settings.kube.domain if settings.kube.enabled or settings.kube.apply else None,
        # With --sink kubernetes alone no proxy is served: the API server's acceptance alone makes a config synced.
        proxies_acknowledge=settings.xds.serve,
    )
    drift_settings = settings.drift
    drift = DriftMonitor(
        cache=cache,
        settings=drift_settings,
        fetch=lambda address: fetch_config_dump(
            address, timeout=drift_settings.admin_timeout, max_bytes=drift_settings.max_dump_bytes
        ),
        clock=_utc_now,
    )
    metrics.watch_drift(drift.drifted)
    kube_settings = settings.kube
    applier: IstioApplier | None = None
    cluster_drift: Callable[[], tuple[DriftDocument, ...]] = tuple
    if kube is not None and kube_settings.apply:
        # CRD mode: the sink is added before the restore, so the restored config is applied too.
        applier = IstioApplier(
            api=kube,
            inventory=(kube_settings.inventory_namespace or default_namespace(), kube_settings.inventory_name),
            backoff=lambda: Backoff(base=kube_settings.retry_base, cap=kube_settings.retry_cap),
            clock=_utc_now,
            self_heal=drift_settings.self_heal,
            debounce=kube_settings.debounce,
            max_listed=drift_settings.max_listed,
        )
        sink = KubernetesSink(applier, default_namespace=settings.source.namespace)
        engine.add_sink(sink)
        metrics.registry.register(ClusterDriftCollector(applier))
        cluster_drift = sink.documents
    # Proxies push their per-cluster stats to the xDS port; the controller judges rollout steps on them.
    store = MetricsStore()
    # A step is acknowledged as a config is synced (the engine's targets). With leader election rollouts
    # live in the cluster: the replica that takes over goes on with the step.
    rollouts = RolloutController(
        engine=engine,
        cache=cache,
        metrics=store,
        clock=time.time,
        store=state if leadership is None else leadership.store,
    )
    metrics.watch_rollouts(rollouts)
    served_certificates = {
        server: cert
        for server, cert in (
            ("xds", settings.xds.tls.cert_file if settings.xds.tls else None),
            ("api", settings.api.tls_cert),
        )
        if cert is not None
    }
    certificates = CertificateExpiry(
        served_certificates, warn_days=settings.xds.tls_expiry_warning_days, clock=time.time
    )
    certificates.check()
    metrics.registry.register(certificates)

    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    stop = asyncio.Event()

    def trigger(event: PushEvent | None) -> bool:
        branch = settings.source.branch
        if event is not None and event.ref not in (f"refs/heads/{branch}", branch):
            log.info("daemon.push_ignored", ref=event.ref, branch=branch)
            return False
        log.info("daemon.triggered", by="webhook" if event else "api")
        wake.set()
        return True

    # Port 0 asks the kernel for a free port (tests, benchmarks); the bound ports are reported to ``ready``.
    xds_host, _ = parse_address(settings.xds.address, what="--xds-address", allow_port_zero=True)
    http_host, http_port = parse_address(settings.api.address, what="--http-address", allow_port_zero=True)
    api = settings.api
    tls = server_tls_context(cert=api.tls_cert, key=api.tls_key)
    rejections = RejectionLog(interval=api.rejection_log_interval)
    policy = AccessPolicy(token=api.token, open_reads=api.open_reads, loopback=is_loopback(http_host))
    app = secured_application(
        policy=policy,
        limiter=RateLimiter(per_second=api.rate_per_second, burst=api.rate_burst),
        rejections=rejections,
        max_body_bytes=api.max_body_bytes,
    )
    app.add_routes(
        status_routes(
            status=status.document if leadership is None else lambda: leadership.document(status.document()),
            proxies=cache.statuses,
            registry=metrics.registry,
            rollouts=rollouts.documents,
            drift=lambda: (*cluster_drift(), *drift.documents()),
        )
    )

    def served() -> tuple[MeshConfig, OriginDocument | None] | None:
        current = engine.served_config
        return None if current is None else (current.config, status.document().origin)

    async def inspect(node_id: str) -> dict[str, object] | None:
        found = await drift.inspect(node_id)
        return None if found is None else found.to_json(max_listed=drift_settings.max_listed)

    app.add_routes(config_routes(served=served, connected=cache.proxies, inspect=inspect))
    app.add_routes(
        webhook_routes(
            secret=api.webhook_secret,
            trigger=trigger,
            max_body_bytes=api.max_body_bytes,
            max_json_depth=api.max_json_depth,
            rejections=rejections,
        )
    )
    app.add_routes(rollout_routes(command=rollouts.command))
    if leadership is not None:
        # A follower's loop and rollouts do not run: what only they would do is answered 503, naming the leader.
        app.middlewares.append(standby_middleware(leadership.standby))
        metrics.watch_leader(
            is_leader=lambda: leadership.elector.is_leader, transitions=lambda: leadership.elector.transitions
        )
    runner = web.AppRunner(app, access_log=None)
    watcher: Watch | None = None
    server: XdsServer | None = None
    lost = False
    try:
        # The HTTP API first: a follower answers its probes (/readyz: 503 Follower) while it waits for the Lease.
        await runner.setup()
        site = web.TCPSite(runner, http_host, http_port, ssl_context=tls)
        try:
            await site.start()
        except OSError as error:
            raise ReconcilerError(f"cannot serve HTTP on {settings.api.address}: {error}") from error
        bound_http = runner.addresses[0][1] if runner.addresses else http_port
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Only the main thread can own signals; run in another thread (tests, benchmarks),
            # the daemon stops when its task is cancelled instead.
            with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        if leadership is not None and not await _lead(leadership, rollouts, stop=stop):
            return
        heap.pause()  # here, not before: a follower may wait for the Lease for hours
        if engine.restore():
            log.info("daemon.serving_stored_revision", sha=status.served.sha[:12] if status.served else None)
        # A follower's xDS port stays closed: a proxy given every replica's address connects to the leader's.
        server = await start_server(
            cache=cache,
            address=settings.xds.address,
            services=[MetricsService(store).add_to],
            tls=settings.xds.tls,
            plaintext=settings.xds.plaintext,
            ads=settings.xds.serve,
        )
        if settings.source.watch:
            watcher = source.watch(lambda: loop.call_soon_threadsafe(wake.set))
        policy.log_start(tls=tls is not None)
        log.info("daemon.started", xds=f"{xds_host}:{server.port}", http=f"{http_host}:{bound_http}", repo=repo_label)
        if ready is not None:
            ready(server.port, bound_http)

        def abort() -> None:
            # A pass blocks a worker thread on git, or on the CPU while loading and translating: end both.
            source.abort()
            engine.abort()

        ticking = asyncio.ensure_future(rollouts.run(period=ROLLOUT_TICK_SECONDS))
        checking = asyncio.ensure_future(drift.run()) if drift_settings.interval > 0 else None
        cluster = (
            asyncio.ensure_future(_watch_cluster(kube_settings, kube, engine))
            if kube is not None and kube_settings.enabled
            else None
        )
        holding = asyncio.ensure_future(leadership.elector.hold()) if leadership is not None else None

        def step_down(_: asyncio.Future[None]) -> None:
            nonlocal lost
            if holding is not None and not holding.cancelled():
                # Lost, not stopped: no rollout moves from now on; the daemon stops (a restart is a follower).
                lost = True
                rollouts.stop()
                ticking.cancel()
                stop.set()

        if holding is not None:
            holding.add_done_callback(step_down)
        applying = asyncio.ensure_future(applier.run()) if applier is not None else None
        expiry = (
            asyncio.ensure_future(certificates.run(period=CERTIFICATE_CHECK_SECONDS)) if certificates.watched else None
        )
        trimmer = HeapTrimmer(quiet=settings.xds.heap_trim_quiet, trim=libc_trim())
        forget_trimmer = cache.add_listener(trimmer.note)
        trimming = asyncio.ensure_future(trimmer.run())
        try:
            await _loop(
                engine=engine,
                metrics=metrics,
                wake=wake,
                stop=stop,
                poll_interval=settings.source.poll_interval,
                abort=abort,
                heap=heap,
            )
        finally:
            ticking.cancel()
            forget_trimmer()
            background = [task for task in (checking, cluster, holding, applying, expiry, trimming) if task is not None]
            for task in background:
                task.cancel()
            await asyncio.gather(ticking, *background, return_exceptions=True)
            await asyncio.to_thread(rollouts.wait_saved)  # a clean stop keeps the last decision
    finally:
        if watcher is not None:
            watcher.stop()
        await runner.cleanup()
        if server is not None:
            await server.stop(grace=1.0)
        if leadership is not None and not lost:
            # After the last save and the xDS server: the next leader takes over at once, from the saved step.
            await leadership.elector.release()
        # close() waits for a poll still running in a worker thread; the loop aborted any such poll.
        await asyncio.to_thread(source.close)
        log.info("daemon.stopped")
    if lost:
        raise KubeError(f"lost the Lease {leadership.elector.lease if leadership else ''}: stepped down")


async def _lead(leadership: _Leadership, rollouts: RolloutController, *, stop: asyncio.Event) -> bool:
    """Wait for the Lease (False: stopped first), then read the rollouts the previous leader left."""
    acquiring = asyncio.ensure_future(leadership.elector.acquire())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (acquiring, stopping):
            task.cancel()
        await asyncio.gather(acquiring, stopping, return_exceptions=True)
    if not leadership.elector.is_leader or stop.is_set():
        return False
    try:
        await leadership.store.load()
    except StateError as error:
        # Rollouts then start afresh from what is served, as after a lost state store.
        log.error("rollout.state_load_failed", store=leadership.store.where, error=str(error))
    rollouts.reload_stored()
    return True


async def _watch_cluster(settings: KubeSettings, client: KubeClient, engine: Engine) -> None:
    """Serve the cluster's Services and endpoints beside the ServiceEntries until cancelled.

    A cluster unreachable at start or later is retried by the informers.
    """
    watcher = ClusterEndpoints(
        api=client,
        on_change=engine.update_cluster,
        backoff=lambda: Backoff(base=settings.retry_base, cap=settings.retry_cap),
        debounce=settings.debounce,
        domain=settings.domain,
    )
    await watcher.run()


#: How often the serving certificates' expiry is read again (a replaced file, a day passing).
CERTIFICATE_CHECK_SECONDS = 3600.0
#: How often running rollouts are judged between ACKs: well under any step's interval.
ROLLOUT_TICK_SECONDS = 0.5
#: How long a stopping daemon waits for an aborted pass to end (Kubernetes' grace period is 30 s).
ABORT_GRACE_SECONDS = 5.0
# abort() is a no-op when no poll runs yet; repeated so a poll that starts just after the stop is cut short too.
_ABORT_REPEAT_SECONDS = 0.25


async def _loop(
    *,
    engine: Engine,
    metrics: DaemonMetrics,
    wake: asyncio.Event,
    stop: asyncio.Event,
    poll_interval: float,
    abort: Callable[[], None],
    heap: StartupHeap,
    abort_grace: float = ABORT_GRACE_SECONDS,
) -> None:
    backoff = Backoff(base=0.5, cap=max(poll_interval, 1.0))
    trigger = "start"
    while not stop.is_set():
        wake.clear()
        started = time.monotonic()
        result = await _pass_unless_stopped(engine=engine, trigger=trigger, stop=stop, abort=abort, grace=abort_grace)
        if result is None:
            return
        if trigger == "start":
            # What is alive after the first pass (modules, gRPC, the config) is left out of later full collections.
            heap.freeze()
        metrics.duration.observe(time.monotonic() - started)
        metrics.passes.labels(result.reason.value).inc()
        # Only a transient failure is retried soon; a refused commit stays refused until a new
        # commit arrives (Flux's "stalled"), so it waits for the next poll or trigger like success.
        if not result.retry:
            backoff.reset()
        delay = min(backoff.next_delay(), poll_interval) if result.retry else poll_interval
        waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
        try:
            done, _ = await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also when this task is cancelled: a waiter left pending is destroyed with the loop, noisily.
            for task in waiters:
                task.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        trigger = "event" if done else "poll"


async def _pass_unless_stopped(
    *, engine: Engine, trigger: str, stop: asyncio.Event, abort: Callable[[], None], grace: float
) -> PassResult | None:
    """One pass; ``None`` when ``stop`` came first and the pass was aborted.

    The pass blocks a worker thread on git for up to its timeout (minutes against a hung
    remote): waiting for it would outlast Kubernetes' grace period and end in SIGKILL.
    """
    pass_task = asyncio.ensure_future(engine.reconcile(trigger=trigger))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({pass_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if pass_task.done():
            return pass_task.result()
        await _abort_pass(pass_task, abort=abort, grace=grace)
        if not pass_task.cancelled():
            pass_task.result()  # a crash in the pass still surfaces
        return None
    finally:
        stopped.cancel()
        if not pass_task.done():
            # This task was cancelled (an embedding caller stopping the daemon): no waiting here,
            # the poll is cut short and the source's close() waits for it to return.
            abort()
            pass_task.cancel()


async def _abort_pass(pass_task: asyncio.Future[PassResult], *, abort: Callable[[], None], grace: float) -> None:
    log.info("daemon.aborting_pass")
    deadline = time.monotonic() + grace
    while not pass_task.done() and (left := deadline - time.monotonic()) > 0:
        abort()
        await asyncio.wait({pass_task}, timeout=min(left, _ABORT_REPEAT_SECONDS))
    if not pass_task.done():
        # The worker thread runs on, and keeps the process until it ends; the source did not honour abort().
        log.warning("daemon.pass_abandoned", grace_seconds=grace)
        pass_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pass_task
