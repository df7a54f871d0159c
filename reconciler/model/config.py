"""Resources (kind + metadata + typed spec + source) and the whole loaded config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Generic, TypeVar

from reconciler.model.destinationrule import DestinationRuleSpec
from reconciler.model.gateway import GatewaySpec
from reconciler.model.serviceentry import ServiceEntrySpec
from reconciler.model.source import SourceInfo
from reconciler.model.virtualservice import VirtualServiceSpec

__all__ = ["API_GROUP", "API_VERSIONS", "Kind", "MeshConfig", "Metadata", "Resource"]

API_GROUP = "networking.istio.io"
#: Istio serves the same schema under all three versions.
API_VERSIONS = ("v1", "v1beta1", "v1alpha3")

SpecT = TypeVar("SpecT")


class Kind(StrEnum):
    """The Istio kinds reconciler understands."""

    VIRTUAL_SERVICE = "VirtualService"
    DESTINATION_RULE = "DestinationRule"
    SERVICE_ENTRY = "ServiceEntry"
    GATEWAY = "Gateway"


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

    @property
    def resource_count(self) -> int:
        return len(self.virtual_services) + len(self.destination_rules) + len(self.service_entries) + len(self.gateways)
