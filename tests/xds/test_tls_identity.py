"""The rule that ties a client certificate to the node ids it may claim, and the identity allowlist (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.certs import issue_certificates
from reconciler.errors import XdsError
from reconciler.xds.identity import (
    PeerIdentity,
    SpiffeNode,
    allowed_by,
    node_refusal,
    parse_spiffe_node,
    peer_identity_from_pem,
    spiffe_node_uri,
)

GATEWAY = PeerIdentity(uris=("spiffe://cluster.local/ns/istio-system/node/ingress-1",))


def test_a_spiffe_node_uri_entitles_its_certificate_to_that_node_id_in_that_namespace() -> None:
    assert node_refusal(GATEWAY, node_id="ingress-1", namespace="istio-system", trust_domain=None) is None
    assert node_refusal(GATEWAY, node_id="ingress-1", namespace="istio-system", trust_domain="cluster.local") is None


def test_a_certificate_cannot_claim_another_proxys_node_id() -> None:
    refusal = node_refusal(GATEWAY, node_id="ingress-2", namespace="istio-system", trust_domain=None)
    assert refusal is not None
    assert "spiffe://TRUST_DOMAIN/ns/istio-system/node/ingress-2" in refusal
    assert "spiffe://cluster.local/ns/istio-system/node/ingress-1" in refusal


def test_a_certificate_cannot_claim_its_node_id_in_another_namespace() -> None:
    assert node_refusal(GATEWAY, node_id="ingress-1", namespace="default", trust_domain=None) is not None


def test_a_node_uri_from_another_trust_domain_is_refused_when_a_trust_domain_is_configured() -> None:
    assert node_refusal(GATEWAY, node_id="ingress-1", namespace="istio-system", trust_domain="prod.example") is not None


def test_a_dns_san_equal_to_the_node_id_entitles_it_in_any_namespace() -> None:
    identity = PeerIdentity(dns_names=("ingress-1",))
    assert node_refusal(identity, node_id="ingress-1", namespace="anything", trust_domain="td") is None
    assert node_refusal(identity, node_id="ingress-10", namespace="anything", trust_domain=None) is not None


def test_a_certificate_without_sans_may_claim_no_node_id() -> None:
    refusal = node_refusal(PeerIdentity(), node_id="ingress-1", namespace="default", trust_domain=None)
    assert refusal is not None
    assert "no URI or DNS SAN" in refusal


@pytest.mark.parametrize("node_id", ["sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local", "a/b", "50%"])
def test_any_node_id_round_trips_through_its_uri(node_id: str) -> None:
    uri = spiffe_node_uri(node_id, namespace="default", trust_domain="cluster.local")
    assert parse_spiffe_node(uri) == SpiffeNode(trust_domain="cluster.local", namespace="default", node_id=node_id)
    assert node_refusal(PeerIdentity(uris=(uri,)), node_id=node_id, namespace="default", trust_domain=None) is None


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://cluster.local/ns/default/sa/ingress",  # Istio's workload shape names no node
        "spiffe://cluster.local/ns/default/node/a/extra",
        "spiffe://cluster.local/ns//node/a",
        "spiffe:///ns/default/node/a",
        "https://cluster.local/ns/default/node/a",
        "spiffe://cluster.local/ns/default/node/a?x=1",
        "spiffe://[bad/ns/default/node/a",
    ],
)
def test_other_uris_name_no_node(uri: str) -> None:
    assert parse_spiffe_node(uri) is None


def test_a_node_id_with_a_slash_cannot_forge_a_uri_for_another_namespace() -> None:
    # Percent-encoding keeps "ns/x/node/y" one segment: the forged node id is not node "y" of namespace "x".
    uri = spiffe_node_uri("y", namespace="x", trust_domain="td")
    forged = PeerIdentity(uris=(spiffe_node_uri("evil/ns/x/node/y", namespace="default", trust_domain="td"),))
    assert uri not in forged.uris
    assert node_refusal(forged, node_id="y", namespace="x", trust_domain=None) is not None


def test_the_allowlist_matches_uri_and_dns_sans_with_wildcards() -> None:
    assert allowed_by(GATEWAY, ["spiffe://cluster.local/ns/istio-system/*"])
    assert not allowed_by(GATEWAY, ["spiffe://cluster.local/ns/default/*"])
    assert allowed_by(PeerIdentity(dns_names=("gw.mesh.example",)), ["*.mesh.example"])
    assert not allowed_by(PeerIdentity(dns_names=("gw.mesh.example",)), ["*.MESH.example"])
    assert not allowed_by(PeerIdentity(), ["*"])


def test_the_identity_is_read_from_a_certificates_sans(tmp_path: Path) -> None:
    issue_certificates(tmp_path, server_names=["xds.example", "127.0.0.1"], clients=["gw-1"], namespace="ns1")
    client = peer_identity_from_pem((tmp_path / "gw-1.crt").read_bytes())
    assert client == PeerIdentity(uris=("spiffe://cluster.local/ns/ns1/node/gw-1",))
    server = peer_identity_from_pem((tmp_path / "server.crt").read_bytes())
    assert server.dns_names == ("xds.example",)
    assert server.uris == ()


def test_a_peer_certificate_that_is_not_pem_is_an_xds_error() -> None:
    with pytest.raises(XdsError, match="cannot be read"):
        peer_identity_from_pem(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")


def test_describe_shortens_hostile_identities() -> None:
    identity = PeerIdentity(uris=tuple(f"spiffe://td/{'x' * 500}/{n}" for n in range(10)))
    text = identity.describe()
    assert len(text) < 400
    assert "(+7 more)" in text
