"""CRD mode: the served config applied to the cluster as Istio objects, pruned, and kept there.

:class:`IstioApplier` takes each served config (:meth:`~IstioApplier.submit`, latest wins) and,
in its own task, writes it with server-side apply under the field manager ``reconciler``, with
``force`` (git is the authority: a field another manager took is taken back, as Flux and Argo CD
do), in the make-before-break order of :func:`~reconciler.kube.istio.plan_changes`. A commit and a
rollout step go the same way, so git and the canary are one field manager. Each submission carries
the engine's generation; :attr:`~IstioApplier.applied_generation` is the latest one whose every
write the API server accepted (what a rollout step waits for in CRD mode: the sink's ACK).

**Inventory.** What was applied is listed in a ConfigMap (``--inventory NAMESPACE/NAME``), like
Flux's inventory, so an object git removes is deleted, and only objects this daemon applied are.
A ConfigMap rather than the SQLite state store: the inventory describes cluster objects, so it
lives with them; it survives the loss of the daemon's volume, and every replica of a
leader-elected daemon reads the same one. It is written before the first apply of objects it does
not list yet (a crash mid-change still knows to prune them) and after pruning.

**Drift.** An informer per kind watches the objects carrying the ownership label. After every
change, each applied object is compared with what the cluster holds (:func:`~reconciler.kube.istio.drift_of`,
normalized): a field changed by another manager (``kubectl edit``) or an object deleted outside
git is drift, reported by :meth:`~IstioApplier.report` and :meth:`~IstioApplier.drifted`, and,
with self-heal, overwritten once per distinct drift: a JSON merge patch puts the spec back (it
removes fields git does not set, which an apply cannot when another manager owns them), then
git's object is applied again; ``kube.drift_healed`` logs what that overwrote. A write of our own
is never mistaken for drift: an object is compared only once its informer has seen the
resourceVersion our write returned.

Failures (a CRD not installed, a 422 from the API server) stop the change where it failed (a
VirtualService is not applied after its DestinationRule failed), are reported, and are retried
with backoff; pruning waits for every apply to succeed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from reconciler.errors import KubeError
from reconciler.kube.client import ApplyApi, KubeApi, preferred_version
from reconciler.kube.informer import Informer, RetryDelays
from reconciler.kube.istio import (
    FIELD_MANAGER,
    PLURALS,
    Action,
    DesiredObject,
    ObjectDrift,
    ObjectRef,
    Step,
    drift_of,
    inventory_configmap,
    kept_object,
    parse_inventory,
    plan_changes,
)
from reconciler.kube.lease import ApiCall
from reconciler.kube.objects import object_key
from reconciler.model.config import API_GROUP, API_VERSIONS, Kind

__all__ = ["CRD_MODE_CALLS", "ClusterApi", "ClusterReport", "IstioApplier", "managed_objects", "spec_patch"]

log = structlog.get_logger("reconciler.kube")


#: Every request CRD mode adds to :data:`~reconciler.kube.lease.API_CALLS` (``deploy/crd-mode`` grants these).
CRD_MODE_CALLS = (
    *(
        ApiCall(
            API_GROUP,
            plural,
            frozenset({"list", "watch", "create", "patch", "delete"}),
            "informers of the managed objects, in every namespace; server-side apply (a patch, and a create when the "
            "object is new); the merge patch that heals drift; pruning",
        )
        for plural in PLURALS.values()
    ),
    ApiCall(
        "",
        "configmaps",
        frozenset({"get", "create", "patch"}),
        "the inventory: read at start, server-side applied (created the first time)",
    ),
)


class ClusterApi(KubeApi, ApplyApi, Protocol):
    """Reads and writes: what the applier needs of :class:`~reconciler.kube.client.KubeClient`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterReport:
    """The cluster's state for status: ``Pending`` (applying, or waiting for the watch), ``InSync``,
    ``Drifted``, ``Healed`` (drifted, re-applied, in sync), ``Failed`` (a write failed; retried)."""

    state: str
    message: str
    checked_at: datetime | None
    #: At most ``max_listed`` of them; ``total`` counts all.
    drift: tuple[ObjectDrift, ...] = ()
    total: int = 0
    healed_at: datetime | None = None


class IstioApplier:
    """Applies submitted configs to the cluster, prunes, watches and heals; :meth:`run` until cancelled."""

    def __init__(
        self,
        *,
        api: ClusterApi,
        inventory: tuple[str, str],
        backoff: Callable[[], RetryDelays],
        clock: Callable[[], datetime],
        self_heal: bool = True,
        debounce: float = 0.1,
        max_listed: int = 20,
    ) -> None:
        self._api = api
        self._inventory_at = inventory
        self._new_backoff = backoff
        self._backoff = backoff()
        self._clock = clock
        self._self_heal = self_heal
        self._debounce = debounce
        self._max_listed = max_listed
        self._dirty = asyncio.Event()
        self._pending: tuple[Callable[[], Mapping[ObjectRef, DesiredObject]], str, int] | None = None
        self._applied_generation = 0
        self._listeners: list[Callable[[], None]] = []
        self._applied: dict[ObjectRef, DesiredObject] | None = None
        self._applied_label = ""
        self._inventory: dict[ObjectRef, str] = {}
        self._informers: dict[Kind, Informer[Mapping[str, Any]]] = {}
        # The resourceVersion each of our writes returned: an object is compared once its informer is there.
        self._written: dict[ObjectRef, str] = {}
        self._healed_for = ""  # fingerprint of the drift a heal was made for
        self._healed_at: datetime | None = None  # the last heal since the last apply
        self._logged = ""  # fingerprint of the drift last logged
        self._report = ClusterReport(state="Pending", message="waiting for a config to apply", checked_at=None)
        self._drift: tuple[ObjectDrift, ...] = ()
        self._version = ""
        #: Writes in the order they were made (``apply``/``delete``, ``Kind ns/name``): for logs and tests.
        self.writes: list[tuple[str, str]] = []

    def submit(self, desired: Callable[[], Mapping[ObjectRef, DesiredObject]], *, label: str, generation: int) -> None:
        """Apply what ``desired()`` makes (every Istio object of a served config) next; a later submit replaces it.

        ``desired`` runs in a worker thread (it parses the revision's files) and may raise KubeError.
        ``generation`` (the engine's, increasing) becomes :attr:`applied_generation` once every write succeeded.
        """
        self._pending = (desired, label, generation)
        self._dirty.set()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the loop) each time :attr:`applied_generation` moves on."""
        self._listeners.append(listener)

    @property
    def applied_generation(self) -> int:
        """The generation of the latest submission the API server accepted in full (0: none yet)."""
        return self._applied_generation

    def report(self) -> ClusterReport:
        return self._report

    def drifted(self) -> dict[ObjectRef, bool]:
        """Per applied object: does the cluster hold it other than git says (its latest check)."""
        drifted = {item.ref for item in self._drift}
        return {ref: ref in drifted for ref in sorted(self._applied or {})}

    @property
    def api_version(self) -> str:
        """The ``networking.istio.io`` version the informers watch (any serves the same objects)."""
        return self._version

    async def run(self) -> None:
        """Find the Istio API, read the inventory, watch the managed objects, then apply and check until cancelled."""
        while True:
            try:
                await self._start()
                break
            except KubeError as error:
                self._fail(f"cannot start: {error}")
                await asyncio.sleep(self._backoff.next_delay())
        self._backoff.reset()
        tasks = [asyncio.ensure_future(informer.run()) for informer in self._informers.values()]
        try:
            await asyncio.gather(*(informer.synced.wait() for informer in self._informers.values()))
            while True:
                await self._dirty.wait()
                await asyncio.sleep(self._debounce)
                self._dirty.clear()
                await self._step()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _start(self) -> None:
        self._version = await _istio_version(self._api)
        namespace, name = self._inventory_at
        self._inventory = await _read_inventory(self._api, self._inventory_at)
        log.info("kube.crd_mode", api=self._version, inventory=f"{namespace}/{name}", listed=len(self._inventory))
        self._informers = {
            kind: Informer(
                api=self._api,
                path=f"/apis/{self._version}/{plural}",
                parse=kept_object,
                on_change=self._dirty.set,
                backoff=self._new_backoff(),
            )
            for kind, plural in PLURALS.items()
        }

    async def _step(self) -> None:
        pending = self._pending
        try:
            if pending is not None:
                build, label, generation = pending
                await self._apply(dict(await asyncio.to_thread(build)), label)
                self._applied_generation = generation
                for listener in self._listeners:
                    listener()
                if self._pending is pending:
                    self._pending = None
            if self._pending is None:
                await self._check()
        except KubeError as error:
            self._fail(str(error))
            delay = self._backoff.next_delay()
            log.warning("kube.apply_failed", error=str(error), retry_in=round(delay, 2))
            await asyncio.sleep(delay)
            self._dirty.set()
        else:
            self._backoff.reset()

    async def _apply(self, desired: dict[ObjectRef, DesiredObject], label: str) -> None:
        self._report = ClusterReport(
            state="Pending", message=f"applying {label}: {len(desired)} object(s)", checked_at=self._clock()
        )
        live = {ref: item for ref in desired if (item := self._live(ref)) is not None}
        steps = plan_changes(desired, live=live, inventory=self._inventory)
        previous = self._applied or {}
        listed = {**self._inventory, **{ref: wanted.api_version for ref, wanted in desired.items()}}
        if listed != self._inventory:
            await self._write_inventory(listed)
        changed = 0
        for step in steps:
            if step.action is Action.APPLY and not step.interim and self._unchanged(step, previous):
                continue
            await self._write(step)
            changed += 1
        await self._write_inventory({ref: wanted.api_version for ref, wanted in desired.items()})
        self._applied, self._applied_label = desired, label
        self._healed_for, self._healed_at = "", None
        log.info("kube.applied", label=label, objects=len(desired), writes=changed)

    def _unchanged(self, step: Step, previous: Mapping[ObjectRef, DesiredObject]) -> bool:
        """Applied before with this body and still there: nothing to write (drift checks catch the rest)."""
        before = previous.get(step.ref)
        return before is not None and before.body == step.body and self._live(step.ref) is not None

    async def _write(self, step: Step) -> None:
        self.writes.append((step.action.value, step.ref.describe()))
        if step.action is Action.DELETE:
            await self._api.delete(step.path)
            self._written.pop(step.ref, None)
            log.info("kube.pruned", object=step.ref.describe())
            return
        assert step.body is not None
        answer = await self._api.apply(step.path, step.body, field_manager=FIELD_MANAGER, force=True)
        self._remember(step.ref, answer)

    def _remember(self, ref: ObjectRef, answer: Mapping[str, Any]) -> None:
        metadata = answer.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
        if isinstance(version, str):
            self._written[ref] = version

    async def _write_inventory(self, entries: dict[ObjectRef, str]) -> None:
        if entries == self._inventory:
            return
        namespace, name = self._inventory_at
        body = inventory_configmap(namespace=namespace, name=name, entries=entries)
        await self._api.apply(
            f"/api/v1/namespaces/{namespace}/configmaps/{name}", body, field_manager=FIELD_MANAGER, force=True
        )
        self._inventory = entries

    def _live(self, ref: ObjectRef) -> Mapping[str, Any] | None:
        informer = self._informers.get(ref.kind)
        return informer.items.get((ref.namespace, ref.name)) if informer is not None else None

    def _seen_own_write(self, ref: ObjectRef) -> bool:
        written = self._written.get(ref)
        informer = self._informers[ref.kind]
        if written is None or not informer.version:
            return True
        try:
            # Versions are opaque by contract, but every API server hands out etcd's revisions: integers in order.
            return int(informer.version) >= int(written)
        except ValueError:
            return True

    async def _check(self) -> None:
        applied = self._applied
        if applied is None:
            return
        waiting = [ref for ref in applied if not self._seen_own_write(ref)]
        drift = tuple(
            found
            for ref, wanted in sorted(applied.items())
            if ref not in waiting and (found := drift_of(wanted, self._live(ref))) is not None
        )
        if drift != self._drift and not drift and self._drift:
            log.info("kube.drift_ended", healed=self._healed_at is not None)
        self._drift = drift
        now = self._clock()
        if not drift:
            state = "Healed" if self._healed_at is not None else "InSync"
            message = f"the cluster holds {self._applied_label} as applied: {len(applied)} object(s)"
            if waiting:
                state, message = "Pending", f"{self._applied_label} applied; the watch has not seen {len(waiting)} yet"
            self._report = ClusterReport(state=state, message=message, checked_at=now, healed_at=self._healed_at)
            return
        fingerprint = _fingerprint(drift)
        described = [item.describe() for item in drift[: self._max_listed]]
        message = f"{len(drift)} object(s) differ from {self._applied_label}"
        if fingerprint != self._logged:
            log.warning("kube.drift_detected", total=len(drift), objects=described)
            self._logged = fingerprint
        if fingerprint == self._healed_for:
            message += "; it persists after a re-apply"
        elif self._self_heal:
            await self._heal(drift, applied)
            self._healed_for, self._healed_at = fingerprint, self._clock()
            message += "; re-applied git's"
            log.warning("kube.drift_healed", overwritten=described, total=len(drift))
        self._report = ClusterReport(
            state="Drifted",
            message=message,
            checked_at=now,
            drift=drift[: self._max_listed],
            total=len(drift),
            healed_at=self._healed_at,
        )

    async def _heal(self, drift: tuple[ObjectDrift, ...], applied: Mapping[ObjectRef, DesiredObject]) -> None:
        for item in drift:
            wanted = applied[item.ref]
            live = self._live(item.ref)
            if live is not None:
                # Fields another manager owns survive an apply that leaves them out: a merge patch sets the spec whole.
                patch = {"spec": spec_patch(wanted.body.get("spec") or {}, live.get("spec") or {})}
                self.writes.append(("patch", item.ref.describe()))
                await self._api.merge_patch(wanted.path, patch, field_manager=FIELD_MANAGER)
            await self._write(Step(Action.APPLY, item.ref, wanted.path, body=wanted.body))

    def _fail(self, message: str) -> None:
        self._report = ClusterReport(
            state="Failed",
            message=message,
            checked_at=self._clock(),
            drift=self._report.drift,
            total=self._report.total,
            healed_at=self._report.healed_at,
        )


async def _istio_version(api: KubeApi) -> str:
    """``networking.istio.io/VERSION``, the newest the cluster serves; KubeError when Istio's CRDs are not installed."""
    try:
        version = preferred_version(await api.get(f"/apis/{API_GROUP}"), wanted=API_VERSIONS)
    except KubeError as error:
        if error.status != 404:
            raise
        version = None
    if version is None:
        raise KubeError(f"the cluster serves no {API_GROUP} API: install Istio's CRDs")
    return f"{API_GROUP}/{version}"


async def managed_objects(api: KubeApi, *, inventory: tuple[str, str]) -> list[Mapping[str, Any]]:
    """The Istio objects the inventory ConfigMap lists that the cluster holds (what ``reconciler diff --kubeconfig``
    compares): objects carrying the ownership label but applied by another daemon (another inventory) are left out.
    """
    version = await _istio_version(api)
    listed = await _read_inventory(api, inventory)
    found: list[Mapping[str, Any]] = []
    for kind, plural in PLURALS.items():
        items, _ = await api.list(f"/apis/{version}/{plural}")
        for item in items:
            kept = kept_object(item)
            key = object_key(kept)
            if kept is not None and key is not None and ObjectRef(kind, *key) in listed:
                found.append(kept)
    return found


async def _read_inventory(api: KubeApi, inventory: tuple[str, str]) -> dict[ObjectRef, str]:
    namespace, name = inventory
    try:
        return parse_inventory(await api.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}"))
    except KubeError as error:
        if error.status != 404:
            raise
        return {}


def spec_patch(wanted: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch turning ``live`` into ``wanted``: maps recursed, lists and values replaced, extras null."""
    patch: dict[str, Any] = {}
    for key in live.keys() - wanted.keys():
        patch[key] = None
    for key, value in wanted.items():
        found = live.get(key)
        if isinstance(value, Mapping) and isinstance(found, Mapping):
            inner = spec_patch(value, found)
            if inner:
                patch[key] = inner
        elif found != value:
            patch[key] = value
    return patch


def _fingerprint(drift: tuple[ObjectDrift, ...]) -> str:
    text = "\n".join(item.describe() for item in drift)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
