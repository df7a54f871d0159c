"""What a proxy really runs (its admin ``/config_dump``) against what it was served: drift, resource by resource.

``/config_dump`` wraps every resource: per type a ``*ConfigDump`` with ``static_*`` and
``dynamic_*`` lists whose entries carry ``version_info``, ``last_updated`` and the resource
itself (listeners one level deeper, in ``active_state``). :func:`parse_config_dump` strips
the wrappers into a :class:`LiveConfig` (resources by xDS type and name, each marked static
or dynamic), and :func:`compare_live` compares it with a served
:class:`~reconciler.translate.snapshot.Snapshot` after the same normalization on both sides
(each resource parsed into its proto and serialized deterministically, so key order, default
values and JSON spellings do not count; of a load assignment, the defaults Envoy writes into
the dump and the endpoints' health are cleared).

What counts as drift, per resource the proxy was served:

- ``missing``: the proxy does not run it;
- ``static``: its bootstrap holds one of that name (Envoy keeps a static resource and ignores
  the served one, yet ACKs: a restart with a stale bootstrap), and it differs;
- ``changed``: the proxy runs other content under that name;
- ``foreign``: a dynamic resource the proxy runs that we do not serve (a second control plane).

The bootstrap's own static resources (the ``xds_cluster`` that reaches the daemon) are not
drift. Pure: a parsed JSON document in, typed differences out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf.json_format import ParseDict, ParseError
from google.protobuf.message import Message

from reconciler.diff.changes import FieldChange, diff_fields
from reconciler.diff.envoy import plain_pair
from reconciler.translate.snapshot import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    MESSAGE_TYPES,
    PUSH_ORDER,
    ROUTE,
    SHORT_NAMES,
    Resource,
    Snapshot,
    resource_version,
)

__all__ = ["DriftKind", "LiveConfig", "LiveResource", "ResourceDrift", "compare_live", "parse_config_dump"]

#: Per ``*ConfigDump`` type: (xDS type, [(list, is static, keys down to the resource)]).
_DUMPS: Mapping[str, tuple[str, tuple[tuple[str, bool, tuple[str, ...]], ...]]] = {
    "type.googleapis.com/envoy.admin.v3.ClustersConfigDump": (
        CLUSTER,
        (("static_clusters", True, ("cluster",)), ("dynamic_active_clusters", False, ("cluster",))),
    ),
    "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump": (
        ENDPOINT,
        (
            ("static_endpoint_configs", True, ("endpoint_config",)),
            ("dynamic_endpoint_configs", False, ("endpoint_config",)),
        ),
    ),
    "type.googleapis.com/envoy.admin.v3.ListenersConfigDump": (
        LISTENER,
        (("static_listeners", True, ("listener",)), ("dynamic_listeners", False, ("active_state", "listener"))),
    ),
    "type.googleapis.com/envoy.admin.v3.RoutesConfigDump": (
        ROUTE,
        (("static_route_configs", True, ("route_config",)), ("dynamic_route_configs", False, ("route_config",))),
    ),
}

#: Envoy's default overprovisioning factor, which it writes into every dumped load assignment.
_OVERPROVISIONING = 140
#: How many problems (unreadable entries) a LiveConfig keeps: the dump is untrusted input.
MAX_PROBLEMS = 20


class DriftKind(StrEnum):
    """How a resource the proxy runs differs from what it was served."""

    MISSING = "missing"
    STATIC = "static"
    CHANGED = "changed"
    FOREIGN = "foreign"


@dataclass(frozen=True, slots=True)
class LiveResource:
    """One resource as the proxy runs it, without the dump's wrapper."""

    message: Message
    static: bool
    version: str = ""


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """A proxy's resources by xDS type and name, what node id the dump says, and entries that could not be read."""

    resources: Mapping[str, Mapping[str, LiveResource]]
    node_id: str = ""
    #: Which types the dump had at all (a dump without EDS, ``include_eds`` unset, says nothing about endpoints).
    types: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResourceDrift:
    """One resource that differs: its type (``CDS``...), name, how, and the fields (served → live)."""

    type: str
    name: str
    kind: DriftKind
    fields: tuple[FieldChange, ...] = field(default=())

    def describe(self) -> str:
        """``CDS outbound|80||a.example static: the proxy's bootstrap holds its own (2 fields differ)``."""
        what = {
            DriftKind.MISSING: "served and ACKed, but the proxy does not run it",
            DriftKind.STATIC: "the proxy's bootstrap holds a static one, which Envoy keeps over the served one",
            DriftKind.CHANGED: "the proxy runs other content under this name",
            DriftKind.FOREIGN: "the proxy runs it, but it was not served by this daemon (another control plane?)",
        }[self.kind]
        paths = ", ".join(change.field_path for change in self.fields[:3])
        more = f" (+{len(self.fields) - 3})" if len(self.fields) > 3 else ""
        return f"{self.type} {self.name} {self.kind.value}: {what}" + (f"; fields: {paths}{more}" if paths else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "kind": self.kind.value,
            "fields": [change.to_json() for change in self.fields],
        }


def parse_config_dump(document: Any) -> LiveConfig:
    """The resources of an admin ``/config_dump`` (JSON, already parsed); what cannot be read is a problem."""
    resources: dict[str, dict[str, LiveResource]] = {}
    problems: list[str] = []
    types: set[str] = set()
    node_id = ""
    configs = document.get("configs") if isinstance(document, Mapping) else None
    if not isinstance(configs, list):
        return LiveConfig(resources=MappingProxyType({}), problems=("not a config dump: no 'configs' list",))
    for config in configs:
        if not isinstance(config, Mapping):
            continue
        kind = str(config.get("@type", ""))
        if kind == "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump":
            node = _dig(config, ("bootstrap", "node"))
            node_id = str(node.get("id", "")) if isinstance(node, Mapping) else ""
        if kind not in _DUMPS:
            continue
        type_url, lists = _DUMPS[kind]
        types.add(type_url)
        found = resources.setdefault(type_url, {})
        for list_name, static, keys in lists:
            entries = config.get(list_name, ())
            for entry in entries if isinstance(entries, list) else ():
                read = _read_entry(entry, type_url=type_url, keys=keys, static=static)
                if isinstance(read, str):
                    if read and len(problems) < MAX_PROBLEMS:
                        problems.append(f"{SHORT_NAMES[type_url]} {list_name}: {read}")
                    continue
                name, resource = read
                # A served name also held statically: the static one is what Envoy runs.
                if name not in found or static:
                    found[name] = resource
    return LiveConfig(
        resources=MappingProxyType({url: MappingProxyType(items) for url, items in resources.items()}),
        node_id=node_id,
        types=frozenset(types),
        problems=tuple(problems),
    )


def compare_live(
    served: Snapshot, live: LiveConfig, *, types: Iterable[str] = PUSH_ORDER, foreign: bool = True
) -> tuple[ResourceDrift, ...]:
    """Every served resource of ``types`` the proxy does not run as served, then (``foreign``) what it runs besides.

    A type the dump does not hold (endpoints without ``include_eds``) is not compared.
    """
    drift: list[ResourceDrift] = []
    for type_url in (url for url in PUSH_ORDER if url in set(types) and url in live.types):
        short = SHORT_NAMES[type_url]
        running = live.resources.get(type_url, {})
        wanted = served.sets[type_url].items
        for name, item in wanted.items():
            found = running.get(name)
            if found is None:
                drift.append(ResourceDrift(type=short, name=name, kind=DriftKind.MISSING))
                continue
            if _same(type_url, item, found.message):
                continue
            # Parsed only when it differs: a served route table is held as bytes (megabytes as a message).
            fields = diff_fields(*plain_pair(item.message, found.message))
            kind = DriftKind.STATIC if found.static else DriftKind.CHANGED
            drift.append(ResourceDrift(type=short, name=name, kind=kind, fields=fields))
        if foreign:
            drift.extend(
                ResourceDrift(type=short, name=name, kind=DriftKind.FOREIGN)
                for name, resource in sorted(running.items())
                if name not in wanted and not resource.static
            )
    return tuple(drift)


def _same(type_url: str, served: Resource, live: Message) -> bool:
    """Whether ``live`` serializes to ``served``'s bytes: its version is their hash (with the name)."""
    return resource_version(type_url, served.name, live.SerializeToString(deterministic=True)) == served.version


def _read_entry(entry: Any, *, type_url: str, keys: tuple[str, ...], static: bool) -> tuple[str, LiveResource] | str:
    """(name, resource) of one dump entry, or what is wrong with it."""
    if not isinstance(entry, Mapping):
        return "an entry is not an object"
    # A dynamic listener that is only warming or failed has no active_state: it runs nothing yet.
    value = _dig(entry, keys)
    if value is None:
        return "" if not static and keys[0] == "active_state" else f"an entry has no {'.'.join(keys)}"
    if not isinstance(value, Mapping):
        return f"{'.'.join(keys)} is not an object"
    version = entry.get("version_info", "") if not static else ""
    if keys[0] == "active_state":
        version = _dig(entry, ("active_state", "version_info")) or ""
    body = {key: item for key, item in value.items() if key != "@type"}
    message = MESSAGE_TYPES[type_url]()
    try:
        ParseDict(body, message, ignore_unknown_fields=True)
    except (ParseError, ValueError, TypeError) as error:
        return f"unreadable resource: {str(error)[:200]}"
    if type_url == ENDPOINT:
        _without_eds_defaults(message)
    name = str(getattr(message, "cluster_name" if type_url == ENDPOINT else "name"))
    return name, LiveResource(message=message, static=static, version=str(version))


def _without_eds_defaults(assignment: endpoint_pb2.ClusterLoadAssignment) -> None:
    """Clear what Envoy fills into every dumped load assignment: its defaults and the endpoints' health.

    Health is the proxy's state, not config; the rest are the values Envoy assumes when unset.
    """
    policy = assignment.policy
    if policy.HasField("overprovisioning_factor") and policy.overprovisioning_factor.value == _OVERPROVISIONING:
        policy.ClearField("overprovisioning_factor")
    if assignment.HasField("policy") and not policy.ListFields():
        assignment.ClearField("policy")
    for locality in assignment.endpoints:
        if locality.HasField("locality") and not locality.locality.ListFields():
            locality.ClearField("locality")
        if locality.HasField("load_balancing_weight") and locality.load_balancing_weight.value == 0:
            locality.ClearField("load_balancing_weight")
        for endpoint in locality.lb_endpoints:
            endpoint.ClearField("health_status")
            if endpoint.HasField("load_balancing_weight") and endpoint.load_balancing_weight.value == 1:
                endpoint.ClearField("load_balancing_weight")
            check = endpoint.endpoint.health_check_config
            if endpoint.endpoint.HasField("health_check_config") and not check.ListFields():
                endpoint.endpoint.ClearField("health_check_config")


def _dig(value: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value
