"""The Envoy view: what each shape of proxy would get differently, resource by resource.

Offline, the proxies are the shapes the config itself implies, as validation translates
for them (:func:`~reconciler.translate.translator.representative_proxies`): a sidecar per
namespace the config uses and a gateway per Gateway selector. Both configs are translated
for the union of both sides' shapes; a side's translations validation already made
(``LoadResult.translations``) may be passed in and are used instead of translating again.
Against a daemon, the proxies connected to it count too: they come in as
:class:`ProxyGroup` (one shape, how many proxies have it; :func:`group_proxies`), are
translated for both sides like the shapes the config implies (a connected shape equal to one of
those is that one), and :func:`connected_summary` says how many of them a change reaches and
how: ``1 of 1 gateway: LDS, RDS; 120 of 130 sidecars: RDS only``.

Resources are compared by their deterministic bytes first; only those that differ are
turned into Envoy's JSON and compared field by field, and of those only the named entries
(virtual hosts, filter chains) whose bytes differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from reconciler.diff.changes import ObjectChange, diff_objects
from reconciler.model.config import MeshConfig
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.translate.registry import ServiceRegistry, build_registry
from reconciler.translate.snapshot import PUSH_ORDER, SHORT_NAMES, Resource, Snapshot
from reconciler.translate.translator import (
    ProxyShape,
    Translation,
    proxy_shape,
    representative_proxies,
    resolve_role,
    translate,
)

__all__ = [
    "ProxyDiff",
    "ProxyGroup",
    "Translated",
    "affected_summary",
    "connected_summary",
    "diff_proxies",
    "diff_snapshots",
    "group_proxies",
    "plain_pair",
    "proxy_shapes",
]

#: Lists Envoy treats in order even when their entries are named: routes of a virtual host (first match wins).
_ORDERED = frozenset({"routes"})

#: What an entry equal on both sides is compared as (it is never shown: equal values leave no change).
_UNCHANGED = "(unchanged)"

#: A config's translations already made, by proxy shape (``LoadResult.translations``).
Translated = Mapping[ProxyShape, Translation]


@dataclass(frozen=True, slots=True)
class ProxyDiff:
    """One proxy shape and the changes to the resources it would be sent."""

    proxy: ProxyIdentity
    changes: tuple[ObjectChange, ...]
    #: Short names (CDS, EDS, LDS, RDS) of the xDS types that change, in push order.
    xds_types: tuple[str, ...]
    #: How many connected proxies have this shape.
    connected: int = 0
    #: A shape the configs imply (a sidecar per namespace, a gateway per selector), not only a connected proxy's.
    implied: bool = True

    @property
    def label(self) -> str:
        """``sidecar in bookinfo``, ``sidecar app=reviews in bookinfo``, ``gateway istio=ingress in istio-system``."""
        labels = ",".join(f"{key}={value}" for key, value in sorted(self.proxy.labels.items()))
        if self.proxy.role is ProxyRole.SIDECAR:
            return f"sidecar {labels} in {self.proxy.namespace}" if labels else f"sidecar in {self.proxy.namespace}"
        return f"gateway {labels or '(no selector)'} in {self.proxy.namespace}"

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.proxy.role.value if self.proxy.role else None,
            "namespace": self.proxy.namespace,
            "labels": dict(sorted(self.proxy.labels.items())),
            "connected": self.connected,
            "xdsTypes": list(self.xds_types),
            "resources": [change.to_json() for change in self.changes],
        }


@dataclass(frozen=True, slots=True)
class ProxyGroup:
    """Connected proxies that translation sees alike (labels, role, namespace, port), and how many there are."""

    proxy: ProxyIdentity
    count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.proxy.role.value if self.proxy.role else None,
            "namespace": self.proxy.namespace,
            "labels": dict(sorted(self.proxy.labels.items())),
            "outboundPort": self.proxy.outbound_port,
            "count": self.count,
        }

    @classmethod
    def from_json(cls, value: Any, *, index: int) -> ProxyGroup | None:
        """A group as :meth:`to_json` wrote it (an untrusted answer): None when it is not one."""
        if not isinstance(value, dict) or not isinstance(value.get("labels"), dict):
            return None
        count, port = value.get("count"), value.get("outboundPort")
        role = value.get("role")
        if not isinstance(count, int) or count < 1 or not isinstance(port, int) or not 0 < port < 65536:
            return None
        if role is not None and role not in {item.value for item in ProxyRole}:
            return None
        labels = {str(key): str(item) for key, item in value["labels"].items()}
        proxy = ProxyIdentity(
            node_id=f"connected-{index}",
            labels=labels,
            role=ProxyRole(role) if role is not None else None,
            namespace=str(value.get("namespace") or "default"),
            outbound_port=port,
        )
        return cls(proxy=proxy, count=count)


def group_proxies(proxies: Iterable[ProxyIdentity]) -> tuple[ProxyGroup, ...]:
    """Connected proxies grouped by what translation reads of them, the largest group first."""
    counts: dict[tuple[Any, ...], int] = {}
    first: dict[tuple[Any, ...], ProxyIdentity] = {}
    for proxy in proxies:
        key = (tuple(sorted(proxy.labels.items())), proxy.role, proxy.namespace, proxy.outbound_port)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, proxy)
    ordered = sorted(counts, key=lambda key: (-counts[key], str(key)))
    return tuple(ProxyGroup(proxy=first[key], count=counts[key]) for key in ordered)


def diff_snapshots(old: Snapshot, new: Snapshot) -> tuple[ObjectChange, ...]:
    """The Envoy resources added, removed or changed from ``old`` to ``new``, in push order."""
    changes: list[ObjectChange] = []
    for type_url in PUSH_ORDER:
        if old.version_of(type_url) == new.version_of(type_url):
            continue  # content-hashed: equal versions, equal resources
        changes.extend(
            diff_objects(_by_key(old, type_url), _by_key(new, type_url), plain=_plain_items, same=_same_bytes)
        )
    return tuple(changes)


def proxy_shapes(*configs: MeshConfig) -> tuple[ProxyIdentity, ...]:
    """Every proxy shape any of ``configs`` implies, once each, sidecars first."""
    shapes: dict[tuple[Any, ...], ProxyIdentity] = {}
    for config in configs:
        for proxy in representative_proxies(config):
            shapes.setdefault((proxy.role, proxy.namespace, tuple(sorted(proxy.labels.items()))), proxy)
    return tuple(shapes[key] for key in sorted(shapes, key=lambda key: (key[0] != ProxyRole.SIDECAR, key[1:])))


def diff_proxies(
    old: MeshConfig,
    new: MeshConfig,
    *,
    proxies: Sequence[ProxyIdentity] | None = None,
    connected: Sequence[ProxyGroup] = (),
    old_translated: Translated | None = None,
    new_translated: Translated | None = None,
) -> tuple[ProxyDiff, ...]:
    """For each proxy (default: :func:`proxy_shapes` of both), what translating ``new`` changes from ``old``.

    Then each ``connected`` group's shape, unless it is one of those (it then counts there).
    ``old_translated`` and ``new_translated`` are each side's translations made with ``build_registry`` of it.
    """
    old_side, new_side = _Side(old, old_translated or {}), _Side(new, new_translated or {})
    shapes: dict[ProxyShape, ProxyIdentity] = {}
    counts: dict[ProxyShape, int] = {}
    for proxy in proxy_shapes(old, new) if proxies is None else proxies:
        shapes.setdefault(proxy_shape(new, proxy), proxy)
    implied = set(shapes)
    for group in connected:
        # Labelled by the role it has in ``new`` (a proxy that names none is a gateway where a Gateway selects it).
        role, _ = resolve_role(new, group.proxy)
        proxy = replace(group.proxy, role=role)
        shape = proxy_shape(new, proxy)
        shapes.setdefault(shape, proxy)
        counts[shape] = counts.get(shape, 0) + group.count
    result: list[ProxyDiff] = []
    for shape, proxy in shapes.items():
        before, after = old_side.snapshot(proxy), new_side.snapshot(proxy)
        changes = diff_snapshots(before, after)
        types = tuple(SHORT_NAMES[url] for url in PUSH_ORDER if before.version_of(url) != after.version_of(url))
        result.append(
            ProxyDiff(
                proxy=proxy,
                changes=changes,
                xds_types=types,
                connected=counts.get(shape, 0),
                implied=shape in implied,
            )
        )
    return tuple(result)


class _Side:
    """One config's snapshots: a translation already made for the proxy's shape, else a new one."""

    def __init__(self, config: MeshConfig, translated: Translated) -> None:
        self._config = config
        self._translated = translated
        self._registry: ServiceRegistry | None = None  # built on the first shape not translated yet

    def snapshot(self, proxy: ProxyIdentity) -> Snapshot:
        found = self._translated.get(proxy_shape(self._config, proxy))
        if found is not None:
            return found.snapshot
        if self._registry is None:
            self._registry = build_registry(self._config)
        return translate(self._config, proxy, registry=self._registry).snapshot


def affected_summary(proxies: Sequence[ProxyDiff]) -> str:
    """``sidecars: 2 of 3 namespaces: RDS only; gateways: 1 of 1 selector: LDS, RDS`` (``none`` when nothing changes).

    Counts the shapes the configs imply (a sidecar per namespace, a gateway per selector), not connected proxies.
    """
    parts = []
    for role, unit in ((ProxyRole.SIDECAR, "namespace"), (ProxyRole.GATEWAY, "selector")):
        shapes = [proxy for proxy in proxies if proxy.proxy.role is role and proxy.implied]
        affected = [proxy for proxy in shapes if proxy.xds_types]
        if not affected:
            continue
        plural = "s" if len(shapes) != 1 else ""
        parts.append(f"{role.value}s: {len(affected)} of {len(shapes)} {unit}{plural}: {_types_of(affected)}")
    return "; ".join(parts) or "none"


def connected_summary(proxies: Sequence[ProxyDiff]) -> str:
    """``1 of 1 gateway: LDS, RDS; 120 of 130 sidecars: RDS only``: the connected proxies a change reaches, and how.

    ``""`` when no proxy is connected.
    """
    parts = []
    for role in (ProxyRole.GATEWAY, ProxyRole.SIDECAR):
        shapes = [proxy for proxy in proxies if proxy.proxy.role is role and proxy.connected]
        total = sum(proxy.connected for proxy in shapes)
        if not total:
            continue
        affected = [proxy for proxy in shapes if proxy.xds_types]
        reached = sum(proxy.connected for proxy in affected)
        text = f"{reached} of {total} {role.value}{'s' if total != 1 else ''}"
        parts.append(f"{text}: {_types_of(affected)}" if affected else text)
    return "; ".join(parts)


def _types_of(affected: Sequence[ProxyDiff]) -> str:
    types = [name for name in (SHORT_NAMES[url] for url in PUSH_ORDER) if any(name in p.xds_types for p in affected)]
    return f"{', '.join(types)}{' only' if len(types) == 1 else ''}"


def _by_key(snapshot: Snapshot, type_url: str) -> Mapping[tuple[str, str], Resource]:
    # Encoded resources: their bytes compare at C speed, and only the changed ones are read as messages.
    kind = type_url.rsplit(".", 1)[-1]
    return {(kind, name): item for name, item in snapshot.sets[type_url].items.items()}


def _same_bytes(first: Resource, second: Resource) -> bool:
    return first.packed == second.packed


def _plain_items(old: Resource, new: Resource) -> tuple[Any, Any]:
    return plain_pair(old.message, new.message)


def _same(first: Message, second: Message) -> bool:
    return first.SerializeToString(deterministic=True) == second.SerializeToString(deterministic=True)


def plain_pair(old: Message, new: Message) -> tuple[Any, Any]:
    """Two resources as Envoy's JSON (lists of named entries keyed by name), for comparing field by field.

    A named entry of a top-level list with the same bytes on both sides is not converted: both
    get one placeholder, which compares equal. A sidecar's route table holds a virtual host per
    service, and converting the thousand unchanged ones would cost more than the diff.
    """
    if type(old) is not type(new):
        return _plain(old), _plain(new)
    old_rest, new_rest = type(old)(), type(new)()
    old_rest.CopyFrom(old)
    new_rest.CopyFrom(new)
    old_lists: dict[str, Any] = {}
    new_lists: dict[str, Any] = {}
    for field in old.DESCRIPTOR.fields:
        if not field.is_repeated or field.message_type is None or field.name in _ORDERED:
            continue
        if "name" not in field.message_type.fields_by_name or field.message_type.GetOptions().map_entry:
            continue
        old_items, new_items = _by_name(getattr(old, field.name)), _by_name(getattr(new, field.name))
        if old_items is None or new_items is None or not (old_items or new_items):
            continue
        old_rest.ClearField(field.name)
        new_rest.ClearField(field.name)
        old_lists[field.name], new_lists[field.name] = _keyed_pair(old_items, new_items)
    old_plain, new_plain = _plain(old_rest), _plain(new_rest)
    return {**old_plain, **old_lists}, {**new_plain, **new_lists}


def _by_name(items: Sequence[Message]) -> dict[str, Message] | None:
    """Entries by name, or None when a name is missing or repeated (then the list stays a list)."""
    named = {str(getattr(item, "name")): item for item in items}  # noqa: B009 - checked by the caller
    return named if len(named) == len(items) and "" not in named else None


def _keyed_pair(old: Mapping[str, Message], new: Mapping[str, Message]) -> tuple[dict[str, Any], dict[str, Any]]:
    old_out: dict[str, Any] = {}
    new_out: dict[str, Any] = {}
    for name in old.keys() | new.keys():
        first, second = old.get(name), new.get(name)
        if first is not None and second is not None and _same(first, second):
            old_out[name] = new_out[name] = _UNCHANGED
            continue
        if first is not None:
            old_out[name] = _plain(first)
        if second is not None:
            new_out[name] = _plain(second)
    return old_out, new_out


def _plain(message: Message) -> Any:
    return _named(MessageToDict(message, preserving_proto_field_name=True))


def _named(value: Any, key: str = "") -> Any:
    """Lists of named entries keyed by name (``virtual_hosts["reviews:9080"]``), so an insertion shifts nothing."""
    if isinstance(value, dict):
        return {name: _named(item, name) for name, item in value.items()}
    if isinstance(value, list):
        items = [_named(item) for item in value]
        names = [item.get("name") if isinstance(item, dict) else None for item in items]
        if key not in _ORDERED and names and None not in names and len(set(names)) == len(names):
            return dict(zip(names, items, strict=True))
        return items
    return value
