"""CRD mode without a cluster: the objects applied, their order, the inventory and drift (reconciler.kube.istio)."""

from __future__ import annotations

import copy
from typing import Any

from reconciler.diff.changes import Change
from reconciler.kube.apply import spec_patch
from reconciler.kube.istio import (
    FIELD_MANAGER,
    MANAGED_BY_LABEL,
    SOURCE_ANNOTATION,
    Action,
    DesiredObject,
    DriftKindName,
    ObjectRef,
    cluster_config,
    desired_objects,
    drift_of,
    inventory_configmap,
    kept_object,
    parse_inventory,
    plan_changes,
)
from reconciler.loader import load_files
from reconciler.model.config import Kind, MeshConfig
from reconciler.model.virtualservice import Destination
from reconciler.rollout.plan import RouteRef
from reconciler.rollout.routes import with_weights

MESH = {
    "mesh/routes.yaml": b"""\
apiVersion: networking.istio.io/v1alpha3   # an older version, kept as written
kind: VirtualService
metadata:
  name: reviews
  labels: {team: books}
spec:
  hosts: [reviews.example.com]
  http:
  - route:
    - destination: {host: reviews.example.com, subset: v1}
      weight: 100
    - destination: {host: reviews.example.com, subset: v2}
      weight: 0
    retries: {attempts: 2, retryOn: "connect-failure,503"}
""",
    "mesh/rules.yaml": b"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.example.com
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}, {address: 10.0.0.2, labels: {version: v2}}]
""",
}


def _config(files: dict[str, bytes]) -> MeshConfig:
    result = load_files(files, default_namespace="shop")
    assert result.ok, [finding.format() for finding in result.findings]
    return result.config


def _desired(files: dict[str, bytes] = MESH) -> dict[ObjectRef, DesiredObject]:
    return desired_objects(_config(files), files, default_namespace="shop")


VS = ObjectRef(Kind.VIRTUAL_SERVICE, "shop", "reviews")
DR = ObjectRef(Kind.DESTINATION_RULE, "shop", "reviews")
SE = ObjectRef(Kind.SERVICE_ENTRY, "shop", "reviews")


def test_objects_are_applied_as_written_in_git_with_an_ownership_label_and_their_file() -> None:
    desired = _desired()
    vs = desired[VS]
    assert vs.api_version == "networking.istio.io/v1alpha3"
    assert vs.path == "/apis/networking.istio.io/v1alpha3/namespaces/shop/virtualservices/reviews"
    assert vs.body["spec"]["http"][0]["retries"] == {"attempts": 2, "retryOn": "connect-failure,503"}
    assert vs.body["metadata"]["labels"] == {"team": "books", MANAGED_BY_LABEL: FIELD_MANAGER}
    assert vs.body["metadata"]["annotations"] == {SOURCE_ANNOTATION: "mesh/routes.yaml"}
    assert desired[DR].body["metadata"]["namespace"] == "shop"
    assert set(desired) == {VS, DR, SE}


def test_a_rollout_steps_weights_are_written_into_the_yaml_and_nothing_else_changes() -> None:
    config = _config(MESH)
    v1 = Destination(host="reviews.example.com", subset="v1")
    v2 = Destination(host="reviews.example.com", subset="v2")
    stepped = with_weights(config, {RouteRef("shop/reviews", 0): {v1: 90, v2: 10}})
    committed = desired_objects(config, MESH, default_namespace="shop")[VS].body
    step = desired_objects(stepped, MESH, default_namespace="shop")[VS].body
    expected = copy.deepcopy(dict(committed))
    expected["spec"]["http"][0]["route"][0]["weight"] = 90
    expected["spec"]["http"][0]["route"][1]["weight"] = 10
    assert step == expected


def test_changes_are_made_before_break_and_removals_go_in_reverse() -> None:
    desired = _desired()
    inventory = {
        ObjectRef(Kind.VIRTUAL_SERVICE, "shop", "old"): "networking.istio.io/v1beta1",
        ObjectRef(Kind.SERVICE_ENTRY, "shop", "old"): "networking.istio.io/v1",
        ObjectRef(Kind.DESTINATION_RULE, "shop", "old"): "networking.istio.io/v1",
        VS: "networking.istio.io/v1alpha3",
    }
    steps = plan_changes(desired, live={}, inventory=inventory)
    assert [(step.action, step.ref.kind, step.ref.name) for step in steps] == [
        (Action.APPLY, Kind.SERVICE_ENTRY, "reviews"),
        (Action.APPLY, Kind.DESTINATION_RULE, "reviews"),
        (Action.APPLY, Kind.VIRTUAL_SERVICE, "reviews"),
        (Action.DELETE, Kind.VIRTUAL_SERVICE, "old"),
        (Action.DELETE, Kind.DESTINATION_RULE, "old"),
        (Action.DELETE, Kind.SERVICE_ENTRY, "old"),
    ]
    assert steps[3].path == "/apis/networking.istio.io/v1beta1/namespaces/shop/virtualservices/old"


def test_a_subset_dropped_from_a_destination_rule_outlives_the_virtual_services_applied_after_it() -> None:
    desired = _desired()
    live_dr = copy.deepcopy(dict(desired[DR].body))
    live_dr["spec"]["subsets"].append({"name": "v3", "labels": {"version": "v3"}})
    steps = plan_changes(desired, live={DR: live_dr}, inventory={})
    order = [(step.ref.kind, step.interim) for step in steps]
    assert order == [
        (Kind.SERVICE_ENTRY, False),
        (Kind.DESTINATION_RULE, True),
        (Kind.VIRTUAL_SERVICE, False),
        (Kind.DESTINATION_RULE, False),
    ]
    interim, final = steps[1].body, steps[3].body
    assert interim is not None
    assert final is not None
    assert [s["name"] for s in interim["spec"]["subsets"]] == ["v1", "v2", "v3"]
    assert final == desired[DR].body


def test_the_inventory_round_trips_through_its_configmap_and_skips_what_is_not_ours() -> None:
    entries = {VS: "networking.istio.io/v1alpha3", DR: "networking.istio.io/v1"}
    configmap = inventory_configmap(namespace="ops", name="inv", entries=entries)
    assert parse_inventory(configmap) == entries
    configmap["data"]["inventory.json"] = (
        '[{"apiVersion":"v1","kind":"Secret","namespace":"a","name":"b"},'
        '{"apiVersion":"networking.istio.io/v1","kind":"Gateway","namespace":"a","name":"../x"},'
        '{"apiVersion":"networking.istio.io/v1","kind":"Gateway","namespace":"a","name":"gw"}, 7]'
    )
    assert parse_inventory(configmap) == {ObjectRef(Kind.GATEWAY, "a", "gw"): "networking.istio.io/v1"}
    assert parse_inventory({"data": {"inventory.json": "not json"}}) == {}


def _live(body: Any, *, managers: tuple[str, ...] = (FIELD_MANAGER,)) -> dict[str, Any]:
    live = copy.deepcopy(dict(body))
    live["metadata"]["resourceVersion"] = "7"
    live["metadata"]["managedFields"] = [{"manager": manager, "operation": "Update"} for manager in managers]
    kept = kept_object(live)
    assert kept is not None
    return dict(kept)


def test_what_istio_reads_alike_is_no_drift() -> None:
    vs = _desired()[VS]
    live = _live(vs.body)
    live["spec"]["hosts"] = ["reviews.example.com"]
    live["spec"]["http"][0]["retries"]["retryOn"] = "503,connect-failure"
    assert drift_of(vs, live) is None


def test_a_weight_changed_by_another_manager_is_drift_naming_the_field_and_the_manager() -> None:
    vs = _desired()[VS]
    live = _live(vs.body, managers=(FIELD_MANAGER, "kubectl-edit"))
    live["spec"]["http"][0]["route"][0]["weight"] = 50
    found = drift_of(vs, live)
    assert found is not None
    assert found.kind is DriftKindName.CHANGED
    assert found.managers == ("kubectl-edit",)
    assert [(f.field_path, f.change, f.old, f.new) for f in found.fields] == [
        ('spec.http[0].route["reviews.example.com/v1"].weight', Change.CHANGED, 100, 50)
    ]
    assert "by kubectl-edit" in found.describe()


def test_an_object_deleted_outside_git_is_missing() -> None:
    found = drift_of(_desired()[SE], None)
    assert found is not None
    assert found.kind is DriftKindName.MISSING


def test_an_object_not_ours_is_not_kept_by_the_informer() -> None:
    assert kept_object({"metadata": {"name": "x", "namespace": "y", "labels": {"app": "z"}}, "spec": {}}) is None


def test_the_heal_patch_sets_the_spec_whole_removing_fields_git_does_not_set() -> None:
    wanted = {"host": "a", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}, "subsets": [{"name": "v1"}]}
    live = {
        "host": "a",
        "exportTo": ["."],
        "trafficPolicy": {"tls": {"mode": "DISABLE"}, "loadBalancer": {"simple": "RANDOM"}},
        "subsets": [{"name": "v1"}, {"name": "v9"}],
    }
    assert spec_patch(wanted, live) == {
        "exportTo": None,
        "trafficPolicy": {"loadBalancer": None, "tls": {"mode": "ISTIO_MUTUAL"}},
        "subsets": [{"name": "v1"}],
    }


def test_the_cluster_objects_read_back_into_the_config_git_has() -> None:
    desired = _desired()
    config, findings = cluster_config([_live(obj.body) for obj in desired.values()])
    assert not [f for f in findings if f.severity.value == "error"]
    assert {(r.kind, r.namespace, r.name) for r in config.resources()} == {
        (r.kind, r.namespace, r.name) for r in desired
    }
