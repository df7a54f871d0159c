"""Reading Services, EndpointSlices and Pods from the API's JSON, and the registry they make (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.kube.client import preferred_version
from reconciler.kube.objects import (
    MAX_ITEMS,
    PodLabels,
    cluster_registry,
    parse_endpoint_slice,
    parse_pod,
    parse_service,
)
from reconciler.model.config import MeshConfig
from reconciler.translate import Resolution, build_registry


def svc(ports: list[Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": "web"}, "spec": {"ports": ports, **spec}}


def slice_of(endpoints: list[Any], *, ports: Any = None, address_type: str = "IPv4") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": "web-a", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": address_type,
        "ports": ports if ports is not None else [{"name": "http", "port": 8080}],
        "endpoints": endpoints,
    }


def test_a_service_port_takes_its_protocol_from_app_protocol_then_the_port_name_prefix() -> None:
    service = parse_service(
        svc(
            [
                {"name": "web", "port": 80, "appProtocol": "http2"},
                {"name": "grpc-api", "port": 90, "targetPort": 9090},
                {"name": "metrics", "port": 91, "targetPort": "metrics"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ]
        )
    )
    assert service is not None
    assert [(p.number, p.protocol, p.target_port, p.index) for p in service.ports] == [
        (80, "HTTP2", None, 0),
        (90, "GRPC", 9090, 1),
        (91, "", None, 2),
    ]


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        {"metadata": {"name": "web"}},
        {"metadata": {"namespace": "shop", "name": "web"}, "spec": {"type": "ExternalName"}},
    ],
)
def test_a_service_without_namespace_or_of_type_external_name_is_skipped(obj: Any) -> None:
    assert parse_service(obj) is None


def test_malformed_ports_and_endpoints_are_skipped_one_by_one_not_the_object() -> None:
    service = parse_service(svc(["x", {"port": "80"}, {"port": 0}, {"port": True}, {"name": "http", "port": 80}]))
    assert service is not None
    assert [p.number for p in service.ports] == [80]
    piece = parse_endpoint_slice(slice_of(["x", {"addresses": []}, {"addresses": [3, "10.0.0.1"]}]))
    assert piece is not None
    assert [e.addresses for e in piece.endpoints] == [("10.0.0.1",)]


def test_fqdn_slices_and_slices_without_a_service_label_are_not_endpoints() -> None:
    assert parse_endpoint_slice(slice_of([{"addresses": ["db.example.com"]}], address_type="FQDN")) is None
    unlabelled = slice_of([{"addresses": ["10.0.0.1"]}])
    unlabelled["metadata"]["labels"] = {}
    assert parse_endpoint_slice(unlabelled) is None


def test_only_ready_endpoints_are_served_an_unknown_readiness_counts_as_ready_and_pod_labels_label_them() -> None:
    service = parse_service(svc([{"name": "http", "port": 80, "targetPort": "http"}]))
    piece = parse_endpoint_slice(
        slice_of(
            [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True}, "targetRef": {"kind": "Pod", "name": "a"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": False}, "targetRef": {"kind": "Pod", "name": "b"}},
                {"addresses": ["10.0.0.3"]},
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
            ]
        )
    )
    assert service is not None
    assert piece is not None
    pods = {("shop", "a"): PodLabels(namespace="shop", name="a", labels={"version": "v1"})}
    registry = cluster_registry(services=[service], slices=[piece], pods=pods)
    [web] = registry.lookup("web.shop.svc.cluster.local")
    assert web.resolution is Resolution.STATIC
    assert [(e.address, dict(e.labels)) for e in web.endpoints] == [("10.0.0.1", {"version": "v1"}), ("10.0.0.3", {})]
    # A named targetPort resolves through the slice's port of the Service port's name.
    assert {e.port_for(web.ports[0]) for e in web.endpoints} == {8080}


def test_a_service_without_slices_has_no_endpoints_and_slices_of_other_services_are_not_its() -> None:
    service = parse_service(svc([{"name": "http", "port": 80}]))
    other = slice_of([{"addresses": ["10.0.0.9"]}])
    other["metadata"]["labels"]["kubernetes.io/service-name"] = "api"
    piece = parse_endpoint_slice(other)
    assert service is not None
    assert piece is not None
    [web] = cluster_registry(services=[service], slices=[piece], pods={}).services
    assert web.endpoints == ()


def test_the_export_to_annotation_limits_who_sees_the_service() -> None:
    obj = svc([{"name": "http", "port": 80}])
    obj["metadata"]["annotations"] = {"networking.istio.io/exportTo": ". , ops"}
    service = parse_service(obj)
    assert service is not None
    [web] = cluster_registry(services=[service], slices=[], pods={}).services
    assert web.visible_to("shop")
    assert web.visible_to("ops")
    assert not web.visible_to("other")


def test_a_kubernetes_service_wins_over_a_service_entry_of_the_same_host_and_namespace() -> None:
    service = parse_service(svc([{"name": "http", "port": 80}]))
    assert service is not None
    cluster = cluster_registry(services=[service], slices=[], pods={})
    merged = cluster.merged(build_registry(MeshConfig()))
    assert merged.lookup("web.shop.svc.cluster.local")[0].origin == cluster.services[0].origin


def test_pod_labels_are_read_from_metadata_only_objects_and_bounded() -> None:
    labels = {f"k{i}": "v" for i in range(MAX_ITEMS + 5)} | {"bad": 3}
    parsed = parse_pod(
        {"kind": "PartialObjectMetadata", "metadata": {"namespace": "shop", "name": "a", "labels": labels}}
    )
    assert parsed is not None
    assert len(parsed.labels) == MAX_ITEMS
    assert "bad" not in parsed.labels


@pytest.mark.parametrize(
    ("served", "chosen"),
    [(["v1", "v1beta1"], "v1"), (["v1beta1"], "v1beta1"), (["v2alpha1"], None), ([], None)],
)
def test_endpoint_slices_are_read_as_v1_and_as_v1beta1_only_where_v1_is_not_served(
    served: list[str], chosen: str | None
) -> None:
    group = {"versions": [{"groupVersion": f"discovery.k8s.io/{v}", "version": v} for v in served]}
    assert preferred_version(group, wanted=("v1", "v1beta1")) == chosen
