"""Istio resources in canonical form: plain values in which only what changes routing differs.

Two resources that Istio treats alike normalize to equal values, so a commit that only
reformats or reorders is "equal". The rules:

- identity is ``Kind namespace/name``: the file, line, ``apiVersion`` (Istio serves one schema
  under ``v1``, ``v1beta1``, ``v1alpha3``), labels and annotations are not compared;
- lists Istio treats as sets are sorted (``hosts``, ``gateways``, ``exportTo``, ``addresses``,
  ``subjectAltNames``, header ``remove``, the match conditions of a rule, the conditions of
  ``retryOn``), or keyed by what names an entry (route destinations and mirrors by
  ``host/subset:port``, subsets by name, ports and port-level settings by number, endpoints
  by address, Gateway servers by port and hosts);
- ordered lists stay lists: HTTP rules (the first match wins), rollout steps;
- short hosts are resolved as Istio does (``reviews`` → ``reviews.<ns>.svc.cluster.local``),
  gateway references become ``namespace/name``;
- a field at its default is left out (``ignoreUriCase: false`` reads as unset), the one
  destination of a rule weighs 100, durations are written one way (``1000ms`` is ``1s``).

Field names are Istio's camelCase, so a field path reads like the YAML it came from.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from reconciler.model.common import Duration, Percent
from reconciler.model.config import Resource
from reconciler.model.destinationrule import DestinationRuleSpec, PortTrafficPolicy, TLSSettings, TrafficPolicy
from reconciler.model.gateway import GatewaySpec, Server, ServerTLSSettings
from reconciler.model.hosts import gateway_ref, resolve_host
from reconciler.model.serviceentry import ServiceEntrySpec
from reconciler.model.virtualservice import (
    Destination,
    HeaderOperations,
    HTTPMirrorPolicy,
    HTTPRetry,
    HTTPRoute,
    HTTPRouteDestination,
    TLSMatchAttributes,
    VirtualServiceSpec,
)
from reconciler.validate.schema import istio_name

__all__ = ["destination_key", "duration_text", "field_default", "normalize_resource"]

#: A single route destination without a weight gets all the traffic.
_FULL_WEIGHT = 100

_Normalizer = Callable[[Any, str], Any]


def normalize_resource(resource: Resource[Any]) -> dict[str, Any]:
    """The canonical plain form of ``resource``'s spec (see the module docstring)."""
    return {"spec": _value(resource.spec, resource.namespace)}


def destination_key(destination: Destination, namespace: str) -> str:
    """``host/subset:port`` with the host resolved: how a destination is named in a diff."""
    key = resolve_host(destination.host, namespace)
    if destination.subset:
        key += f"/{destination.subset}"
    if destination.port is not None and destination.port.number is not None:
        key += f":{destination.port.number}"
    return key


def duration_text(nanos: int) -> str:
    """One spelling per duration: ``2s``, ``1.5s``, ``250ms``, ``10us``, ``7ns``."""
    if nanos % 10**9 == 0:
        return f"{nanos // 10**9}s"
    if nanos >= 10**9 and nanos % 10**6 == 0:
        return f"{nanos // 10**9}.{nanos % 10**9 // 10**6:03d}".rstrip("0") + "s"
    for unit, size in (("ms", 10**6), ("us", 10**3)):
        if nanos % size == 0:
            return f"{nanos // size}{unit}"
    return f"{nanos}ns"


def _sorted(values: Any, namespace: str) -> list[Any]:
    return sorted((_value(item, namespace) for item in values), key=_canonical)


def _hosts(values: Any, namespace: str) -> list[str]:
    return sorted({resolve_host(host, namespace) for host in values})


def _keyed(key: Callable[[Any, str], str]) -> Callable[[Any, str], dict[str, Any]]:
    def normalize(values: Any, namespace: str) -> dict[str, Any]:
        return {key(item, namespace): _value(item, namespace) for item in values}

    return normalize


def _route_destinations(values: tuple[HTTPRouteDestination, ...], namespace: str) -> dict[str, Any]:
    keyed = _keyed(lambda item, ns: destination_key(item.destination, ns))(values, namespace)
    if len(keyed) == 1:
        only = next(iter(keyed.values()))
        only.setdefault("weight", _FULL_WEIGHT)
    return keyed


def _server_key(server: Server, namespace: str) -> str:
    return f"{server.port.number} {','.join(sorted(host.lower() for host in server.hosts))}"


def _port_level_key(item: PortTrafficPolicy, namespace: str) -> str:
    return str(item.port.number) if item.port is not None and item.port.number is not None else "*"


#: Fields whose order Istio ignores, and how each is put in canonical form.
_FIELDS: Mapping[tuple[type, str], _Normalizer] = {
    (VirtualServiceSpec, "hosts"): _hosts,
    (VirtualServiceSpec, "gateways"): lambda values, ns: sorted({gateway_ref(item, ns) for item in values}),
    (VirtualServiceSpec, "export_to"): _sorted,
    (HTTPRoute, "route"): _route_destinations,
    (HTTPRoute, "match"): _sorted,
    (HTTPRoute, "mirrors"): _keyed(lambda item, ns: destination_key(item.destination, ns)),
    (HTTPMirrorPolicy, "destination"): destination_key,
    (HTTPRouteDestination, "destination"): destination_key,
    (HTTPRoute, "mirror"): destination_key,
    (HTTPRetry, "retry_on"): lambda value, ns: ",".join(sorted({part.strip() for part in value.split(",")})),
    (HeaderOperations, "remove"): lambda values, ns: sorted({name.lower() for name in values}),
    (TLSMatchAttributes, "sni_hosts"): _sorted,
    (DestinationRuleSpec, "host"): resolve_host,
    (DestinationRuleSpec, "subsets"): _keyed(lambda item, ns: item.name),
    (DestinationRuleSpec, "export_to"): _sorted,
    (TrafficPolicy, "port_level_settings"): _keyed(_port_level_key),
    (PortTrafficPolicy, "port"): lambda value, ns: None,  # the key of portLevelSettings says it
    (TLSSettings, "subject_alt_names"): _sorted,
    (ServerTLSSettings, "subject_alt_names"): _sorted,
    (ServiceEntrySpec, "hosts"): _sorted,
    (ServiceEntrySpec, "ports"): _keyed(lambda item, ns: str(item.number)),
    (ServiceEntrySpec, "endpoints"): _keyed(lambda item, ns: item.address or _canonical(_value(item, ns))),
    (ServiceEntrySpec, "export_to"): _sorted,
    (GatewaySpec, "servers"): _keyed(_server_key),
    (Server, "hosts"): lambda values, ns: sorted(host.lower() for host in values),
}


def _value(value: Any, namespace: str) -> Any:
    if isinstance(value, Duration):
        return duration_text(value.nanos)
    if isinstance(value, Percent):
        return value.value
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass(value, namespace)
    if isinstance(value, Mapping):
        return {str(key): _value(item, namespace) for key, item in sorted(value.items())}
    if isinstance(value, tuple | list):
        return [_value(item, namespace) for item in value]
    return value


def _dataclass(value: Any, namespace: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cls = type(value)
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if item is None or item == field_default(field) or (isinstance(item, tuple | Mapping) and not item):
            continue
        special = _FIELDS.get((cls, field.name))
        normalized = special(item, namespace) if special is not None else _value(item, namespace)
        if normalized is not None:
            out[istio_name(field.name)] = normalized
    return out


def field_default(field: dataclasses.Field[Any]) -> Any:
    """A dataclass field's default value (``MISSING`` when it has none)."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
