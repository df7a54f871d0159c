"""A real kube-apiserver (and etcd) for the whole session of tests/kube, and helpers to fill it.

The API server is built once (``make kube-apiserver``; the fixture builds it too when missing).
Where that is impossible here (no apt, no root, no network) the tests skip and say why; under
CI (``CI`` set) they fail instead: CI must run them. Every test gets its own namespace.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from istio_crds import crd_documents
from kube_cluster import KubeCluster, started_cluster

#: Istio's networking API, as the tests read it.
ISTIO_GROUP = "/apis/networking.istio.io/v1"
#: CRDs are established within a second; this is headroom for a loaded machine.
ESTABLISHED_SECONDS = 60.0

# One API server for every test here: they share one xdist worker (`make unit` runs --dist loadgroup).
pytestmark = [pytest.mark.xdist_group("kube")]


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeCluster]:
    """etcd and kube-apiserver on 127.0.0.1, ready; stopped (the API server first) after the session."""
    cluster = started_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def namespace(kube: KubeCluster) -> Iterator[str]:
    """A fresh namespace, deleted after the test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture(scope="session")
def istio(kube: KubeCluster) -> KubeCluster:
    """The cluster with Istio's networking CRDs installed and established."""
    for crd in crd_documents():
        try:
            kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        except Exception as error:  # already there from an earlier module of the session
            if getattr(error, "code", None) != 409:
                raise
    deadline = time.monotonic() + ESTABLISHED_SECONDS
    while time.monotonic() < deadline:
        try:
            served = {r["name"] for r in kube.request("GET", ISTIO_GROUP)["resources"]}
        except Exception:
            served = set()
        if {"virtualservices", "destinationrules", "serviceentries", "gateways"} <= served:
            return kube
        time.sleep(0.2)
    raise AssertionError("Istio's CRDs were not established")
