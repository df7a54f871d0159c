"""An Envoy resource's name leads back to the Istio resource and field that made it."""

from __future__ import annotations

from pathlib import Path

from reconciler.loader import load_files
from reconciler.model.config import MeshConfig
from reconciler.translate.provenance import producers_of
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE

TEMPLATE = Path(__file__).resolve().parents[2] / "repo-template" / "mesh"


def template_config() -> MeshConfig:
    files = {f"mesh/{path.name}": path.read_bytes() for path in sorted(TEMPLATE.glob("*.yaml"))}
    result = load_files(files, default_namespace="default")
    assert result.ok
    return result.config


def test_a_subset_cluster_leads_to_its_service_entry_host_and_destination_rule_subset() -> None:
    found = producers_of(template_config(), type_url=CLUSTER, name="outbound|80|v2|reviews.example.com")
    assert [(p.resource.kind.value, p.path, p.resource.source.file) for p in found] == [
        ("ServiceEntry", "spec.hosts[0]", "mesh/serviceentry.yaml"),
        ("DestinationRule", "spec.subsets[1]", "mesh/destinationrule.yaml"),
    ]
    assert producers_of(template_config(), type_url=ENDPOINT, name="outbound|80|v2|reviews.example.com") == found


def test_a_gateway_listener_and_its_routes_lead_to_the_server_on_that_port() -> None:
    config = template_config()
    [listener] = producers_of(config, type_url=LISTENER, name="0.0.0.0_8080")
    assert (listener.resource.kind.value, listener.path) == ("Gateway", "spec.servers[0].port.number")
    assert producers_of(config, type_url=ROUTE, name="http.8080") == (listener,)


def test_names_not_made_from_the_config_lead_nowhere() -> None:
    config = template_config()
    assert producers_of(config, type_url=LISTENER, name="0.0.0.0_9999") == ()
    assert producers_of(config, type_url=ROUTE, name="15001") == ()
    assert producers_of(config, type_url=CLUSTER, name="BlackHoleCluster") == ()
