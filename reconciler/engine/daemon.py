"""The daemon: wires source, engine, xDS server and HTTP API, and runs the loop.

The loop reconciles on start, then on every trigger (webhook, manual sync, file
save) or poll tick, whichever comes first. Failures back off with jitter up to
the poll interval; a trigger always cuts the wait short. A stop (SIGTERM, Ctrl-C)
during a pass aborts the source's poll instead of waiting for a hung fetch, and stops
loading and translation at their next checkpoint (between files, resources and proxies).

One daemon owns a state directory: an exclusive ``flock`` on ``<state_dir>/lock`` is
held for the daemon's lifetime, so a second one fails fast instead of fighting over
the clone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from reconciler.api.status import TYPE_NAMES, status_routes
from reconciler.api.webhook import webhook_routes
from reconciler.engine.guard import RemovalGuard
from reconciler.engine.reconcile import Engine, PassResult
from reconciler.engine.state import SqliteStateStore
from reconciler.engine.status import EngineStatus
from reconciler.errors import ReconcilerError, StateError, UsageError
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits
from reconciler.sources.backoff import Backoff
from reconciler.sources.git import GitSource, redact_url
from reconciler.sources.local import LocalDirSource
from reconciler.sources.revision import ConfigSource, Watch
from reconciler.sources.webhook import PushEvent
from reconciler.xds.cache import EventKind, SnapshotCache, XdsEvent
from reconciler.xds.server import start_server

__all__ = ["DEFAULT_HTTP_ADDRESS", "DEFAULT_XDS_ADDRESS", "DaemonSettings", "parse_address", "run_daemon"]

log = structlog.get_logger("reconciler.daemon")

DEFAULT_XDS_ADDRESS = "127.0.0.1:18000"
#: Not 8080: gateways (the repo template's among them) listen there, and a proxy on the same
#: host would fail to bind it. 18001 sits next to ADS and clear of Envoy's and Istio's ports.
DEFAULT_HTTP_ADDRESS = "127.0.0.1:18001"


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """Everything ``reconciler run`` and ``reconciler serve`` configure."""

    state_dir: Path
    repo: str | None = None
    repo_dir: Path | None = None
    branch: str = "main"
    path: str = ""
    poll_interval: float = 15.0
    xds_address: str = DEFAULT_XDS_ADDRESS
    http_address: str = DEFAULT_HTTP_ADDRESS
    webhook_secret: bytes | None = None
    watch: bool = False
    namespace: str = "default"
    #: A revision a proxy NACKs is replaced by the last one every proxy ACKed (off: it keeps being served).
    rollback_on_nack: bool = True
    limits: InputLimits = DEFAULT_LIMITS
    removal_guard: RemovalGuard = field(default_factory=RemovalGuard)


def parse_address(text: str, *, what: str, allow_port_zero: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` → ``(host, port)``; UsageError naming ``what`` otherwise.

    The one parser of listen and connect addresses, for the daemon and every command.
    """
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        # A bare IPv6 address is ambiguous: is the last group the port?
        raise UsageError(f"{what} {text!r}: write IPv6 addresses in brackets, like [::1]:18000")
    if not sep or not host or not port_text.isdigit():
        raise UsageError(f"{what} {text!r} is not HOST:PORT (for example 127.0.0.1:18000)")
    port = int(port_text)
    if not (0 if allow_port_zero else 1) <= port <= 65535:
        raise UsageError(f"{what} {text!r}: port {port} is out of range")
    return host, port


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Metrics:
    """Prometheus metrics, named like other controllers' (``*_total``, ``*_seconds``)."""

    def __init__(self, *, cache: SnapshotCache) -> None:
        self.registry = CollectorRegistry()
        self.passes = Counter(
            "reconciler_reconcile_total", "Reconcile passes by result reason.", ["reason"], registry=self.registry
        )
        self.duration = Histogram(
            "reconciler_reconcile_duration_seconds", "Time one reconcile pass took.", registry=self.registry
        )
        self.xds_events = Counter(
            "reconciler_xds_responses_total",
            "xDS responses by type and proxy answer (push, ack, nack).",
            ["type", "event"],
            registry=self.registry,
        )
        proxies = Gauge("reconciler_proxies_connected", "Proxies with an open ADS stream.", registry=self.registry)
        proxies.set_function(lambda: len(cache.statuses()))
        cache.add_listener(self._on_xds_event)

    def _on_xds_event(self, event: XdsEvent) -> None:
        if event.kind in (EventKind.PUSH, EventKind.ACK, EventKind.NACK):
            self.xds_events.labels(TYPE_NAMES.get(event.type_url, event.type_url), event.kind.value).inc()


def _make_source(settings: DaemonSettings) -> tuple[ConfigSource, str, str]:
    """The configured source, plus how status names it and the prefix shown on findings' file paths."""
    prefix = f"{settings.path.strip('/')}/" if settings.path.strip("/") else ""
    if settings.repo is not None:
        source = GitSource(
            url=settings.repo,
            branch=settings.branch,
            path=settings.path,
            state_dir=settings.state_dir,
            limits=settings.limits,
        )
        return source, redact_url(settings.repo), prefix  # status and logs never show a token
    if settings.repo_dir is not None:
        root = settings.repo_dir / settings.path if settings.path else settings.repo_dir
        if not root.is_dir():
            raise UsageError(f"config directory does not exist: {root}")
        return LocalDirSource(root, limits=settings.limits), str(settings.repo_dir), prefix
    raise UsageError("give --repo URL_OR_PATH or --repo-dir DIR")


#: The lock file in the state dir; holds the owner's pid, for the "in use" message.
LOCK_FILE = "lock"

# flock is unsupported on some network filesystems: the daemon runs unguarded there rather than not at all.
_LOCK_UNSUPPORTED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})


class _StateDirLock:
    """An exclusive ``flock`` on ``<state_dir>/lock``, taken at once or not at all.

    The kernel drops it when the process dies, ``kill -9`` included, so a crash never
    leaves a stale lock behind. The descriptor is not inherited by git subprocesses.
    """

    def __init__(self, state_dir: Path) -> None:
        path = state_dir / LOCK_FILE
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StateError(f"cannot lock state dir {state_dir}: {error}") from error
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(self._fd)
            self.release()
            raise StateError(
                f"state dir {state_dir} is in use by another reconciler"
                f"{f' (pid {owner})' if owner else ''}; stop it or give another --state-dir"
            ) from None
        except OSError as error:
            if error.errno not in _LOCK_UNSUPPORTED:
                self.release()
                raise StateError(f"cannot lock state dir {state_dir}: {error}") from error
            log.warning("daemon.state_dir_unlocked", state_dir=str(state_dir), error=str(error))
        with contextlib.suppress(OSError):  # the pid only improves the message
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    # Empty while the owner is between taking the lock and writing its pid.
    return int(text) if text.isdigit() else None


async def run_daemon(settings: DaemonSettings, *, ready: Callable[[int, int], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM (or until cancelled). ``ready(xds_port, http_port)`` is called once both listen.

    Raises StateError at once when another daemon holds ``settings.state_dir``.
    """
    lock = _StateDirLock(settings.state_dir)
    try:
        await _run_locked(settings, ready=ready)
    finally:
        lock.release()


async def _run_locked(settings: DaemonSettings, *, ready: Callable[[int, int], None] | None) -> None:
    source, repo_label, prefix = _make_source(settings)
    cache = SnapshotCache()
    metrics = _Metrics(cache=cache)
    status = EngineStatus(repo=repo_label, branch=settings.branch, path=settings.path)
    engine = Engine(
        source=source,
        cache=cache,
        store=SqliteStateStore(settings.state_dir),
        status=status,
        clock=_utc_now,
        default_namespace=settings.namespace,
        file_prefix=prefix,
        rollback_on_nack=settings.rollback_on_nack,
        limits=settings.limits,
        removal_guard=settings.removal_guard,
    )
    if engine.restore():
        log.info("daemon.serving_stored_revision", sha=status.served.sha[:12] if status.served else None)

    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    stop = asyncio.Event()

    def trigger(event: PushEvent | None) -> bool:
        if event is not None and event.ref not in (f"refs/heads/{settings.branch}", settings.branch):
            log.info("daemon.push_ignored", ref=event.ref, branch=settings.branch)
            return False
        log.info("daemon.triggered", by="webhook" if event else "api")
        wake.set()
        return True

    # Port 0 asks the kernel for a free port (tests, benchmarks); the bound ports are reported to ``ready``.
    xds_host, _ = parse_address(settings.xds_address, what="--xds-address", allow_port_zero=True)
    http_host, http_port = parse_address(settings.http_address, what="--http-address", allow_port_zero=True)
    server = await start_server(cache=cache, address=settings.xds_address)
    app = web.Application()
    app.add_routes(status_routes(status=status.to_json, proxies=cache.statuses, registry=metrics.registry))
    app.add_routes(webhook_routes(secret=settings.webhook_secret, trigger=trigger))
    runner = web.AppRunner(app, access_log=None)
    watcher: Watch | None = None
    try:
        await runner.setup()
        site = web.TCPSite(runner, http_host, http_port)
        try:
            await site.start()
        except OSError as error:
            raise ReconcilerError(f"cannot serve HTTP on {settings.http_address}: {error}") from error
        bound_http = runner.addresses[0][1] if runner.addresses else http_port
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Only the main thread can own signals; run in another thread (tests, benchmarks),
            # the daemon stops when its task is cancelled instead.
            with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        if settings.watch:
            watcher = source.watch(lambda: loop.call_soon_threadsafe(wake.set))
        log.info("daemon.started", xds=f"{xds_host}:{server.port}", http=f"{http_host}:{bound_http}", repo=repo_label)
        if ready is not None:
            ready(server.port, bound_http)

        def abort() -> None:
            # A pass blocks a worker thread on git, or on the CPU while loading and translating: end both.
            source.abort()
            engine.abort()

        await _loop(
            engine=engine,
            metrics=metrics,
            wake=wake,
            stop=stop,
            poll_interval=settings.poll_interval,
            abort=abort,
        )
    finally:
        if watcher is not None:
            watcher.stop()
        await runner.cleanup()
        await server.stop(grace=1.0)
        # close() waits for a poll still running in a worker thread; the loop aborted any such poll.
        await asyncio.to_thread(source.close)
        log.info("daemon.stopped")


#: How long a stopping daemon waits for an aborted pass to end (Kubernetes' grace period is 30 s).
ABORT_GRACE_SECONDS = 5.0
# abort() is a no-op when no poll runs yet; repeated so a poll that starts just after the stop is cut short too.
_ABORT_REPEAT_SECONDS = 0.25


async def _loop(
    *,
    engine: Engine,
    metrics: _Metrics,
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
