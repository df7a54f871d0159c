"""Admin /config_dump documents as Envoy writes them for a proxy running a snapshot over ADS (for drift tests)."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot

ADMIN = "type.googleapis.com/envoy.admin.v3."


def resource_json(message: Any, type_name: str) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **MessageToDict(message, preserving_proto_field_name=True)}


def config_dump(snapshot: Snapshot, *, node_id: str = "gateway-1") -> dict[str, Any]:
    """The dump Envoy writes for a proxy that runs ``snapshot`` over ADS, wrappers, timestamps and EDS defaults too."""
    endpoints = []
    for assignment in snapshot.resources(ENDPOINT).values():
        value = resource_json(assignment, "envoy.config.endpoint.v3.ClusterLoadAssignment")
        value["policy"] = {"overprovisioning_factor": 140}
        for locality in value.get("endpoints", []):
            locality.setdefault("locality", {})
            for endpoint in locality.get("lb_endpoints", []):
                endpoint.update(health_status="HEALTHY", load_balancing_weight=1)
                endpoint["endpoint"].setdefault("health_check_config", {})
        endpoints.append({"version_info": "v-eds", "endpoint_config": value, "last_updated": "2026-12-07T00:00:00Z"})
    return {
        "configs": [
            {"@type": f"{ADMIN}BootstrapConfigDump", "bootstrap": {"node": {"id": node_id}}},
            {
                "@type": f"{ADMIN}ClustersConfigDump",
                "version_info": "v-cds",
                "static_clusters": [{"cluster": {"@type": "x", "name": "xds_cluster", "type": "STATIC"}}],
                "dynamic_active_clusters": [
                    {
                        "version_info": "v-cds",
                        "cluster": resource_json(c, "envoy.config.cluster.v3.Cluster"),
                        "last_updated": "t",
                    }
                    for c in snapshot.resources(CLUSTER).values()
                ],
            },
            {
                "@type": f"{ADMIN}ListenersConfigDump",
                "dynamic_listeners": [
                    {
                        "name": name,
                        "active_state": {
                            "version_info": "v-lds",
                            "listener": resource_json(listener, "envoy.config.listener.v3.Listener"),
                        },
                    }
                    for name, listener in snapshot.resources(LISTENER).items()
                ]
                + [{"name": "only-warming", "warming_state": {"listener": {"name": "only-warming"}}}],
            },
            {
                "@type": f"{ADMIN}RoutesConfigDump",
                "dynamic_route_configs": [
                    {
                        "version_info": "v-rds",
                        "route_config": resource_json(r, "envoy.config.route.v3.RouteConfiguration"),
                    }
                    for r in snapshot.resources(ROUTE).values()
                ],
            },
            {"@type": f"{ADMIN}EndpointsConfigDump", "dynamic_endpoint_configs": endpoints},
        ]
    }


def dump_section(dump: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(config for config in dump["configs"] if config["@type"] == f"{ADMIN}{kind}")
