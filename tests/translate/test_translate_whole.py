"""Whole translations: determinism, versions, consistency, the service registry seam."""

from __future__ import annotations

import pytest
from translate_support import (
    FIXTURES,
    GATEWAY,
    REVIEWS,
    SIDECAR,
    assignment,
    endpoint_addresses,
    load,
    load_fixture,
    render,
    service_entry,
    virtual_service,
)

from reconciler.errors import TranslationError
from reconciler.translate import (
    Endpoint,
    Origin,
    ProxyIdentity,
    Resolution,
    Service,
    ServicePort,
    ServiceRegistry,
    Snapshot,
    build_registry,
    translate,
)
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE

SPLIT = "  http:\n  - route:\n    - {{destination: {{host: reviews, subset: v1}}, weight: {v1}}}\n" + (
    "    - {{destination: {{host: reviews, subset: v2}}, weight: {v2}}}\n"
)


def test_same_config_gives_same_version_and_byte_identical_resources() -> None:
    text = REVIEWS + virtual_service("reviews", SPLIT.format(v1=80, v2=20))

    first = translate(load(text), SIDECAR).snapshot
    second = translate(load(text), SIDECAR).snapshot

    assert first.version == second.version
    for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        assert list(first.resources(type_url)) == list(second.resources(type_url))
        for name, message in first.resources(type_url).items():
            other = second.resources(type_url)[name]
            assert message.SerializeToString(deterministic=True) == other.SerializeToString(deterministic=True)


def test_a_translated_snapshot_holds_its_listener_and_routes_as_bytes_and_parses_them_only_when_asked() -> None:
    snapshot = translate(load(REVIEWS + virtual_service("reviews", SPLIT.format(v1=80, v2=20))), SIDECAR).snapshot

    for type_url in (LISTENER, ROUTE):
        for name, item in snapshot.sets[type_url].items.items():
            assert item.parsed is None
            asked = snapshot.resources(type_url)[name]
            assert asked.SerializeToString(deterministic=True) == item.message.SerializeToString(deterministic=True)
            assert item.parsed is None  # parsed for the asker, not kept (a route table is megabytes as a message)
            assert asked is not item.message


def test_changing_a_weight_changes_only_the_routes_version() -> None:
    before = render(REVIEWS + virtual_service("reviews", SPLIT.format(v1=80, v2=20))).snapshot
    after = render(REVIEWS + virtual_service("reviews", SPLIT.format(v1=50, v2=50))).snapshot

    assert before.version != after.version
    assert before.version_of(ROUTE) != after.version_of(ROUTE)
    for unchanged in (CLUSTER, ENDPOINT, LISTENER):
        assert before.version_of(unchanged) == after.version_of(unchanged)


V2_CLUSTER = "outbound|9080|v2|reviews.default.svc.cluster.local"


@pytest.mark.parametrize(
    ("dropped_type", "dropped_name", "problem"),
    [
        (CLUSTER, V2_CLUSTER, f"a route names cluster {V2_CLUSTER!r}, which does not exist"),
        (ENDPOINT, V2_CLUSTER, f"EDS cluster {V2_CLUSTER!r} has no ClusterLoadAssignment"),
        (ROUTE, "15001", "listener '0.0.0.0_15001' uses RouteConfiguration '15001', which does not exist"),
    ],
    ids=["route-to-missing-cluster", "eds-cluster-without-endpoints", "listener-with-missing-routes"],
)
def test_a_dangling_reference_makes_the_snapshot_inconsistent(
    dropped_type: str, dropped_name: str, problem: str
) -> None:
    snapshot = render(REVIEWS + virtual_service("reviews", SPLIT.format(v1=80, v2=20))).snapshot
    kept = {
        type_url: [resource for name, resource in snapshot.resources(type_url).items()
                   if (type_url, name) != (dropped_type, dropped_name)]
        for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE)
    }  # fmt: skip
    assert sum(map(len, kept.values())) == sum(len(snapshot.resources(t)) for t in kept) - 1

    broken = Snapshot.build(
        clusters=kept[CLUSTER], endpoints=kept[ENDPOINT], listeners=kept[LISTENER], routes=kept[ROUTE]
    )

    assert broken.problems() == (problem,)
    with pytest.raises(TranslationError, match="inconsistent snapshot"):
        broken.check()


@pytest.mark.parametrize("fixture", sorted(path.name for path in FIXTURES.glob("*.yaml")))
def test_every_fixture_translates_to_a_consistent_snapshot_for_both_roles(fixture: str) -> None:
    config = load_fixture(fixture)

    for proxy in (SIDECAR, GATEWAY):
        snapshot = translate(config, proxy).snapshot
        assert snapshot.problems() == ()


def test_translation_does_not_depend_on_the_proxy_node_id() -> None:
    config = load_fixture("weighted-80-20.yaml")

    another = ProxyIdentity(node_id="another", namespace="default", role=SIDECAR.role)

    assert translate(config, SIDECAR).snapshot.version == translate(config, another).snapshot.version


def test_registry_has_one_service_per_service_entry_host_resolved_in_its_namespace() -> None:
    registry = build_registry(load(service_entry("reviews") + service_entry("api.example.com", name="api")))

    assert registry.hosts == ("reviews.default.svc.cluster.local", "api.example.com")
    (reviews,) = registry.lookup("reviews.default.svc.cluster.local")
    assert reviews.resolution is Resolution.STATIC
    assert [p.number for p in reviews.ports] == [9080]
    assert [e.address for e in reviews.endpoints] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert reviews.origin is not None
    assert reviews.origin.kind == "ServiceEntry"


def test_registry_merged_keeps_its_own_service_when_host_and_namespace_collide() -> None:
    mine = ServiceRegistry(services=(_service("reviews.default.svc.cluster.local", "10.9.9.9"),))
    entries = build_registry(load(service_entry("reviews") + service_entry("ratings")))

    merged = mine.merged(entries)

    assert merged.hosts == ("reviews.default.svc.cluster.local", "ratings.default.svc.cluster.local")
    (reviews,) = merged.lookup("reviews.default.svc.cluster.local")
    assert [e.address for e in reviews.endpoints] == ["10.9.9.9"]


def test_a_registry_passed_in_replaces_the_service_entries() -> None:
    config = load(REVIEWS)
    registry = ServiceRegistry(services=(_service("reviews.default.svc.cluster.local", "10.9.9.9"),))

    result = translate(config, SIDECAR, registry=registry)

    default = assignment(result.snapshot, "outbound|9080||reviews.default.svc.cluster.local")
    assert endpoint_addresses(default) == [("10.9.9.9", 9080)]
    # The DestinationRule still applies to the registry's service.
    v1 = assignment(result.snapshot, "outbound|9080|v1|reviews.default.svc.cluster.local")
    assert endpoint_addresses(v1) == [("10.9.9.9", 9080)]


def _service(host: str, address: str) -> Service:
    return Service(
        host=host,
        namespace="default",
        ports=(ServicePort(number=9080, name="http", protocol="HTTP"),),
        resolution=Resolution.STATIC,
        endpoints=(Endpoint(address=address, labels={"version": "v1"}),),
        origin=Origin(kind="EndpointSlice", namespace="default", name="reviews-abc12"),
    )
