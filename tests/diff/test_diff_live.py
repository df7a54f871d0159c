"""A proxy's /config_dump against what it is served: wrappers stripped, Envoy's additions normalized, drift typed."""

from __future__ import annotations

import copy
from typing import Any

from google.protobuf.json_format import MessageToDict
from translate_support import GATEWAY, load_fixture

from reconciler.diff.live import MAX_PROBLEMS, DriftKind, compare_live, parse_config_dump
from reconciler.translate import translate
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot

_ADMIN = "type.googleapis.com/envoy.admin.v3."


def _snapshot() -> Snapshot:
    return translate(load_fixture("gateway-two-ports.yaml"), GATEWAY).snapshot


def _json(message: Any, type_name: str) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **MessageToDict(message, preserving_proto_field_name=True)}


def _dump(snapshot: Snapshot, *, node_id: str = "gateway-1") -> dict[str, Any]:
    """The dump Envoy writes for a proxy that runs ``snapshot`` over ADS, wrappers, timestamps and EDS defaults too."""
    endpoints = []
    for assignment in snapshot.resources(ENDPOINT).values():
        value = _json(assignment, "envoy.config.endpoint.v3.ClusterLoadAssignment")
        value["policy"] = {"overprovisioning_factor": 140}
        for locality in value.get("endpoints", []):
            locality.setdefault("locality", {})
            for endpoint in locality.get("lb_endpoints", []):
                endpoint.update(health_status="HEALTHY", load_balancing_weight=1)
                endpoint["endpoint"].setdefault("health_check_config", {})
        endpoints.append({"version_info": "v-eds", "endpoint_config": value, "last_updated": "2026-12-07T00:00:00Z"})
    return {
        "configs": [
            {"@type": f"{_ADMIN}BootstrapConfigDump", "bootstrap": {"node": {"id": node_id}}},
            {
                "@type": f"{_ADMIN}ClustersConfigDump",
                "version_info": "v-cds",
                "static_clusters": [{"cluster": {"@type": "x", "name": "xds_cluster", "type": "STATIC"}}],
                "dynamic_active_clusters": [
                    {
                        "version_info": "v-cds",
                        "cluster": _json(c, "envoy.config.cluster.v3.Cluster"),
                        "last_updated": "t",
                    }
                    for c in snapshot.resources(CLUSTER).values()
                ],
            },
            {
                "@type": f"{_ADMIN}ListenersConfigDump",
                "dynamic_listeners": [
                    {
                        "name": name,
                        "active_state": {
                            "version_info": "v-lds",
                            "listener": _json(listener, "envoy.config.listener.v3.Listener"),
                        },
                    }
                    for name, listener in snapshot.resources(LISTENER).items()
                ]
                + [{"name": "only-warming", "warming_state": {"listener": {"name": "only-warming"}}}],
            },
            {
                "@type": f"{_ADMIN}RoutesConfigDump",
                "dynamic_route_configs": [
                    {"version_info": "v-rds", "route_config": _json(r, "envoy.config.route.v3.RouteConfiguration")}
                    for r in snapshot.resources(ROUTE).values()
                ],
            },
            {"@type": f"{_ADMIN}EndpointsConfigDump", "dynamic_endpoint_configs": endpoints},
        ]
    }


def _configs(dump: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(config for config in dump["configs"] if config["@type"] == f"{_ADMIN}{kind}")


def test_a_proxy_that_runs_what_it_was_served_shows_no_drift_whatever_the_dump_wraps_and_adds() -> None:
    snapshot = _snapshot()

    live = parse_config_dump(_dump(snapshot))

    assert all(snapshot.resources(url) for url in (CLUSTER, ENDPOINT, LISTENER, ROUTE))  # every type compared
    assert live.node_id == "gateway-1"
    assert live.problems == ()
    assert set(live.resources[CLUSTER]) == {*snapshot.resources(CLUSTER), "xds_cluster"}
    assert compare_live(snapshot, live) == ()


def test_a_served_cluster_the_bootstrap_holds_statically_is_static_drift_with_the_fields_that_differ() -> None:
    snapshot = _snapshot()
    dump = _dump(snapshot)
    name, served = next(iter(snapshot.resources(CLUSTER).items()))
    stale = _json(served, "envoy.config.cluster.v3.Cluster")
    stale["connect_timeout"] = "9s"
    _configs(dump, "ClustersConfigDump")["static_clusters"].append({"cluster": stale})

    drift = compare_live(snapshot, parse_config_dump(dump))

    assert [(item.type, item.name, item.kind) for item in drift] == [("CDS", name, DriftKind.STATIC)]
    assert [field.field_path for field in drift[0].fields] == ["connect_timeout"]
    assert "bootstrap holds a static one" in drift[0].describe()


def test_a_missing_route_a_changed_listener_and_a_foreign_cluster_are_each_drift() -> None:
    snapshot = _snapshot()
    dump = _dump(snapshot)
    routes = _configs(dump, "RoutesConfigDump")
    removed = routes["dynamic_route_configs"].pop()["route_config"]["name"]
    listener = _configs(dump, "ListenersConfigDump")["dynamic_listeners"][0]
    listener["active_state"]["listener"]["per_connection_buffer_limit_bytes"] = 1024
    foreign = {"@type": "x", "name": "from-elsewhere", "type": "STATIC", "connect_timeout": "1s"}
    _configs(dump, "ClustersConfigDump")["dynamic_active_clusters"].append({"cluster": foreign})

    drift = compare_live(snapshot, parse_config_dump(dump))

    assert {(item.type, item.name, item.kind) for item in drift} == {
        ("CDS", "from-elsewhere", DriftKind.FOREIGN),
        ("LDS", listener["name"], DriftKind.CHANGED),
        ("RDS", removed, DriftKind.MISSING),
    }


def test_a_type_the_dump_does_not_hold_is_not_compared() -> None:
    snapshot = _snapshot()
    dump = _dump(snapshot)
    dump["configs"] = [c for c in dump["configs"] if c["@type"] != f"{_ADMIN}EndpointsConfigDump"]

    assert compare_live(snapshot, parse_config_dump(dump)) == ()


def test_what_is_not_a_config_dump_or_cannot_be_read_is_a_bounded_problem_never_an_exception() -> None:
    snapshot = _snapshot()
    dump = _dump(snapshot)
    bad = [{"cluster": {"name": "x", "connect_timeout": "not a duration"}}, "text", {"cluster": 7}] * MAX_PROBLEMS
    _configs(dump, "ClustersConfigDump")["dynamic_active_clusters"].extend(bad)

    live = parse_config_dump(dump)

    assert len(live.problems) == MAX_PROBLEMS
    assert "unreadable resource" in live.problems[0]
    assert parse_config_dump(["not", "a", "dump"]).problems == ("not a config dump: no 'configs' list",)
    assert parse_config_dump({"configs": "no"}).resources == {}


def test_a_load_assignment_that_differs_beyond_envoys_defaults_is_drift() -> None:
    snapshot = _snapshot()
    dump = _dump(snapshot)
    entry = _configs(dump, "EndpointsConfigDump")["dynamic_endpoint_configs"][0]["endpoint_config"]
    entry["endpoints"][0]["lb_endpoints"][0]["load_balancing_weight"] = 7

    drift = compare_live(snapshot, parse_config_dump(copy.deepcopy(dump)))

    assert [(item.type, item.kind) for item in drift] == [("EDS", DriftKind.CHANGED)]
    assert [field.field_path for field in drift[0].fields] == ["endpoints[0].lb_endpoints[0].load_balancing_weight"]
