"""Typed, immutable model of Istio networking config (VirtualService, DestinationRule,
ServiceEntry, Gateway) plus Istio's host semantics.

Also the core's shared vocabulary: source locations (``source``), Istio's lookups and
protocols (``lookup``, ``protocols``), input limits (``limits``), how user text is shortened
and escaped (``text``) and cooperative cancellation (``checkpoint``).

Purely computational: standard library only, no I/O, no clocks, no globals.
Field names are Istio's camelCase keys in snake_case (``perTryTimeout`` →
``per_try_timeout``); a class's ``UNSUPPORTED`` names the Istio fields it knows
but does not act on (reported as findings, never dropped silently) and ``ONE_OF``
groups fields of which at most one may be set (``ONE_OF_REQUIRED``: exactly one).
"""

from reconciler.model.common import Duration, Percent, PortSelector, StringMatch
from reconciler.model.config import Kind, MeshConfig, Metadata, Resource
from reconciler.model.destinationrule import DestinationRuleSpec, Subset, TrafficPolicy
from reconciler.model.gateway import GatewaySpec, Server
from reconciler.model.hosts import exported_to, gateway_ref, host_matches, hosts_overlap, resolve_host
from reconciler.model.serviceentry import ServiceEntrySpec, WorkloadEntry
from reconciler.model.source import SourceInfo, format_path
from reconciler.model.virtualservice import (
    Destination,
    HTTPMatchRequest,
    HTTPRoute,
    HTTPRouteDestination,
    VirtualServiceSpec,
)

__all__ = [
    "Destination",
    "DestinationRuleSpec",
    "Duration",
    "GatewaySpec",
    "HTTPMatchRequest",
    "HTTPRoute",
    "HTTPRouteDestination",
    "Kind",
    "MeshConfig",
    "Metadata",
    "Percent",
    "PortSelector",
    "Resource",
    "Server",
    "ServiceEntrySpec",
    "SourceInfo",
    "StringMatch",
    "Subset",
    "TrafficPolicy",
    "VirtualServiceSpec",
    "WorkloadEntry",
    "exported_to",
    "format_path",
    "gateway_ref",
    "host_matches",
    "hosts_overlap",
    "resolve_host",
]
