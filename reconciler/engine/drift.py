"""Drift: does each connected proxy run what it ACKed from us? Checked periodically, reported, healed by a re-push.

Every ``DriftSettings.interval`` seconds, for every connected proxy:

1. **ACKs**: has it ACKed the snapshot it is served (every type)? A push not answered yet is
   ``Pending``, not drift; one still unanswered after two intervals is drift (``unacked``).
2. **Live**: where its node metadata announces an admin address (``reconciler bootstrap``
   writes it) that answers as this node, its ``/config_dump`` is read (bounded in time and
   size, :mod:`reconciler.xds.admin`) and compared with the served snapshot
   (:func:`reconciler.diff.live.compare_live`, pure): a resource missing, held statically by
   its bootstrap, changed, or one we do not serve (a second control plane) is drift.

Compared with what the daemon *serves*, never with git: a rollout step or a rollback serves
other weights than git on purpose, and a proxy running them is in sync (status shows that
intended difference through the served origin, not as drift).

Drift is logged (``drift.detected`` with what differs), shown in the status document and as
``reconciler_drift_detected{node_id}`` on ``/metrics``. With self-heal (the default), the
proxy's resources are pushed again once per distinct drift (``drift.repushed`` lists what
that overwrites); Envoy replaces what differs, and the next check says ``Healed`` or, for
what a push cannot replace (a static resource of its bootstrap), that it persists and why.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from reconciler.api.document import DriftDocument, DriftItem
from reconciler.diff.live import DriftKind, ResourceDrift, compare_live, parse_config_dump
from reconciler.engine.settings import DriftSettings
from reconciler.errors import XdsError
from reconciler.translate.snapshot import PUSH_ORDER, SHORT_NAMES, Snapshot
from reconciler.xds.cache import ProxyStatus, SnapshotCache, SyncState

__all__ = ["DriftMonitor", "FetchDump", "ProxyInspection"]

log = structlog.get_logger("reconciler.drift")

#: Reads a proxy's ``/config_dump`` at an admin address (``HOST:PORT``); raises XdsError when it cannot.
FetchDump = Callable[[str], Awaitable[Any]]

#: Proxies checked at once: each check may wait seconds for an admin API.
_CONCURRENT_CHECKS = 8

_STATIC_HINT = (
    "Envoy keeps a static resource of its bootstrap over a served one of the same name, and a push cannot"
    " replace it: restart the proxy with a bootstrap from `reconciler bootstrap`"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyInspection:
    """Served, ACKed and live for one proxy (``reconciler diff --server URL --proxy NODE``)."""

    node_id: str
    #: Per type short name: the version served, the version ACKed, how many resources live (None: not read).
    versions: dict[str, tuple[str, str | None, int | None]]
    live: str
    drift: tuple[ResourceDrift, ...]

    def to_json(self, *, max_listed: int) -> dict[str, Any]:
        return {
            "nodeId": self.node_id,
            "types": {
                short: {"served": served, "acked": acked, "live": live}
                for short, (served, acked, live) in self.versions.items()
            },
            "live": self.live,
            "drift": [item.to_json() for item in self.drift[:max_listed]],
            "total": len(self.drift),
        }


@dataclass(slots=True)
class _Seen:
    """What the previous checks of one proxy found."""

    unacked_since: tuple[str, int] | None = None  # (served snapshot version, checks it has been unacked for)
    fingerprint: str = ""
    repushed: str = ""  # the fingerprint a re-push was made for
    repushed_at: datetime | None = None
    drifted: bool = False


class DriftMonitor:
    """Checks every connected proxy of ``cache``; ``documents()`` and ``drifted()`` report the latest results."""

    def __init__(
        self,
        *,
        cache: SnapshotCache,
        settings: DriftSettings,
        fetch: FetchDump,
        clock: Callable[[], datetime],
    ) -> None:
        self._cache = cache
        self._settings = settings
        self._fetch = fetch
        self._clock = clock
        self._reports: dict[str, DriftDocument] = {}
        self._seen: dict[str, _Seen] = {}

    def documents(self) -> tuple[DriftDocument, ...]:
        """The latest check of each proxy still connected, by node id."""
        connected = {status.node_id for status in self._cache.statuses()}
        return tuple(self._reports[node] for node in sorted(self._reports) if node in connected)

    def drifted(self) -> dict[str, bool]:
        """Per connected proxy checked at least once: is it drifted now (``reconciler_drift_detected``)."""
        return {document.node_id: document.drifted for document in self.documents()}

    async def run(self) -> None:
        """Check every proxy, then again every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await self.check_all()
            except Exception:
                # A bug in one round must not end drift checks for the daemon's lifetime.
                log.exception("drift.check_failed")
            await asyncio.sleep(self._settings.interval)

    async def check_all(self) -> None:
        """One round: every connected proxy, a few at a time; forget the ones gone."""
        nodes = [status.node_id for status in self._cache.statuses()]
        slots = asyncio.Semaphore(_CONCURRENT_CHECKS)

        async def one(node_id: str) -> None:
            async with slots:
                await self.check(node_id)

        await asyncio.gather(*(one(node) for node in nodes))
        for gone in set(self._seen) - set(nodes):
            self._seen.pop(gone, None)
            self._reports.pop(gone, None)

    async def check(self, node_id: str) -> DriftDocument | None:
        """Check one proxy now; its document (None when it is not connected)."""
        served = self._cache.served(node_id)
        status = self._cache.status(node_id)
        if served is None or status is None:
            return None
        proxy, snapshot = served
        seen = self._seen.setdefault(node_id, _Seen())
        now = self._clock()
        base = DriftDocument(node_id=node_id, state="Unchecked", message="", live="", checked_at=now)
        acked = snapshot is not None and status.acked_snapshot_version == snapshot.version
        if snapshot is None:
            document = replace(base, message="nothing is served to this proxy yet", live="not read")
        elif acked or _answered(status):
            # Every push answered, yet not ACKed in full: it never asked for some resource (say, the endpoints of a
            # cluster its bootstrap holds statically). Its config dump tells; without one, its ACKs judge.
            document = await self._live(base, admin=proxy.admin_address, snapshot=snapshot)
            if document.drifted or (acked and document.state == "InSync"):
                seen.unacked_since = None
            else:
                document = self._unacked(base, status=status, snapshot=snapshot, seen=seen)
        else:
            document = self._unacked(base, status=status, snapshot=snapshot, seen=seen)
        document = self._conclude(node_id, document, seen=seen)
        self._reports[node_id] = document
        return document

    async def inspect(self, node_id: str) -> ProxyInspection | None:
        """Served, ACKed and live versions and the live comparison of one proxy, read now (None: not connected)."""
        served = self._cache.served(node_id)
        status = self._cache.status(node_id)
        if served is None or status is None or served[1] is None:
            return None
        proxy, snapshot = served[0], served[1]
        live_state = "not read: no admin address announced"
        drift: tuple[ResourceDrift, ...] = ()
        counts: dict[str, int] = {}
        if proxy.admin_address:
            try:
                dump = parse_config_dump(await self._fetch(proxy.admin_address))
            except XdsError as error:
                live_state = f"unreachable: {error}"
            else:
                if dump.node_id and dump.node_id != node_id:
                    live_state = f"not read: {proxy.admin_address} answers as node {dump.node_id!r}"
                else:
                    live_state = "checked"
                    drift = compare_live(snapshot, dump)
                    counts = {url: len(dump.resources.get(url, {})) for url in dump.types}
        versions = {}
        for url in PUSH_ORDER:
            entry = status.types.get(url)
            versions[SHORT_NAMES[url]] = (
                snapshot.version_of(url),
                entry.version_acked if entry is not None else None,
                counts.get(url),
            )
        return ProxyInspection(node_id=node_id, versions=versions, live=live_state, drift=drift)

    def _unacked(self, base: DriftDocument, *, status: ProxyStatus, snapshot: Snapshot, seen: _Seen) -> DriftDocument:
        if status.nacked:
            seen.unacked_since = None
            return replace(
                base,
                state="Pending",
                message="it NACKed what it is served and runs what it accepted before (see its NACK in proxies)",
                live="not read",
            )
        checks = seen.unacked_since[1] + 1 if seen.unacked_since and seen.unacked_since[0] == snapshot.version else 1
        seen.unacked_since = (snapshot.version, checks)
        pending = [
            SHORT_NAMES[url]
            for url in PUSH_ORDER
            if (entry := status.types.get(url)) is not None and entry.version_acked != entry.version_sent
        ]
        if checks < 3:
            return replace(
                base,
                state="Pending",
                message=f"a push is not answered yet ({', '.join(pending) or 'waiting for its requests'})",
                live="not read",
            )
        item = DriftItem(
            type=",".join(pending) or "-",
            name=snapshot.version,
            kind="unacked",
            detail=f"the served snapshot {snapshot.version} is not ACKed after {checks - 1} checks",
        )
        return replace(base, state="Drifted", message=item.detail, live="not read", items=(item,), total=1)

    async def _live(self, base: DriftDocument, *, admin: str, snapshot: Snapshot) -> DriftDocument:
        in_sync = replace(base, state="InSync", message="it ACKed every resource it is served")
        if not admin:
            return replace(in_sync, live="not read: no admin address announced (ACKs only)")
        try:
            dump = parse_config_dump(await self._fetch(admin))
        except XdsError as error:
            return replace(in_sync, live=f"unreachable: {error} (ACKs only)")
        if dump.node_id and dump.node_id != base.node_id:
            return replace(in_sync, live=f"not read: {admin} answers as node {dump.node_id!r} (ACKs only)")
        drift = compare_live(snapshot, dump)
        if not drift:
            return replace(in_sync, message="it runs every resource it is served, as served", live="checked")
        listed = drift[: self._settings.max_listed]
        items = tuple(DriftItem(type=d.type, name=d.name, kind=d.kind.value, detail=d.describe()) for d in listed)
        kinds = sorted({d.kind.value for d in drift})
        message = f"{len(drift)} resource(s) differ from what it ACKed ({', '.join(kinds)})"
        if any(d.kind is DriftKind.STATIC for d in drift):
            message += f"; {_STATIC_HINT}"
        return replace(base, state="Drifted", message=message, live="checked", items=items, total=len(drift))

    def _conclude(self, node_id: str, document: DriftDocument, *, seen: _Seen) -> DriftDocument:
        """Log transitions, re-push a new drift once (self-heal), and say what came of an earlier re-push."""
        if not document.drifted:
            if seen.drifted:
                healed = seen.repushed_at is not None
                log.info("drift.healed" if healed else "drift.ended", node_id=node_id, state=document.state)
                if healed and document.state == "InSync":
                    document = replace(document, state="Healed", repushed_at=seen.repushed_at)
            seen.drifted, seen.fingerprint = False, ""
            if document.state != "Healed":
                seen.repushed, seen.repushed_at = "", None
            return document
        fingerprint = _fingerprint(document)
        if fingerprint != seen.fingerprint:
            log.warning(
                "drift.detected",
                node_id=node_id,
                total=document.total,
                message=document.message,
                resources=[item.detail for item in document.items],
            )
        seen.drifted, seen.fingerprint = True, fingerprint
        if seen.repushed == fingerprint:
            return replace(
                document,
                message=f"{document.message}; it persists after a re-push",
                repushed_at=seen.repushed_at,
            )
        if self._settings.self_heal and self._cache.resend(node_id):
            seen.repushed, seen.repushed_at = fingerprint, self._clock()
            log.warning(
                "drift.repushed",
                node_id=node_id,
                overwritten=[item.detail for item in document.items],
                total=document.total,
            )
            return replace(document, repushed_at=seen.repushed_at)
        return document


def _answered(status: ProxyStatus) -> bool:
    """Every type sent to the proxy was ACKed (none in flight, none NACKed)."""
    return bool(status.types) and all(entry.state is SyncState.SYNCED for entry in status.types.values())


def _fingerprint(document: DriftDocument) -> str:
    text = "\n".join(f"{item.type} {item.name} {item.kind}" for item in document.items) + f"\n{document.total}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
