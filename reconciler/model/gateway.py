"""Gateway: a load balancer at the mesh edge: which ports and hosts it exposes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from reconciler.model.common import Port

__all__ = ["GatewayPort", "GatewaySpec", "Server", "ServerTLSSettings"]

ServerTLSMode = Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"]
TLSVersion = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]


@dataclass(frozen=True, slots=True)
class GatewayPort:
    """The port a server listens on and its protocol (HTTP, HTTPS, GRPC, HTTP2, TCP, TLS...)."""

    number: Port
    protocol: str
    name: str
    target_port: Port | None = None


@dataclass(frozen=True, slots=True)
class ServerTLSSettings:
    """TLS for a gateway server (modelled and validated; termination is not translated yet)."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset(
        {
            "caCertCredentialName",
            "caCrl",
            "cipherSuites",
            "credentialNames",
            "insecureSkipVerify",
            "tlsCertificates",
            "verifyCertificateHash",
            "verifyCertificateSpki",
        }
    )

    https_redirect: bool = False
    mode: ServerTLSMode | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    min_protocol_version: TLSVersion | None = None
    max_protocol_version: TLSVersion | None = None


@dataclass(frozen=True, slots=True)
class Server:
    """One listening port of a gateway and the hosts it serves there."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"bind", "defaultEndpoint"})

    port: GatewayPort
    hosts: tuple[str, ...]
    name: str | None = None
    tls: ServerTLSSettings | None = None


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    """``spec`` of a Gateway."""

    servers: tuple[Server, ...] = ()
    selector: Mapping[str, str] | None = None
