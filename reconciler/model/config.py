"""Resources (kind + metadata + typed spec + source) and the whole loaded config."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from reconciler.model.destinationrule import DestinationRuleSpec
from reconciler.model.gateway import GatewaySpec
from reconciler.model.rolloutpolicy import RolloutPolicySpec
from reconciler.model.serviceentry import ServiceEntrySpec
from reconciler.model.source import SourceInfo
from reconciler.model.virtualservice import VirtualServiceSpec

__all__ = [
    "API_GROUP",
    "API_VERSIONS",
    "RECONCILER_API_GROUP",
    "RECONCILER_API_VERSIONS",
    "Kind",
    "MeshConfig",
    "Metadata",
    "Resource",
]

API_GROUP = "networking.istio.io"
#: Istio serves the same schema under all three versions.
API_VERSIONS = ("v1", "v1beta1", "v1alpha3")
#: reconciler's own kinds (RolloutPolicy) live in their own group, beside Istio's.
RECONCILER_API_GROUP = "reconciler.dev"
RECONCILER_API_VERSIONS = ("v1alpha1",)

SpecT = TypeVar("SpecT")


class Kind(StrEnum):
    """The kinds reconciler understands: Istio's networking kinds, and its own RolloutPolicy."""

    VIRTUAL_SERVICE = "VirtualService"
    DESTINATION_RULE = "DestinationRule"
    SERVICE_ENTRY = "ServiceEntry"
    GATEWAY = "Gateway"
    ROLLOUT_POLICY = "RolloutPolicy"

    @property
    def api_group(self) -> str:
        return RECONCILER_API_GROUP if self is Kind.ROLLOUT_POLICY else API_GROUP

    @property
    def api_versions(self) -> tuple[str, ...]:
        return RECONCILER_API_VERSIONS if self is Kind.ROLLOUT_POLICY else API_VERSIONS


@dataclass(frozen=True, slots=True)
class Metadata:
    """The parts of Kubernetes ``metadata`` that matter here."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Resource(Generic[SpecT]):
    """One Istio object: kind, apiVersion, metadata, typed spec and where it was written."""

    kind: Kind
    api_version: str
    metadata: Metadata
    spec: SpecT
    source: SourceInfo

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def ref(self) -> str:
        """``namespace/name``, as Istio's messages write it."""
        return f"{self.metadata.namespace}/{self.metadata.name}"


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Every valid resource of one revision, by kind, in load order."""

    virtual_services: tuple[Resource[VirtualServiceSpec], ...] = ()
    destination_rules: tuple[Resource[DestinationRuleSpec], ...] = ()
    service_entries: tuple[Resource[ServiceEntrySpec], ...] = ()
    gateways: tuple[Resource[GatewaySpec], ...] = ()
    rollout_policies: tuple[Resource[RolloutPolicySpec], ...] = ()

    def resources(self) -> Iterator[Resource[Any]]:
        """Every resource, kind by kind in :class:`Kind` order, each kind in load order."""
        for group in (
            self.virtual_services,
            self.destination_rules,
            self.service_entries,
            self.gateways,
            self.rollout_policies,
        ):
            yield from group

    @property
    def resource_count(self) -> int:
        return sum(1 for _ in self.resources())
