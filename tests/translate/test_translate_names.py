"""Istio's names and the spellings of a host: short spellings lead back to the host they spell."""

from __future__ import annotations

import pytest

from reconciler.translate.names import host_domains, related_hosts, spelled_host


@pytest.mark.parametrize("proxy_namespace", ["default", "other"])
@pytest.mark.parametrize(
    "host", ["reviews.default.svc.cluster.local", "reviews.other.svc.cluster.local", "api.example.com", "db.mesh"]
)
def test_every_short_spelling_of_a_host_spells_that_host(host: str, proxy_namespace: str) -> None:
    forms = host_domains(host, proxy_namespace=proxy_namespace)

    assert forms[0] == host
    for form in forms[1:]:
        assert spelled_host(form, proxy_namespace=proxy_namespace) == host
        assert form in related_hosts(host, proxy_namespace=proxy_namespace)
        assert host in related_hosts(form, proxy_namespace=proxy_namespace)


def test_a_short_name_spells_the_service_of_the_proxys_namespace_and_a_wildcard_spells_none() -> None:
    assert spelled_host("reviews", proxy_namespace="shop") == "reviews.shop.svc.cluster.local"
    assert spelled_host("reviews.default", proxy_namespace="shop") == "reviews.default.svc.cluster.local"
    assert spelled_host("reviews.default.svc", proxy_namespace="shop") == "reviews.default.svc.cluster.local"
    assert spelled_host("api.example.com", proxy_namespace="shop") is None
    assert spelled_host("*.example", proxy_namespace="shop") is None
    assert related_hosts("api.example.com", proxy_namespace="shop") == set()
