"""ServiceEntry rules (Istio's ``ValidateServiceEntry``).

Hosts, ports (unique names and numbers, protocols), endpoints against the resolution mode
(their addresses, ports and labels), the workload selector and ``exportTo``. Stricter than
Istio: a ``STATIC`` ServiceEntry needs endpoints or a workload selector, as this product
has no other source of them (no Kubernetes yet). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.model.hosts import is_ip_address
from reconciler.model.protocols import HTTP_PROTOCOLS, PROTOCOLS, TLS_PROTOCOLS
from reconciler.model.serviceentry import ServiceEntrySpec
from reconciler.model.source import child_path
from reconciler.model.text import quote
from reconciler.validate.rules.checker import Checker, dns1123_label_error, wildcard_domain_error

__all__ = ["check_service_entry"]


def check_service_entry(check: Checker, spec: ServiceEntrySpec) -> None:
    if spec.workload_selector is not None:
        check.labels(spec.workload_selector.labels, "spec.workloadSelector.labels")
        if not spec.workload_selector.labels:
            check.warning(
                "spec.workloadSelector", "workload selector without labels selects every workload in the namespace"
            )
        if spec.endpoints:
            check.error("spec", "only one of workloadSelector or endpoints is allowed in a ServiceEntry")
    if not spec.hosts:
        check.error(
            "spec.hosts", "service entry must have at least one host", hint="list the hosts, e.g. api.example.com"
        )
    for index, host in enumerate(spec.hosts):
        path = f"spec.hosts[{index}]"
        if host == "*":
            check.error(
                path, "invalid host *", hint="a ServiceEntry cannot capture every host; name them or use *.domain"
            )
            continue
        problem = wildcard_domain_error(host)
        if problem:
            check.error(path, f"invalid host: {problem}")
        elif host.startswith("*") and not host.startswith("*."):
            check.warning(
                path,
                f"partial wildcard {quote(host)} not allowed",
                hint="wildcards must be a whole first label: *.example.com",
            )
    names: dict[str, int] = {}
    numbers: dict[int, int] = {}
    service_port_names = frozenset(port.name for port in spec.ports)
    for index, port in enumerate(spec.ports):
        path = f"spec.ports[{index}]"
        if port.name in names:
            check.error(f"{path}.name", f"service entry port name {quote(port.name)} already defined")
        names.setdefault(port.name, index)
        if port.number in numbers:
            check.error(f"{path}.number", f"service entry port {port.number} already defined")
        numbers.setdefault(port.number, index)
        problem = dns1123_label_error(port.name)
        if problem:
            check.error(f"{path}.name", f"invalid port name: {problem}")
        if port.protocol and port.protocol.upper() not in PROTOCOLS:
            check.error(
                f"{path}.protocol",
                f"unsupported protocol: {port.protocol}",
                hint="use one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, REDIS, MYSQL, TCP, TLS",
            )
    resolution = spec.resolution or "NONE"
    if resolution == "NONE" and spec.endpoints:
        check.error(
            "spec.endpoints",
            "no endpoints should be provided for resolution type none",
            hint="use resolution: STATIC or DNS",
        )
    if resolution == "STATIC":
        if not spec.endpoints and spec.workload_selector is None:
            check.error(
                "spec.resolution",
                "resolution STATIC needs endpoints",
                hint="list the endpoints' IP addresses under `endpoints:` (or use resolution: DNS)",
            )
        for index, endpoint in enumerate(spec.endpoints):
            path = f"spec.endpoints[{index}]"
            address = endpoint.address or ""
            if not address:
                check.error(path, "address is required")
            elif address.startswith("unix://"):
                if not address.startswith("unix:///") and not address.startswith("unix://@"):
                    check.error(f"{path}.address", f"{address[7:]} is not an absolute path to a file")
            elif not is_ip_address(address):
                check.error(
                    f"{path}.address",
                    f"endpoint address {quote(address)} is not a valid IP address",
                    hint="STATIC endpoints are IP addresses; use resolution: DNS for host names",
                )
            _check_endpoint(check, endpoint.ports, endpoint.labels, service_port_names, path)
    if resolution in ("DNS", "DNS_ROUND_ROBIN"):
        if not spec.endpoints:
            for index, host in enumerate(spec.hosts):
                if host != "*" and wildcard_domain_error(host, wildcard=False):
                    check.error(
                        f"spec.hosts[{index}]",
                        f"hosts must be FQDN if no endpoints are provided for resolution mode {resolution}",
                        hint="a wildcard host cannot be resolved by DNS: add endpoints or use resolution: NONE",
                    )
        if resolution == "DNS_ROUND_ROBIN" and len(spec.endpoints) > 1:
            check.error("spec.endpoints", f"there must only be 0 or 1 endpoint for resolution mode {resolution}")
        for index, endpoint in enumerate(spec.endpoints):
            path = f"spec.endpoints[{index}]"
            address = endpoint.address or ""
            if not is_ip_address(address) and wildcard_domain_error(address, wildcard=False):
                check.error(
                    f"{path}.address", f"endpoint address {quote(address)} is not a valid FQDN or an IP address"
                )
            _check_endpoint(check, endpoint.ports, endpoint.labels, service_port_names, path)
    if resolution != "NONE" and len(spec.hosts) > 1:
        for index, port in enumerate(spec.ports):
            protocol = (port.protocol or "").upper()
            if protocol not in HTTP_PROTOCOLS and protocol not in TLS_PROTOCOLS:
                check.error(
                    f"spec.ports[{index}].protocol",
                    "multiple hosts provided with non-HTTP, non-TLS ports",
                    hint="plain TCP cannot tell the hosts apart: split the ServiceEntry or use resolution: NONE",
                )
                break
    check.export_to(spec.export_to, "spec.exportTo", allow_none=True)


def _check_endpoint(
    check: Checker,
    ports: Mapping[str, int] | None,
    labels: Mapping[str, str] | None,
    service_port_names: frozenset[str],
    path: str,
) -> None:
    for name, number in (ports or {}).items():
        if name not in service_port_names:
            check.error(
                child_path(f"{path}.ports", name),
                f"endpoint port {number} is not defined by the service entry",
                hint="endpoint ports are keyed by service port name: "
                + (", ".join(sorted(service_port_names)) or "(none)"),
            )
    check.labels(labels, f"{path}.labels")
