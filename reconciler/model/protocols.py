"""Istio's port protocols and the HTTP status codes it knows, as validation and translation read them. Pure."""

from __future__ import annotations

__all__ = ["HTTP2_PROTOCOLS", "HTTP_PROTOCOLS", "KNOWN_HTTP_STATUS_CODES", "PROTOCOLS", "TLS_PROTOCOLS"]

#: Port protocols Istio parses (``protocol.Parse``, case-insensitive); anything else is "unsupported".
PROTOCOLS = frozenset({"HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "REDIS", "MYSQL", "TCP", "TLS"})
#: Protocols whose traffic is HTTP once decoded, routed by the HTTP connection manager (Istio's ``IsHTTP``).
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
#: Protocols that need HTTP/2 towards the upstream.
HTTP2_PROTOCOLS = frozenset({"HTTP2", "GRPC", "GRPC-WEB"})
#: Protocols that carry TLS to a gateway (``IsTLS``): such servers need ``tls`` settings.
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})

#: The status codes Go's ``http.StatusText`` names: Istio treats exactly these ``retryOn`` parts as codes.
KNOWN_HTTP_STATUS_CODES = frozenset(
    {100, 101, 102, 103, *range(200, 209), 226, *range(300, 306), 307, 308, *range(400, 419)}
    | {421, 422, 423, 424, 425, 426, 428, 429, 431, 451, *range(500, 509), 510, 511}
)
