"""Gateway rules (Istio's ``ValidateGateway``).

The Gateway's name, its servers (unique port names, ``namespace/host`` entries, port
protocol) and each server's TLS settings against its protocol. Pure.
"""

from __future__ import annotations

from reconciler.model.gateway import GatewaySpec, Server, ServerTLSSettings
from reconciler.model.hosts import is_ip_address
from reconciler.model.protocols import HTTP_PROTOCOLS, PROTOCOLS, TLS_PROTOCOLS
from reconciler.model.text import quote
from reconciler.validate.rules.checker import Checker, dns1123_label_error, wildcard_domain_error

__all__ = ["check_gateway"]


def check_gateway(check: Checker, spec: GatewaySpec) -> None:
    if dns1123_label_error(check.resource.name):
        # Gateway names end up in route names as ns/name; dots would make them ambiguous.
        check.error(
            "metadata.name", f"invalid gateway name: {quote(check.resource.name)}", hint="no dots in Gateway names"
        )
    if not spec.servers:
        check.error("spec.servers", "gateway must have at least one server", hint="add a server with port and hosts")
    port_names: dict[str, int] = {}
    for index, server in enumerate(spec.servers):
        path = f"spec.servers[{index}]"
        _check_server(check, server, path)
        name = server.port.name
        if name in port_names:
            check.error(
                f"{path}.port.name",
                f"port names in servers must be unique: duplicate name {name}",
                hint=f"spec.servers[{port_names[name]}] already uses {quote(name)}",
            )
        port_names.setdefault(name, index)


def _check_server(check: Checker, server: Server, path: str) -> None:
    if not server.hosts:
        check.error(f"{path}.hosts", "server config must contain at least one host", hint='e.g. `hosts: ["*"]`')
    for index, entry in enumerate(server.hosts):
        _check_gateway_host(check, entry, f"{path}.hosts[{index}]")
    port_path = f"{path}.port"
    protocol = server.port.protocol.upper()
    protocol_ok = protocol in PROTOCOLS
    if not protocol_ok:
        check.error(
            f"{port_path}.protocol",
            f"invalid protocol {quote(server.port.protocol)}",
            hint="use one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, REDIS, MYSQL, TCP, TLS",
        )
    if server.port.target_port is not None:
        check.error(f"{port_path}.targetPort", "targetPort has no impact on Gateways", hint="remove targetPort")
    if not server.port.name:
        check.error(f"{port_path}.name", "port name must be set")
    if server.tls is not None:
        _check_server_tls(check, server.tls, f"{path}.tls")
    if not protocol_ok:
        return
    tls = server.tls
    if protocol in TLS_PROTOCOLS and tls is None:
        check.error(
            path,
            "server must have TLS settings for HTTPS/TLS protocols",
            hint="add `tls: {mode: SIMPLE, credentialName: ...}` (or PASSTHROUGH for TLS)",
        )
    elif protocol not in TLS_PROTOCOLS and tls is not None:
        if protocol in HTTP_PROTOCOLS:
            # Plain-text HTTP servers may carry only httpsRedirect.
            if (
                tls.server_certificate
                or tls.private_key
                or tls.ca_certificates
                or (tls.mode not in (None, "PASSTHROUGH"))
            ):
                check.error(f"{path}.tls", "server cannot have TLS settings for plain text HTTP ports")
        else:
            check.error(f"{path}.tls", "server cannot have TLS settings for non HTTPS/TLS ports")
    if tls is not None and tls.https_redirect and protocol not in HTTP_PROTOCOLS:
        check.warning(f"{path}.tls.httpsRedirect", "tls.httpsRedirect should only be used with http servers")


def _check_gateway_host(check: Checker, entry: str, path: str) -> None:
    """A server host: ``host`` (old form), or ``namespace/host`` with namespace ``*``, ``.`` or a name."""
    namespace, slash, host = entry.partition("/")
    if not slash:
        problem = wildcard_domain_error(entry)
        if problem:
            check.error(path, f"invalid host: {problem}")
        return
    if not namespace or not host:
        check.error(path, "config namespace and dnsName in host entry cannot be empty", hint="write ns/host, e.g. */*")
        return
    if namespace not in ("*", ".") and dns1123_label_error(namespace):
        check.error(path, f"invalid namespace value {quote(namespace)} in gateway")
    if host != "*" and "." not in host:
        check.error(
            path,
            "short names (non FQDN) are not allowed",
            hint=f"write the full name, e.g. {namespace}/{host}.example.com",
        )
    problem = wildcard_domain_error(host)
    if problem and not is_ip_address(host):
        check.error(path, f"invalid host: {problem}")


def _check_server_tls(check: Checker, tls: ServerTLSSettings, path: str) -> None:
    """Istio's ``validateTLSOptions`` for a gateway server."""
    if tls.mode == "ISTIO_MUTUAL":
        for field, value in (
            ("serverCertificate", tls.server_certificate),
            ("privateKey", tls.private_key),
            ("caCertificates", tls.ca_certificates),
            ("credentialName", tls.credential_name),
        ):
            if value:
                check.error(f"{path}.{field}", f"ISTIO_MUTUAL TLS cannot have associated {field}")
        return
    has_files = bool(tls.server_certificate and tls.private_key)
    if tls.mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and (
        tls.server_certificate or tls.private_key or tls.ca_certificates or tls.credential_name
    ):
        check.warning(path, f"{tls.mode} mode does not use certificates, they will be ignored")
    if has_files and tls.credential_name:
        check.error(path, "only one of credentialName, serverCertificate/privateKey should be specified")
    if tls.mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"):
        if tls.credential_name:
            return  # the credential holds certificate, key and CA
        prefix = "SIMPLE TLS" if tls.mode == "SIMPLE" else "MUTUAL TLS"
        if tls.mode != "SIMPLE" and not tls.ca_certificates:
            check.error(path, f"{prefix} requires a client CA bundle", hint="set caCertificates or credentialName")
        if not tls.server_certificate:
            check.error(
                path,
                f"{prefix} requires a server certificate",
                hint="set credentialName (a secret) or serverCertificate",
            )
        if not tls.private_key:
            check.error(path, f"{prefix} requires a private key", hint="set credentialName (a secret) or privateKey")
