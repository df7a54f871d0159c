"""A proxy's /config_dump against what it is served: wrappers stripped, Envoy's additions normalized, drift typed."""

from __future__ import annotations

import copy

from config_dumps import ADMIN, config_dump, dump_section, resource_json
from translate_support import GATEWAY, load_fixture

from reconciler.diff.live import MAX_PROBLEMS, DriftKind, compare_live, parse_config_dump
from reconciler.translate import translate
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot


def _snapshot() -> Snapshot:
    return translate(load_fixture("gateway-two-ports.yaml"), GATEWAY).snapshot


def test_a_proxy_that_runs_what_it_was_served_shows_no_drift_whatever_the_dump_wraps_and_adds() -> None:
    snapshot = _snapshot()

    live = parse_config_dump(config_dump(snapshot))

    assert all(snapshot.resources(url) for url in (CLUSTER, ENDPOINT, LISTENER, ROUTE))  # every type compared
    assert live.node_id == "gateway-1"
    assert live.problems == ()
    assert set(live.resources[CLUSTER]) == {*snapshot.resources(CLUSTER), "xds_cluster"}
    assert compare_live(snapshot, live) == ()


def test_a_served_cluster_the_bootstrap_holds_statically_is_static_drift_with_the_fields_that_differ() -> None:
    snapshot = _snapshot()
    dump = config_dump(snapshot)
    name, served = next(iter(snapshot.resources(CLUSTER).items()))
    stale = resource_json(served, "envoy.config.cluster.v3.Cluster")
    stale["connect_timeout"] = "9s"
    dump_section(dump, "ClustersConfigDump")["static_clusters"].append({"cluster": stale})

    drift = compare_live(snapshot, parse_config_dump(dump))

    assert [(item.type, item.name, item.kind) for item in drift] == [("CDS", name, DriftKind.STATIC)]
    assert [field.field_path for field in drift[0].fields] == ["connect_timeout"]
    assert "bootstrap holds a static one" in drift[0].describe()


def test_a_missing_route_a_changed_listener_and_a_foreign_cluster_are_each_drift() -> None:
    snapshot = _snapshot()
    dump = config_dump(snapshot)
    routes = dump_section(dump, "RoutesConfigDump")
    removed = routes["dynamic_route_configs"].pop()["route_config"]["name"]
    listener = dump_section(dump, "ListenersConfigDump")["dynamic_listeners"][0]
    listener["active_state"]["listener"]["per_connection_buffer_limit_bytes"] = 1024
    foreign = {"@type": "x", "name": "from-elsewhere", "type": "STATIC", "connect_timeout": "1s"}
    dump_section(dump, "ClustersConfigDump")["dynamic_active_clusters"].append({"cluster": foreign})

    drift = compare_live(snapshot, parse_config_dump(dump))

    assert {(item.type, item.name, item.kind) for item in drift} == {
        ("CDS", "from-elsewhere", DriftKind.FOREIGN),
        ("LDS", listener["name"], DriftKind.CHANGED),
        ("RDS", removed, DriftKind.MISSING),
    }


def test_a_type_the_dump_does_not_hold_is_not_compared() -> None:
    snapshot = _snapshot()
    dump = config_dump(snapshot)
    dump["configs"] = [c for c in dump["configs"] if c["@type"] != f"{ADMIN}EndpointsConfigDump"]

    assert compare_live(snapshot, parse_config_dump(dump)) == ()


def test_what_is_not_a_config_dump_or_cannot_be_read_is_a_bounded_problem_never_an_exception() -> None:
    snapshot = _snapshot()
    dump = config_dump(snapshot)
    bad = [{"cluster": {"name": "x", "connect_timeout": "not a duration"}}, "text", {"cluster": 7}] * MAX_PROBLEMS
    dump_section(dump, "ClustersConfigDump")["dynamic_active_clusters"].extend(bad)

    live = parse_config_dump(dump)

    assert len(live.problems) == MAX_PROBLEMS
    assert "unreadable resource" in live.problems[0]
    assert parse_config_dump(["not", "a", "dump"]).problems == ("not a config dump: no 'configs' list",)
    assert parse_config_dump({"configs": "no"}).resources == {}


def test_a_load_assignment_that_differs_beyond_envoys_defaults_is_drift() -> None:
    snapshot = _snapshot()
    dump = config_dump(snapshot)
    entry = dump_section(dump, "EndpointsConfigDump")["dynamic_endpoint_configs"][0]["endpoint_config"]
    entry["endpoints"][0]["lb_endpoints"][0]["load_balancing_weight"] = 7

    drift = compare_live(snapshot, parse_config_dump(copy.deepcopy(dump)))

    assert [(item.type, item.kind) for item in drift] == [("EDS", DriftKind.CHANGED)]
    assert [field.field_path for field in drift[0].fields] == ["endpoints[0].lb_endpoints[0].load_balancing_weight"]
