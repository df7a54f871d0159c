"""Clusters and load assignments spliced from bytes are the bytes protobuf writes, and are checked as if walked.

EDS clusters are a template's bytes with the name written in; load assignments are their name and
their endpoints' bytes. Random DestinationRule policies (TLS, outlier detection, connection pools,
load balancers, per subset), resolutions, unix sockets and endpoint weights must translate exactly
as when every cluster is built as a message (same bytes, versions, findings; the same rejection
when Envoy would refuse a value), and the Envoy-constraint check must report exactly what a walk
of every resource reports.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from translate_support import GATEWAY, SIDECAR

from reconciler.errors import TranslationError
from reconciler.loader import load_files
from reconciler.model.config import MeshConfig
from reconciler.translate import Translation, translate
from reconciler.translate import clusters as clusters_module
from reconciler.translate.envoy_check import PassCache, envoy_findings
from reconciler.translate.protos import varint
from reconciler.translate.registry import Endpoint, ServicePort
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, Resource, Snapshot
from reconciler.validate.findings import Finding

# The second's cluster names pass 127 bytes (a two-byte length prefix).
_HOSTS = ("reviews.default.svc.cluster.local", "a" * 60 + "." + "b" * 60 + ".example.com", "ratings.svc.cluster.local")
durations = st.sampled_from(["1ms", "250ms", "5s", "30s", "1h", "9223372035s"])
counts = st.one_of(st.sampled_from([1, 100, 2**31 - 1, 2**32 - 1]), st.integers(1, 10_000))


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if draw(st.booleans()):
        policy["loadBalancer"] = {"simple": draw(st.sampled_from(["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"]))}
    if draw(st.booleans()):
        policy["connectionPool"] = {
            "tcp": {"maxConnections": draw(counts), "connectTimeout": draw(durations)},
            "http": {"http1MaxPendingRequests": draw(counts), "maxRetries": draw(counts)},
        }
    if draw(st.booleans()):
        policy["outlierDetection"] = {
            "consecutive5xxErrors": draw(st.integers(0, 100)),
            "interval": draw(durations),
            "baseEjectionTime": draw(durations),
            "maxEjectionPercent": draw(st.integers(0, 100)),
        }
    if draw(st.booleans()):
        policy["tls"] = {"mode": draw(st.sampled_from(["DISABLE", "SIMPLE", "ISTIO_MUTUAL"]))}
    return policy


ip_addresses = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
addresses = st.one_of(
    ip_addresses,
    st.from_regex(r"\A/var/run/[a-z]{1,20}\.sock\Z").map(lambda path: f"unix://{path}"),
)


@st.composite
def meshes(draw: st.DrawFn) -> str:
    docs = []
    for index, host in enumerate(draw(st.lists(st.sampled_from(_HOSTS), min_size=1, max_size=3, unique=True))):
        resolution = draw(st.sampled_from(["STATIC", "STATIC", "DNS", "NONE"]))
        endpoints = []
        # DNS resolves host names and IPs only.
        choices = addresses if resolution == "STATIC" else ip_addresses
        listed = st.lists(choices, min_size=1, max_size=4, unique=True) if resolution != "NONE" else st.just([])
        for address in draw(listed):
            endpoint: dict[str, Any] = {"address": address, "labels": {"version": draw(st.sampled_from(["v1", "v2"]))}}
            weight = draw(st.one_of(st.none(), st.integers(1, 2**32 - 1)))
            if weight is not None:
                endpoint["weight"] = weight
            endpoints.append(endpoint)
        protocol = draw(st.sampled_from(["HTTP", "GRPC", "HTTP2"]))
        entry = {
            "hosts": [host],
            "ports": [{"number": 9080 + index, "name": "http", "protocol": protocol}],
            "resolution": resolution,
            "endpoints": endpoints,
        }
        docs.append(_document("ServiceEntry", f"se{index}", entry))
        if draw(st.booleans()):
            subsets = [
                {"name": version, "labels": {"version": version}} | _policy(draw(policies()))
                for version in ("v1", "v2")
                if any(endpoint["labels"]["version"] == version for endpoint in endpoints)
            ]
            docs.append(_document("DestinationRule", f"dr{index}", {"host": host} | _policy(draw(policies()))))
            docs[-1]["spec"]["subsets"] = subsets
    return yaml.safe_dump_all(docs)


def _policy(policy: dict[str, Any]) -> dict[str, Any]:
    """A ``trafficPolicy`` entry, or none (an empty one is invalid)."""
    return {"trafficPolicy": policy} if policy else {}


def _document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def _outcome(config: MeshConfig, *, gateway: bool) -> Translation | tuple[Finding, ...]:
    try:
        return translate(config, GATEWAY if gateway else SIDECAR)
    except TranslationError as error:
        return tuple(error.findings)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mesh=meshes(), gateway=st.booleans())
def test_spliced_clusters_and_assignments_translate_as_clusters_built_whole(mesh: str, gateway: bool) -> None:
    loaded = load_files({"mesh.yaml": mesh}, default_namespace="default")
    config = loaded.config
    spliced = _outcome(config, gateway=gateway)
    with pytest.MonkeyPatch.context() as patched:
        # No template is spliced: every cluster is a copy of its template, named, and serialized whole.
        patched.setattr(clusters_module._EdsSplicer, "of", classmethod(lambda cls, template: None))
        whole = _outcome(config, gateway=gateway)

    assert spliced == whole
    if isinstance(spliced, Translation):
        assert isinstance(whole, Translation)
        for type_url in (CLUSTER, ENDPOINT):
            for name, item in spliced.snapshot.sets[type_url].items.items():
                # The bytes are protobuf's own serialization of the message they hold.
                assert Resource.of(type_url, item.message) == item
                assert item.version == whole.snapshot.sets[type_url].items[name].version


ports = st.builds(
    ServicePort,
    number=st.integers(0, 65535),
    name=st.just("http"),
    protocol=st.just("HTTP"),
    target_port=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    index=st.just(0),
)


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(min_size=1, max_size=300),
    endpoints=st.lists(
        st.builds(
            Endpoint,
            address=st.one_of(addresses, st.just(""), st.just("unix://"), st.text(max_size=200)),
            weight=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
        ),
        max_size=5,
    ),
    port=ports,
)
def test_a_spliced_assignment_is_the_assignment_protobuf_serializes(
    name: str, endpoints: list[Endpoint], port: ServicePort
) -> None:
    lb_endpoints = [clusters_module._lb_endpoint(endpoint, port) for endpoint in endpoints]
    spliced = clusters_module._spliced_assignment(
        name, tuple(clusters_module._lb_endpoint_bytes(endpoint, port) for endpoint in endpoints)
    )

    built = Resource.of(ENDPOINT, clusters_module._assignment(name, lb_endpoints))
    assert spliced == built
    assert spliced.message == built.message


@settings(max_examples=100, deadline=None)
@given(names=st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=5, unique=True), policy=policies())
def test_a_spliced_cluster_is_the_cluster_protobuf_serializes(names: list[str], policy: dict[str, Any]) -> None:
    text = yaml.safe_dump_all(
        [
            _document(
                "ServiceEntry",
                "reviews",
                {
                    "hosts": [_HOSTS[0]],
                    "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
                    "resolution": "NONE",
                },
            ),
            _document("DestinationRule", "reviews", {"host": _HOSTS[0]} | _policy(policy)),
        ]
    )
    snapshot = translate(load_files({"mesh.yaml": text}, default_namespace="default").config, SIDECAR).snapshot
    (template,) = snapshot.resources(CLUSTER).values()
    assert isinstance(template, cluster_pb2.Cluster)
    template.ClearField("name")
    template.eds_cluster_config.ClearField("service_name")
    splicer = clusters_module._EdsSplicer.of(template)
    assert splicer is not None
    for name in names:
        whole = cluster_pb2.Cluster()
        whole.CopyFrom(template)
        whole.name = whole.eds_cluster_config.service_name = name
        assert splicer.resource(name) == Resource.of(CLUSTER, whole)


def _part(*, port: int = 80, weight: int | None = None, pipe: str | None = None) -> bytes:
    address = (
        address_pb2.Address(pipe=address_pb2.Pipe(path=pipe))
        if pipe is not None
        else address_pb2.Address(socket_address=address_pb2.SocketAddress(address="10.0.0.1", port_value=port))
    )
    lb = endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(address=address))
    if weight is not None:
        lb.load_balancing_weight.value = weight
    data = lb.SerializeToString(deterministic=True)
    return b"\x12" + varint(len(data)) + data  # an item of lb_endpoints


def _findings(snapshot: Snapshot, *, passed: PassCache | None) -> list[tuple[str, str]]:
    return [
        (finding.message, finding.path) for finding in envoy_findings(snapshot, locate=lambda *_: None, passed=passed)
    ]


def _whole(snapshot: Snapshot) -> Snapshot:
    """The same snapshot with every resource built from its message (nothing known of how it was made)."""
    return Snapshot.build(
        clusters=[item.message for item in snapshot.sets[CLUSTER].items.values()],
        endpoints=[item.message for item in snapshot.sets[ENDPOINT].items.values()],
    )


@pytest.mark.parametrize("with_cache", [False, True])
def test_spliced_resources_envoy_would_reject_are_reported_as_a_walk_of_each_reports(with_cache: bool) -> None:
    good = cluster_pb2.Cluster(type=cluster_pb2.Cluster.EDS)
    good.eds_cluster_config.eds_config.ads.SetInParent()
    broken = cluster_pb2.Cluster()
    broken.CopyFrom(good)
    broken.lb_policy = 77  # not a defined LbPolicy: Envoy refuses it
    good_splicer, broken_splicer = clusters_module._EdsSplicer.of(good), clusters_module._EdsSplicer.of(broken)
    assert good_splicer is not None
    assert broken_splicer is not None
    fine, too_high, zero = _part(), _part(port=70000), _part(weight=0)
    empty_pipe = _part(pipe="")
    names = [f"outbound|80|v{index}|reviews" for index in range(4)]
    snapshot = Snapshot.build(
        clusters=[
            *(good_splicer.resource(name) for name in names),
            *(broken_splicer.resource(f"{name}.broken") for name in names),
        ],
        endpoints=[
            clusters_module._spliced_assignment(names[0], (fine,)),
            # A good part of each shape first: the bad ones after are caught by their values alone.
            clusters_module._spliced_assignment(names[1], (fine, _part(weight=5), _part(pipe="/a.sock"), too_high)),
            clusters_module._spliced_assignment(names[2], (zero, fine, empty_pipe)),
            clusters_module._spliced_assignment(names[3], ()),
            *(clusters_module._spliced_assignment(f"{name}.broken", (fine,)) for name in names),
        ],
    )

    found = _findings(snapshot, passed=PassCache() if with_cache else None)

    assert found == _findings(_whole(snapshot), passed=None)
    # Each broken cluster's policy; in the assignments, the port, the weight and the empty pipe.
    assert len(found) == 4 + 3


def test_a_check_with_a_pass_cache_remembers_spliced_resources_that_passed_by_construction() -> None:
    good = cluster_pb2.Cluster(type=cluster_pb2.Cluster.EDS)
    good.eds_cluster_config.eds_config.ads.SetInParent()
    splicer = clusters_module._EdsSplicer.of(good)
    assert splicer is not None
    names = [f"outbound|80||host{index}" for index in range(3)]
    snapshot = Snapshot.build(
        clusters=[splicer.resource(name) for name in names],
        endpoints=[
            clusters_module._spliced_assignment(name, (_part(port=index + 1),)) for index, name in enumerate(names)
        ],
    )
    passed = PassCache()

    assert envoy_findings(snapshot, locate=lambda *_: None, passed=passed) == []

    assert all(
        passed.known(type_url, item.version)
        for type_url in (CLUSTER, ENDPOINT)
        for item in snapshot.sets[type_url].items.values()
    )
