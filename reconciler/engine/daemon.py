"""The daemon: wires source, engine, xDS server and HTTP API, and runs the loop.

Its parts live beside it: :mod:`~reconciler.engine.settings` (what it is configured with),
:mod:`~reconciler.engine.source_factory` (which source), :mod:`~reconciler.engine.lock` (one
daemon per state dir), :mod:`~reconciler.engine.telemetry` (Prometheus).

The loop reconciles on start, then on every trigger (webhook, manual sync, file
save) or poll tick, whichever comes first. Failures back off with jitter up to
the poll interval; a trigger always cuts the wait short. A stop (SIGTERM, Ctrl-C)
during a pass aborts the source's poll instead of waiting for a hung fetch, and stops
loading and translation at their next checkpoint (between files, resources and proxies).

One daemon owns a state directory (:class:`~reconciler.engine.lock.StateDirLock`): a second
one fails fast instead of fighting over the clone.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from aiohttp import web

from reconciler.api.rollouts import rollout_routes
from reconciler.api.status import status_routes
from reconciler.api.webhook import webhook_routes
from reconciler.engine.lock import StateDirLock
from reconciler.engine.reconcile import Engine, PassResult
from reconciler.engine.rollouts import RolloutController
from reconciler.engine.settings import Settings
from reconciler.engine.source_factory import make_source
from reconciler.engine.state import SqliteStateStore
from reconciler.engine.status import EngineStatus
from reconciler.engine.telemetry import DaemonMetrics
from reconciler.errors import ReconcilerError
from reconciler.metrics import MetricsService, MetricsStore
from reconciler.model.address import parse_address
from reconciler.sources.backoff import Backoff
from reconciler.sources.revision import Watch
from reconciler.sources.webhook import PushEvent
from reconciler.xds.cache import SnapshotCache
from reconciler.xds.server import start_server

__all__ = ["run_daemon"]

log = structlog.get_logger("reconciler.daemon")


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def run_daemon(settings: Settings, *, ready: Callable[[int, int], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM (or until cancelled). ``ready(xds_port, http_port)`` is called once both listen.

    Raises StateError at once when another daemon holds ``settings.state.dir``.
    """
    lock = StateDirLock(settings.state.dir)
    try:
        await _run_locked(settings, ready=ready)
    finally:
        lock.release()


async def _run_locked(settings: Settings, *, ready: Callable[[int, int], None] | None) -> None:
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
    )
    # Proxies push their per-cluster stats to the xDS port; the controller judges rollout steps on them.
    store = MetricsStore()
    # Built before the restore: a stored rollout of the restored commit is served with its step's weights.
    rollouts = RolloutController(engine=engine, cache=cache, metrics=store, clock=time.time, store=state)
    metrics.watch_rollouts(rollouts)
    if engine.restore():
        log.info("daemon.serving_stored_revision", sha=status.served.sha[:12] if status.served else None)

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
    server = await start_server(cache=cache, address=settings.xds.address, services=[MetricsService(store).add_to])
    app = web.Application()
    app.add_routes(
        status_routes(
            status=status.document, proxies=cache.statuses, registry=metrics.registry, rollouts=rollouts.documents
        )
    )
    app.add_routes(webhook_routes(secret=settings.api.webhook_secret, trigger=trigger))
    app.add_routes(rollout_routes(command=rollouts.command))
    runner = web.AppRunner(app, access_log=None)
    watcher: Watch | None = None
    try:
        await runner.setup()
        site = web.TCPSite(runner, http_host, http_port)
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
        if settings.source.watch:
            watcher = source.watch(lambda: loop.call_soon_threadsafe(wake.set))
        log.info("daemon.started", xds=f"{xds_host}:{server.port}", http=f"{http_host}:{bound_http}", repo=repo_label)
        if ready is not None:
            ready(server.port, bound_http)

        def abort() -> None:
            # A pass blocks a worker thread on git, or on the CPU while loading and translating: end both.
            source.abort()
            engine.abort()

        ticking = asyncio.ensure_future(rollouts.run(period=ROLLOUT_TICK_SECONDS))
        try:
            await _loop(
                engine=engine,
                metrics=metrics,
                wake=wake,
                stop=stop,
                poll_interval=settings.source.poll_interval,
                abort=abort,
            )
        finally:
            ticking.cancel()
            await asyncio.gather(ticking, return_exceptions=True)
            await asyncio.to_thread(rollouts.wait_saved)  # a clean stop keeps the last decision
    finally:
        if watcher is not None:
            watcher.stop()
        await runner.cleanup()
        await server.stop(grace=1.0)
        # close() waits for a poll still running in a worker thread; the loop aborted any such poll.
        await asyncio.to_thread(source.close)
        log.info("daemon.stopped")


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
