"""ServiceEntry: services and their endpoints that the mesh should know about."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from reconciler.model.common import Port

__all__ = ["ServiceEntrySpec", "ServicePort", "WorkloadEntry"]

Location = Literal["MESH_EXTERNAL", "MESH_INTERNAL"]
Resolution = Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"]


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A port the service exposes; ``protocol`` decides HTTP vs TCP handling."""

    number: Port
    name: str
    protocol: str | None = None
    target_port: Port | None = None


@dataclass(frozen=True, slots=True)
class WorkloadEntry:
    """One endpoint of a ServiceEntry: an address, per-port overrides and labels for subsets."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"network", "locality", "serviceAccount"})

    address: str | None = None
    ports: Mapping[str, Port] | None = None
    labels: Mapping[str, str] | None = None
    weight: int | None = None


@dataclass(frozen=True, slots=True)
class WorkloadSelectorLabels:
    """Selects WorkloadEntries/pods as endpoints (recognised; not acted on)."""

    labels: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ServiceEntrySpec:
    """``spec`` of a ServiceEntry."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"subjectAltNames", "addresses"})

    hosts: tuple[str, ...]
    ports: tuple[ServicePort, ...] = ()
    location: Location | None = None
    resolution: Resolution | None = None
    endpoints: tuple[WorkloadEntry, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: WorkloadSelectorLabels | None = None
