"""The status document: what ``GET /api/v1/status`` serves and ``reconciler status`` reads.

One typed value, frozen, with its JSON form in one place: :meth:`StatusDocument.to_json`
writes the wire format (camelCase keys, ISO-8601 UTC times ending in ``Z``, xDS types by
their short names) and :meth:`StatusDocument.from_json` reads it back to an equal value.
The engine builds the :class:`EngineDocument` part (``EngineStatus.document()``), the
proxies' part comes from the xDS cache (:meth:`ProxyDocument.of`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from reconciler.model.text import MESSAGE_CHARS, excerpt
from reconciler.sources.revision import Revision
from reconciler.translate.snapshot import SHORT_NAMES
from reconciler.validate.findings import Finding
from reconciler.xds.cache import ProxyStatus, SyncState

__all__ = [
    "API_SERVER",
    "NOT_SENT",
    "PROXIES",
    "DriftDocument",
    "DriftItem",
    "EngineDocument",
    "ErrorDocument",
    "NackDocument",
    "OriginDocument",
    "ProxyDocument",
    "RevisionInfo",
    "RolloutCounts",
    "RolloutDocument",
    "StatusDocument",
    "TypeDocument",
]

#: ``syncedBy``'s targets: every connected proxy ACKed the generation; the API server accepted its objects.
PROXIES = "proxies"
API_SERVER = "apiServer"
#: The state of a type nothing was sent for yet; the others are :class:`SyncState` upper-cased, like istioctl.
NOT_SENT = "NOT SENT"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


@dataclass(frozen=True, slots=True)
class RevisionInfo:
    """A revision as status shows it: its subject line and author, shortened."""

    sha: str
    message: str = ""
    author: str = ""
    committed_at: datetime | None = None

    @classmethod
    def of(cls, revision: Revision) -> RevisionInfo:
        return cls(
            sha=revision.sha,
            message=excerpt(revision.message.strip().splitlines()[0], MESSAGE_CHARS)
            if revision.message.strip()
            else "",
            author=excerpt(revision.author, MESSAGE_CHARS),
            committed_at=revision.committed_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "sha": self.sha,
            "message": self.message,
            "author": self.author,
            "committedAt": _iso(self.committed_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RevisionInfo:
        return cls(
            sha=data["sha"], message=data["message"], author=data["author"], committed_at=_time(data["committedAt"])
        )


@dataclass(frozen=True, slots=True)
class ErrorDocument:
    """The last failed pass: which commit, why, and each error-level finding with its file:line."""

    reason: str
    message: str
    at: datetime | None
    sha: str | None
    findings: tuple[Finding, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "message": self.message,
            "at": _iso(self.at),
            "sha": self.sha,
            "findings": [finding.to_json() for finding in self.findings],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ErrorDocument:
        return cls(
            reason=data["reason"],
            message=data["message"],
            at=_time(data["at"]),
            sha=data["sha"],
            findings=tuple(Finding.from_json(finding) for finding in data["findings"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginDocument:
    """What served the config: its ``change`` (commit, rollout-step, rollback, restore, nack-rollback), commit, step."""

    change: str
    sha: str
    step: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"change": self.change, "sha": self.sha, "step": self.step}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OriginDocument:
        return cls(change=data["change"], sha=data["sha"], step=data["step"])


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineDocument:
    """The daemon's side: what it follows, what it serves, why the last pass ended as it did."""

    repo: str
    branch: str
    path: str
    head_sha: str | None
    served: RevisionInfo | None
    origin: OriginDocument | None
    served_since: datetime | None
    synced_at: datetime | None
    synced: bool
    generation: int
    reason: str
    message: str
    last_attempt: datetime | None
    last_error: ErrorDocument | None
    warnings: tuple[Finding, ...]
    #: A revision is served and no proxy's NACK left the daemon without one every proxy accepts: ``/readyz``.
    ready: bool
    #: Who must accept the served generation for it to be synced: ``proxies`` (xDS), ``apiServer`` (CRD mode).
    synced_by: tuple[str, ...] = (PROXIES,)

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "branch": self.branch,
            "path": self.path,
            "headSha": self.head_sha,
            "served": self.served.to_json() if self.served else None,
            "origin": self.origin.to_json() if self.origin else None,
            "servedSince": _iso(self.served_since),
            "syncedAt": _iso(self.synced_at),
            "synced": self.synced,
            "generation": self.generation,
            "reason": self.reason,
            "message": self.message,
            "lastAttempt": _iso(self.last_attempt),
            "lastError": self.last_error.to_json() if self.last_error else None,
            "warnings": [finding.to_json() for finding in self.warnings],
            "ready": self.ready,
            "syncedBy": list(self.synced_by),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EngineDocument:
        return cls(
            repo=data["repo"],
            branch=data["branch"],
            path=data["path"],
            head_sha=data["headSha"],
            served=RevisionInfo.from_json(data["served"]) if data["served"] else None,
            origin=OriginDocument.from_json(data["origin"]) if data["origin"] else None,
            served_since=_time(data["servedSince"]),
            synced_at=_time(data["syncedAt"]),
            synced=data["synced"],
            generation=data["generation"],
            reason=data["reason"],
            message=data["message"],
            last_attempt=_time(data["lastAttempt"]),
            last_error=ErrorDocument.from_json(data["lastError"]) if data["lastError"] else None,
            warnings=tuple(Finding.from_json(finding) for finding in data["warnings"]),
            ready=data["ready"],
            synced_by=tuple(data.get("syncedBy", (PROXIES,))),  # a daemon from before CRD mode: the proxies
        )


@dataclass(frozen=True, slots=True)
class NackDocument:
    """The version a proxy rejected and Envoy's reason, verbatim."""

    version: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "message": self.message}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NackDocument:
        return cls(version=data["version"], message=data["message"])


@dataclass(frozen=True, slots=True)
class TypeDocument:
    """One xDS type of one proxy: its state (``SYNCED``, ``STALE``, ``NACKED``, ``NOT SENT``) and versions."""

    state: str
    sent: str | None = None
    acked: str | None = None
    nack: NackDocument | None = None

    @property
    def nacked(self) -> bool:
        return self.state == SyncState.NACKED.upper()

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "sent": self.sent,
            "acked": self.acked,
            "nack": self.nack.to_json() if self.nack else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TypeDocument:
        return cls(
            state=data["state"],
            sent=data["sent"],
            acked=data["acked"],
            nack=NackDocument.from_json(data["nack"]) if data["nack"] else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyDocument:
    """One connected proxy: who it is, what it was sent and accepted, per xDS type (by short name: ``CDS``...)."""

    node_id: str
    labels: Mapping[str, str]
    connected_since: datetime
    snapshot_version: str | None
    acked_snapshot_version: str | None
    generation: int
    acked_generation: int
    types: Mapping[str, TypeDocument]

    @property
    def nacked(self) -> bool:
        return any(entry.nacked for entry in self.types.values())

    @classmethod
    def of(cls, proxy: ProxyStatus) -> ProxyDocument:
        types = {}
        for type_url, short in SHORT_NAMES.items():
            entry = proxy.types.get(type_url)
            if entry is None:
                types[short] = TypeDocument(state=NOT_SENT)
                continue
            nack = entry.last_nack
            types[short] = TypeDocument(
                state=entry.state.upper(),
                sent=entry.version_sent,
                acked=entry.version_acked,
                nack=NackDocument(version=nack.version, message=nack.message) if nack else None,
            )
        return cls(
            node_id=proxy.node_id,
            labels=MappingProxyType(dict(proxy.labels)),
            connected_since=datetime.fromtimestamp(proxy.connected_since, UTC),
            snapshot_version=proxy.snapshot_version,
            acked_snapshot_version=proxy.acked_snapshot_version,
            generation=proxy.generation,
            acked_generation=proxy.acked_generation,
            types=MappingProxyType(types),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "nodeId": self.node_id,
            "labels": dict(self.labels),
            "connectedSince": _iso(self.connected_since),
            "snapshotVersion": self.snapshot_version,
            "ackedSnapshotVersion": self.acked_snapshot_version,
            "generation": self.generation,
            "ackedGeneration": self.acked_generation,
            "types": {name: entry.to_json() for name, entry in self.types.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxyDocument:
        connected_since = _time(data["connectedSince"])
        if connected_since is None:
            raise ValueError(f"proxy {data['nodeId']!r} has no connectedSince")
        return cls(
            node_id=data["nodeId"],
            labels=MappingProxyType(dict(data["labels"])),
            connected_since=connected_since,
            snapshot_version=data["snapshotVersion"],
            acked_snapshot_version=data["ackedSnapshotVersion"],
            generation=data["generation"],
            acked_generation=data["ackedGeneration"],
            types=MappingProxyType({name: TypeDocument.from_json(entry) for name, entry in data["types"].items()}),
        )


Weights = Mapping[str, Mapping[str, int]]
"""Route (``namespace/name#index``) → destination (``host:subset``) → weight."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutCounts:
    """Requests and errors of one side (canary or stable) since the step's analysis window opened."""

    requests: int
    errors: int

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutCounts:
        return cls(requests=data["requests"], errors=data["errors"])


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutDocument:
    """A rollout: its policy, phase and step, the weights served against git's, and the latest decision."""

    policy: str
    """``namespace/name`` of the RolloutPolicy."""
    virtual_services: tuple[str, ...]
    sha: str
    phase: str
    step: int
    """0-based; ``steps`` is git's weights."""
    steps: int
    served: Weights
    goal: Weights
    """What git asks for; differs from ``served`` while walking, and after a rollback (``message`` says why)."""
    canary: RolloutCounts | None
    stable: RolloutCounts | None
    message: str
    decided_at: float | None
    """The latest decision's time (seconds since the epoch)."""
    counts: Mapping[str, RolloutCounts] = field(default_factory=lambda: MappingProxyType({}))
    """Per destination (``host:subset``): the counts ``canary`` and ``stable`` sum."""
    acked_at: float | None = None
    """When every proxy had ACKed the step (its analysis window opened); None before."""
    next_look_at: float | None = None
    """When the open window's counts get their look (if the canary has ``minRequests`` by then)."""
    deadline: float | None = None
    """When ``maxInterval`` runs out: the step is decided by then, or (not ACKed yet) reported Stalled."""

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "virtualServices": list(self.virtual_services),
            "sha": self.sha,
            "phase": self.phase,
            "step": self.step,
            "steps": self.steps,
            "served": {route: dict(split) for route, split in self.served.items()},
            "goal": {route: dict(split) for route, split in self.goal.items()},
            "canary": self.canary.to_json() if self.canary else None,
            "stable": self.stable.to_json() if self.stable else None,
            "message": self.message,
            "decidedAt": self.decided_at,
            "counts": {destination: counts.to_json() for destination, counts in self.counts.items()},
            "ackedAt": self.acked_at,
            "nextLookAt": self.next_look_at,
            "deadline": self.deadline,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutDocument:
        return cls(
            policy=data["policy"],
            virtual_services=tuple(data["virtualServices"]),
            sha=data["sha"],
            phase=data["phase"],
            step=data["step"],
            steps=data["steps"],
            served={route: dict(split) for route, split in data["served"].items()},
            goal={route: dict(split) for route, split in data["goal"].items()},
            canary=RolloutCounts.from_json(data["canary"]) if data["canary"] else None,
            stable=RolloutCounts.from_json(data["stable"]) if data["stable"] else None,
            message=data["message"],
            decided_at=data["decidedAt"],
            counts=MappingProxyType(
                {destination: RolloutCounts.from_json(counts) for destination, counts in data["counts"].items()}
            ),
            acked_at=data["ackedAt"],
            next_look_at=data["nextLookAt"],
            deadline=data["deadline"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftItem:
    """One resource a proxy runs other than it was served: type (``CDS``...), name, kind, what it means."""

    type: str
    name: str
    kind: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "kind": self.kind, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DriftItem:
        return cls(type=data["type"], name=data["name"], kind=data["kind"], detail=data["detail"])


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftDocument:
    """The latest drift check of one connected proxy, or (``source`` ``cluster``) of the cluster's Istio objects.

    ``state``: ``InSync`` (it runs what it ACKed), ``Drifted``, ``Pending`` (a push is not answered
    yet: not drift), ``Unchecked`` (nothing to compare yet), ``Healed`` (drifted, then re-pushed and
    in sync). ``live`` says how far the check went: ``checked`` (its /config_dump was compared),
    or why not (``no admin address announced``, ``unreachable: ...``): then only ACKs were compared.
    """

    node_id: str
    state: str
    message: str
    live: str
    checked_at: datetime | None
    #: At most ``DriftSettings.max_listed`` of them; ``total`` counts all.
    items: tuple[DriftItem, ...] = ()
    total: int = 0
    repushed_at: datetime | None = None
    #: ``proxy`` (``node_id`` names it) or ``cluster`` (CRD mode: the Istio objects applied; ``node_id`` is empty,
    #: ``items`` are objects: ``type`` their kind, ``name`` namespace/name; ``repushedAt`` the last re-apply).
    source: str = "proxy"

    @property
    def drifted(self) -> bool:
        return self.state == "Drifted"

    def to_json(self) -> dict[str, Any]:
        return {
            "nodeId": self.node_id,
            "state": self.state,
            "message": self.message,
            "live": self.live,
            "checkedAt": _iso(self.checked_at),
            "items": [item.to_json() for item in self.items],
            "total": self.total,
            "repushedAt": _iso(self.repushed_at),
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DriftDocument:
        return cls(
            node_id=data["nodeId"],
            state=data["state"],
            message=data["message"],
            live=data["live"],
            checked_at=_time(data["checkedAt"]),
            items=tuple(DriftItem.from_json(item) for item in data["items"]),
            total=data["total"],
            repushed_at=_time(data["repushedAt"]),
            source=data.get("source", "proxy"),  # a daemon from before CRD mode sends none
        )


@dataclass(frozen=True, slots=True)
class StatusDocument:
    """The whole document: the engine's part, then every connected proxy (``proxies`` in the JSON)."""

    engine: EngineDocument
    proxies: tuple[ProxyDocument, ...] = ()
    rollouts: tuple[RolloutDocument, ...] = ()
    #: The latest drift check of each connected proxy (empty when drift checks are off).
    drift: tuple[DriftDocument, ...] = ()

    @classmethod
    def of(
        cls,
        engine: EngineDocument,
        proxies: Iterable[ProxyStatus],
        rollouts: Iterable[RolloutDocument] = (),
        drift: Iterable[DriftDocument] = (),
    ) -> StatusDocument:
        return cls(
            engine=engine,
            proxies=tuple(ProxyDocument.of(proxy) for proxy in proxies),
            rollouts=tuple(rollouts),
            drift=tuple(drift),
        )

    def to_json(self) -> dict[str, Any]:
        # One flat object on the wire: the engine's keys, then "proxies" and "rollouts".
        return {
            **self.engine.to_json(),
            "proxies": [proxy.to_json() for proxy in self.proxies],
            "rollouts": [rollout.to_json() for rollout in self.rollouts],
            "drift": [entry.to_json() for entry in self.drift],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusDocument:
        """The document ``data`` holds; ``KeyError``, ``TypeError`` or ``ValueError`` when it is not one."""
        return cls(
            engine=EngineDocument.from_json(data),
            proxies=tuple(ProxyDocument.from_json(p) for p in data["proxies"]),
            # A daemon from before rollouts sends none.
            rollouts=tuple(RolloutDocument.from_json(r) for r in data.get("rollouts", ())),
            # ...and none from before drift checks.
            drift=tuple(DriftDocument.from_json(d) for d in data.get("drift", ())),
        )
