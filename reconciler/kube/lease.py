"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection`` does it.

Several replicas of the daemon share one Lease; the one named in ``spec.holderIdentity`` leads.

* **Acquire** (:meth:`LeaderElector.acquire`): every ``retry_period`` read the Lease. Missing, it is
  created with this replica as holder. Held by another, it is taken only once it has expired:
  ``leaseDurationSeconds`` after this replica last *saw it change* (its local clock, never the
  holder's ``renewTime``, so clocks that disagree cannot make two leaders). An empty holder (a
  leader that released it) is free at once.
* **Renew** (:meth:`LeaderElector.hold`): every ``retry_period`` the leader writes a fresh
  ``renewTime``. Every write carries the ``resourceVersion`` it read (optimistic concurrency: of
  two replicas racing for an expired Lease exactly one write succeeds, the other gets 409). A
  leader that cannot renew for ``renew_deadline`` (shorter than the lease duration, so it stops
  before anyone may take over) or that finds another holder steps down: :meth:`hold` returns.
* **Release** (:meth:`LeaderElector.release`, on a clean stop): the holder is cleared and the
  duration set to 1 s, so a follower takes over at its next retry instead of after the duration.

``leaseTransitions`` counts changes of holder. The Lease's writes go through
:class:`~reconciler.kube.client.KubeClient` (``create``/``replace`` beside its reads); every verb
used against the API server is listed in :data:`API_CALLS`, which the RBAC in ``deploy/`` is
checked against.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from reconciler.errors import KubeError
from reconciler.model.text import MESSAGE_CHARS, excerpt

__all__ = [
    "API_CALLS",
    "IN_CLUSTER_NAMESPACE_FILE",
    "ApiCall",
    "LeaderElector",
    "LeaseRecord",
    "LeaseTiming",
    "ObjectApi",
    "default_identity",
    "default_namespace",
    "lease_path",
]

log = structlog.get_logger("reconciler.leader")

#: Where a pod's service account names its namespace (the Lease's default namespace in-cluster).
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: client-go's ``JitterFactor``: each wait between attempts is ``retry_period`` times 1 to 1.2.
_JITTER = 1.2


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One kind of request the daemon makes: RBAC must grant exactly these (``tests/deploy``)."""

    group: str
    resource: str
    verbs: frozenset[str]
    why: str


#: Every request this package and the engine's cluster state make, by resource: the RBAC in deploy/ grants these.
API_CALLS = (
    ApiCall("", "services", frozenset({"list", "watch"}), "Kubernetes Services as mesh hosts (endpoints.py)"),
    ApiCall("", "pods", frozenset({"list", "watch"}), "Pod labels for DestinationRule subsets (endpoints.py)"),
    ApiCall("discovery.k8s.io", "endpointslices", frozenset({"list", "watch"}), "endpoints → EDS (endpoints.py)"),
    ApiCall(
        "coordination.k8s.io",
        "leases",
        frozenset({"get", "create", "update"}),
        "leader election: read, create once, renew/take/release (lease.py)",
    ),
    ApiCall(
        "",
        "configmaps",
        frozenset({"get", "create", "update"}),
        "rollout state shared by the replicas (engine/cluster_state.py)",
    ),
)


class ObjectApi(Protocol):
    """Read, create and replace single objects, as JSON. Every method raises KubeError (``status``: HTTP status)."""

    async def get(self, path: str) -> Mapping[str, Any]: ...

    async def create(self, collection: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """POST ``body`` to ``collection``; the object created (409 when it exists)."""
        ...

    async def replace(self, path: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """PUT ``body`` (with the ``resourceVersion`` it was read at) to ``path``; 409 when it changed since."""
        ...


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """client-go's three durations (seconds); ``renew_deadline`` < ``lease_duration`` so a leader stops first."""

    lease_duration: float
    renew_deadline: float
    retry_period: float

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration, got "
                f"{self.retry_period:g}s, {self.renew_deadline:g}s, {self.lease_duration:g}s"
            )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A Lease's spec, as this module reads and writes it."""

    holder: str
    duration: float
    acquired: datetime | None
    renewed: datetime | None
    transitions: int

    @classmethod
    def of(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec")
        spec = spec if isinstance(spec, Mapping) else {}
        holder = spec.get("holderIdentity")
        duration = spec.get("leaseDurationSeconds")
        transitions = spec.get("leaseTransitions")
        return cls(
            holder=holder if isinstance(holder, str) else "",
            duration=float(duration) if isinstance(duration, int) and duration > 0 else 0.0,
            acquired=_micro_time(spec.get("acquireTime")),
            renewed=_micro_time(spec.get("renewTime")),
            transitions=transitions if isinstance(transitions, int) and transitions >= 0 else 0,
        )

    def spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "acquireTime": _format_micro_time(self.acquired),
            "renewTime": _format_micro_time(self.renewed),
            "leaseTransitions": self.transitions,
        }


def _micro_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _format_micro_time(value: datetime | None) -> str | None:
    # metav1.MicroTime: RFC 3339 with microseconds, in UTC.
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_path(namespace: str, name: str = "") -> str:
    """The Lease collection of ``namespace``, or one Lease in it."""
    collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return f"{collection}/{name}" if name else collection


def default_identity(environ: Mapping[str, str] = os.environ) -> str:
    """``$POD_NAME`` (set from the downward API in deploy/), else ``hostname_pid``: unique per process."""
    return environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


def default_namespace(namespace_file: Path = IN_CLUSTER_NAMESPACE_FILE) -> str:
    """In a pod: its own namespace (the service account's); elsewhere ``default``."""
    try:
        return namespace_file.read_text().strip() or "default"
    except OSError:
        return "default"


class LeaderElector:
    """One replica's side of the Lease ``namespace/name``: :meth:`acquire`, then :meth:`hold`, then :meth:`release`."""

    def __init__(
        self,
        *,
        api: ObjectApi,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self.timing = timing
        self._now = now
        self._monotonic = monotonic
        # The record last read or written, and when (this replica's monotonic clock) it last changed.
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._version = ""

    @property
    def lease(self) -> str:
        return f"{self._namespace}/{self._name}"

    @property
    def is_leader(self) -> bool:
        """This replica holds the Lease, by what it last read or wrote (a stale answer once it cannot renew)."""
        return self._observed is not None and self._observed.holder == self.identity

    @property
    def holder(self) -> str:
        """The holder last seen ("" when none or not read yet)."""
        return self._observed.holder if self._observed is not None else ""

    @property
    def transitions(self) -> int:
        return self._observed.transitions if self._observed is not None else 0

    async def acquire(self) -> None:
        """Return once this replica holds the Lease (retrying every ``retry_period``, with jitter)."""
        log.info("leader.candidate", lease=self.lease, identity=self.identity)
        while not await self._attempt(timeout=self.timing.renew_deadline):
            await asyncio.sleep(self.timing.retry_period * random.uniform(1.0, _JITTER))
        log.info("leader.elected", lease=self.lease, identity=self.identity, transitions=self.transitions)

    async def hold(self) -> None:
        """Renew every ``retry_period`` while leading; return once leadership is lost (logged with why)."""
        renewed = self._monotonic()
        while True:
            await asyncio.sleep(self.timing.retry_period)
            left = renewed + self.timing.renew_deadline - self._monotonic()
            if left > 0 and await self._attempt(timeout=left):
                renewed = self._monotonic()
                continue
            if self._observed is not None and self._observed.holder not in ("", self.identity):
                why = f"the Lease is held by {excerpt(self._observed.holder, MESSAGE_CHARS)}"
                break
            if self._monotonic() - renewed >= self.timing.renew_deadline:
                why = f"not renewed for {self.timing.renew_deadline:g}s"
                break
        log.error("leader.lost", lease=self.lease, identity=self.identity, reason=why)
        self._observed = None

    async def release(self) -> bool:
        """Give the Lease up (a clean stop): the next candidate takes it at once. Whether it was released."""
        if not self.is_leader or self._observed is None:
            return False
        now = self._now()
        record = LeaseRecord(holder="", duration=1, acquired=now, renewed=now, transitions=self._observed.transitions)
        try:
            await asyncio.wait_for(self._write(record), self.timing.renew_deadline)
        except (KubeError, TimeoutError) as error:
            log.warning("leader.release_failed", lease=self.lease, error=str(error))
            return False
        log.info("leader.released", lease=self.lease, identity=self.identity)
        self._observed = None
        return True

    async def _attempt(self, *, timeout: float) -> bool:
        """client-go's ``tryAcquireOrRenew``, bounded by ``timeout``; whether this replica holds the Lease now."""
        try:
            return await asyncio.wait_for(self._try_acquire_or_renew(), timeout)
        except (KubeError, TimeoutError) as error:
            log.warning("leader.attempt_failed", lease=self.lease, error=str(error) or "timed out")
            return False

    async def _try_acquire_or_renew(self) -> bool:
        now = self._now()
        try:
            lease = await self._api.get(lease_path(self._namespace, self._name))
        except KubeError as error:
            if error.status != 404:
                raise
            return await self._create(now)
        current = LeaseRecord.of(lease)
        metadata = lease.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
        self._version = version if isinstance(version, str) else ""
        if current != self._observed:
            self._observed, self._observed_at = current, self._monotonic()
        leading = current.holder == self.identity
        expired = self._monotonic() >= self._observed_at + current.duration
        if current.holder and not leading and not expired:
            return False
        record = LeaseRecord(
            holder=self.identity,
            duration=self.timing.lease_duration,
            acquired=current.acquired if leading else now,
            renewed=now,
            transitions=current.transitions if leading else current.transitions + 1,
        )
        try:
            await self._write(record)
        except KubeError as error:
            if error.status != 409:
                raise
            return False  # another replica wrote first: it leads
        return True

    async def _create(self, now: datetime) -> bool:
        record = LeaseRecord(
            holder=self.identity, duration=self.timing.lease_duration, acquired=now, renewed=now, transitions=0
        )
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": record.spec(),
        }
        try:
            created = await self._api.create(lease_path(self._namespace), body)
        except KubeError as error:
            if error.status != 409:
                raise
            return False  # created by another replica a moment ago
        self._remember(created, record)
        return True

    async def _write(self, record: LeaseRecord) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self._name, "namespace": self._namespace, "resourceVersion": self._version},
            "spec": record.spec(),
        }
        written = await self._api.replace(lease_path(self._namespace, self._name), body)
        self._remember(written, record)

    def _remember(self, written: Mapping[str, Any], record: LeaseRecord) -> None:
        metadata = written.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
        self._version = version if isinstance(version, str) else ""
        self._observed, self._observed_at = LeaseRecord.of(written) if written else record, self._monotonic()
