"""Who a proxy is, by its client certificate, and which node ids that certificate may claim.

With mutual TLS on the xDS port, every proxy presents a certificate the configured CA signed.
Its subject alternative names are its identity (the subject's CN is ignored, as by Istio and
SPIFFE). One rule ties a certificate to the node ids it may use on an ADS or metrics stream:

* a URI SAN ``spiffe://TRUST_DOMAIN/ns/NAMESPACE/node/NODE_ID`` names exactly one proxy: node id
  ``NODE_ID`` announcing namespace ``NAMESPACE`` in its bootstrap metadata (``TRUST_DOMAIN`` must be
  the configured trust domain, when one is configured). The node id is percent-encoded in the URI
  (:func:`spiffe_node_uri`), so any node id, Istio's ``sidecar~10.0.0.1~pod.ns~...`` included, fits;
* a DNS SAN equal to the node id names that proxy in any namespace.

So one proxy cannot claim another's node id (and take over its row in status and its config).
The optional allowlist is shell-style patterns (``*`` matches anything, ``/`` included) matched
against each URI and DNS SAN: ``spiffe://cluster.local/ns/istio-system/*`` admits the gateways
of one namespace. Everything here is a pure function of its arguments; the gRPC edge
(:mod:`reconciler.xds.tls`) reads the certificate and refuses the stream.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote as percent_encode
from urllib.parse import unquote, urlsplit

from cryptography import x509

from reconciler.errors import XdsError
from reconciler.model.text import quote

__all__ = [
    "SPIFFE_SCHEME",
    "PeerIdentity",
    "SpiffeNode",
    "allowed_by",
    "node_refusal",
    "parse_spiffe_node",
    "peer_identity_from_pem",
    "spiffe_node_uri",
]

SPIFFE_SCHEME = "spiffe"
#: SANs a certificate may carry before the rest are ignored: a hostile certificate cannot make every check slow.
_MAX_SANS = 64


@dataclass(frozen=True, slots=True)
class SpiffeNode:
    """The parts of a ``spiffe://TRUST_DOMAIN/ns/NAMESPACE/node/NODE_ID`` URI."""

    trust_domain: str
    namespace: str
    node_id: str


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """A client certificate's subject alternative names: its URIs and DNS names."""

    uris: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.uris, *self.dns_names)

    def describe(self) -> str:
        """The identity for a log line or a refusal: its first names, each shortened."""
        shown = [quote(name) for name in self.names[:3]]
        more = len(self.names) - len(shown)
        return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "") if shown else "no URI or DNS SAN"


def spiffe_node_uri(node_id: str, *, namespace: str, trust_domain: str) -> str:
    """The URI SAN that entitles a certificate to ``node_id`` in ``namespace``."""
    parts = (percent_encode(part, safe="") for part in (namespace, node_id))
    return f"{SPIFFE_SCHEME}://{trust_domain}/ns/{next(parts)}/node/{next(parts)}"


def parse_spiffe_node(uri: str) -> SpiffeNode | None:
    """The trust domain, namespace and node id of a node URI; ``None`` for any other URI."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    segments = parts.path.split("/")
    if (
        parts.scheme != SPIFFE_SCHEME
        or not parts.netloc
        or parts.query
        or parts.fragment
        or len(segments) != 5
        or segments[0]
        or segments[1] != "ns"
        or segments[3] != "node"
        or not segments[2]
        or not segments[4]
    ):
        return None
    return SpiffeNode(trust_domain=parts.netloc, namespace=unquote(segments[2]), node_id=unquote(segments[4]))


def allowed_by(identity: PeerIdentity, patterns: Iterable[str]) -> bool:
    """Whether any of the identity's names matches any pattern (case-sensitive, ``*`` wildcards)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in identity.names)


def node_refusal(identity: PeerIdentity, *, node_id: str, namespace: str, trust_domain: str | None) -> str | None:
    """Why ``identity`` may not claim ``node_id`` in ``namespace``; ``None`` when it may."""
    if node_id in identity.dns_names:
        return None
    for uri in identity.uris:
        node = parse_spiffe_node(uri)
        if (
            node is not None
            and node.node_id == node_id
            and node.namespace == namespace
            and (trust_domain is None or node.trust_domain == trust_domain)
        ):
            return None
    wanted = spiffe_node_uri(node_id, namespace=namespace, trust_domain=trust_domain or "TRUST_DOMAIN")
    return (
        f"node id {quote(node_id)} (namespace {quote(namespace)}) is not this certificate's: it needs the URI SAN "
        f"{quote(wanted)} or the DNS SAN {quote(node_id)}, and has {identity.describe()}"
    )


def peer_identity_from_pem(pem: bytes) -> PeerIdentity:
    """The URI and DNS SANs of the first certificate in ``pem``; XdsError when it is not a certificate."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise XdsError(f"the peer certificate cannot be read: {exc}") from exc
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return PeerIdentity()
    except ValueError as exc:  # a malformed extension
        raise XdsError(f"the peer certificate's SANs cannot be read: {exc}") from exc
    uris = tuple(sans.get_values_for_type(x509.UniformResourceIdentifier))[:_MAX_SANS]
    dns_names = tuple(sans.get_values_for_type(x509.DNSName))[:_MAX_SANS]
    return PeerIdentity(uris=uris, dns_names=dns_names)
