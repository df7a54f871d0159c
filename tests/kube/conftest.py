"""A real kube-apiserver (and etcd) for the whole session of tests/kube, and helpers to fill it.

The API server is built once (``make kube-apiserver``; the fixture builds it too when missing).
Where that is impossible here (no apt, no root, no network) the tests skip and say why; under
CI (``CI`` set) they fail instead: CI must run them. Every test gets its own namespace.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kube_cluster import KubeCluster, started_cluster

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
