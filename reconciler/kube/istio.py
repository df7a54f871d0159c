"""Istio objects for the cluster (CRD mode), the order they are changed in, the inventory, and drift. Pure.

What is applied is the user's YAML as written in git: ``apiVersion``, ``metadata.name``,
``namespace``, labels, annotations and ``spec`` as the files hold them (the typed model keeps no
raw values, so the revision's files are parsed again by :func:`desired_objects`), plus the
ownership label :data:`MANAGED_BY_LABEL` and the file it came from (:data:`SOURCE_ANNOTATION`). A
served config whose route weights differ from git's (a rollout step) has those weights written
into the VirtualService's ``spec.http[i].route[j].weight``, and nothing else changed.

:func:`plan_changes` orders a change make-before-break: ServiceEntries, then DestinationRules
(a subset a VirtualService still routes to is kept until the VirtualServices are applied),
Gateways, VirtualServices, then the DestinationRules' final subsets; removals last, in reverse
(VirtualServices before the Gateways, DestinationRules and ServiceEntries they use).

The inventory (what the daemon applied, so it knows what to prune once git removes it, like
Flux's) is a ConfigMap: :func:`inventory_configmap` and :func:`parse_inventory`.

:func:`drift_of` compares what the cluster holds with what was applied, after decoding both
and normalizing them as ``reconciler diff`` does (:mod:`reconciler.diff.normalize`): a change
that Istio reads alike (a reordered host list) is not drift, a changed weight is.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reconciler.diff.changes import FieldChange, diff_fields
from reconciler.diff.normalize import normalize_resource
from reconciler.errors import KubeError
from reconciler.loader.parse import parse_yaml
from reconciler.model.config import API_GROUP, Kind, MeshConfig, Resource
from reconciler.model.source import SourceInfo
from reconciler.model.text import MESSAGE_CHARS, excerpt
from reconciler.model.virtualservice import Destination, VirtualServiceSpec
from reconciler.validate import build_config, decode_resource
from reconciler.validate.findings import Finding, Severity

__all__ = [
    "APPLY_ORDER",
    "FIELD_MANAGER",
    "INVENTORY_KEY",
    "MANAGED_BY_LABEL",
    "MAX_INVENTORY",
    "PLURALS",
    "SOURCE_ANNOTATION",
    "Action",
    "DesiredObject",
    "DriftKindName",
    "ObjectDrift",
    "ObjectRef",
    "Step",
    "cluster_config",
    "desired_objects",
    "drift_of",
    "inventory_configmap",
    "is_managed",
    "kept_object",
    "object_path",
    "parse_inventory",
    "plan_changes",
]

#: The field manager of every write (server-side apply) and the ownership label's value.
FIELD_MANAGER = "reconciler"
#: Kubernetes' recommended label for the tool managing an object; the informers keep only objects carrying it.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
#: The file (in the config directory) an object was applied from.
SOURCE_ANNOTATION = "reconciler.dev/source"
#: The inventory ConfigMap's key: a JSON list of ``{apiVersion, kind, namespace, name}``.
INVENTORY_KEY = "inventory.json"
#: Objects one inventory lists: a ConfigMap holds at most 1 MiB, an entry about 120 bytes.
MAX_INVENTORY = 8000

#: The collection name of each kind applied; RolloutPolicy is reconciler's own and stays in git.
PLURALS: Mapping[Kind, str] = {
    Kind.SERVICE_ENTRY: "serviceentries",
    Kind.DESTINATION_RULE: "destinationrules",
    Kind.GATEWAY: "gateways",
    Kind.VIRTUAL_SERVICE: "virtualservices",
}
#: What a VirtualService uses comes first; removals go the other way.
APPLY_ORDER = (Kind.SERVICE_ENTRY, Kind.DESTINATION_RULE, Kind.GATEWAY, Kind.VIRTUAL_SERVICE)


@dataclass(frozen=True, slots=True, order=True)
class ObjectRef:
    """An Istio object's identity in the cluster: kind, namespace, name (any served apiVersion names it)."""

    kind: Kind
    namespace: str
    name: str

    def describe(self) -> str:
        return f"{self.kind.value} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class DesiredObject:
    """One object as it is applied: the apply body (JSON), its apiVersion, and the file it came from."""

    ref: ObjectRef
    api_version: str
    body: Mapping[str, Any]

    @property
    def path(self) -> str:
        return object_path(self.api_version, self.ref)


def object_path(api_version: str, ref: ObjectRef) -> str:
    """``/apis/networking.istio.io/v1/namespaces/NS/virtualservices/NAME``."""
    return f"/apis/{api_version}/namespaces/{ref.namespace}/{PLURALS[ref.kind]}/{ref.name}"


def desired_objects(
    config: MeshConfig, files: Mapping[str, bytes], *, default_namespace: str
) -> dict[ObjectRef, DesiredObject]:
    """Every Istio object of ``config`` as written in ``files`` (the revision it was loaded from), with its weights.

    Raises KubeError when a resource of ``config`` is not in ``files`` (they are not the same revision).
    """
    written = _documents(files, default_namespace=default_namespace)
    found: dict[ObjectRef, DesiredObject] = {}
    for resource in config.resources():
        if resource.kind not in PLURALS:
            continue
        ref = ObjectRef(resource.kind, resource.namespace, resource.name)
        document = written.get(ref)
        if document is None:
            raise KubeError(f"{ref.describe()} is not in the files of the revision it was loaded from")
        data, file = document
        spec = copy.deepcopy(data.get("spec") or {})
        if isinstance(resource.spec, VirtualServiceSpec):
            _write_weights(spec, resource.spec)
        metadata = data.get("metadata") or {}
        body = {
            "apiVersion": resource.api_version,
            "kind": resource.kind.value,
            "metadata": {
                "name": resource.name,
                "namespace": resource.namespace,
                "labels": {**_strings(metadata.get("labels")), MANAGED_BY_LABEL: FIELD_MANAGER},
                "annotations": {**_strings(metadata.get("annotations")), SOURCE_ANNOTATION: file},
            },
            "spec": spec,
        }
        found[ref] = DesiredObject(ref=ref, api_version=resource.api_version, body=body)
    return found


def _documents(files: Mapping[str, bytes], *, default_namespace: str) -> dict[ObjectRef, tuple[dict[str, Any], str]]:
    kinds = {kind.value: kind for kind in PLURALS}
    found: dict[ObjectRef, tuple[dict[str, Any], str]] = {}
    for path in sorted(files):
        try:
            text = files[path].decode("utf-8")
        except UnicodeDecodeError:
            continue  # validation refused such a file: none of its resources are in the config
        documents, _ = parse_yaml(text, file=path, default_namespace=default_namespace)
        for document in documents:
            data = document.data
            metadata = data.get("metadata") if isinstance(data, dict) else None
            kind = kinds.get(str(data.get("kind"))) if isinstance(data, dict) else None
            if kind is None or not isinstance(metadata, dict):
                continue
            namespace = str(metadata.get("namespace") or default_namespace)
            found[ObjectRef(kind, namespace, str(metadata.get("name")))] = (data, path)
    return found


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _write_weights(spec: dict[str, Any], served: VirtualServiceSpec) -> None:
    """Set each route destination's weight in the raw ``spec`` to the served one where they differ.

    A rollout weighs every destination of a route it walks (``rollout.routes.with_weights``), in
    the order git lists them, and appends a destination git dropped while it still gets traffic.
    """
    rules = spec.get("http")
    if not isinstance(rules, list):
        return
    for rule, route in zip(rules, served.http, strict=False):
        written = rule.get("route") if isinstance(rule, dict) else None
        if not isinstance(written, list):
            continue
        for index, entry in enumerate(route.route):
            if index >= len(written):
                written.append({"destination": _destination(entry.destination), "weight": entry.weight})
            elif (
                entry.weight is not None
                and isinstance(written[index], dict)
                and written[index].get("weight") != entry.weight
            ):
                written[index]["weight"] = entry.weight


def _destination(destination: Destination) -> dict[str, Any]:
    out: dict[str, Any] = {"host": destination.host}
    if destination.subset:
        out["subset"] = destination.subset
    if destination.port is not None and destination.port.number is not None:
        out["port"] = {"number": destination.port.number}
    return out


class Action(StrEnum):
    APPLY = "apply"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Step:
    """One write: apply ``body`` at ``path``, or delete the object there."""

    action: Action
    ref: ObjectRef
    path: str
    body: Mapping[str, Any] | None = None
    #: An interim DestinationRule that still has subsets the cluster's VirtualServices may route to.
    interim: bool = False


def plan_changes(
    desired: Mapping[ObjectRef, DesiredObject],
    *,
    live: Mapping[ObjectRef, Mapping[str, Any]],
    inventory: Mapping[ObjectRef, str],
) -> list[Step]:
    """The writes that make the cluster hold ``desired``, make-before-break (see the module docstring).

    ``live`` is what the cluster holds of the managed objects (for the subsets a DestinationRule drops);
    ``inventory`` what was applied before, with each object's apiVersion (what is not desired is deleted).
    """
    steps: list[Step] = []
    final: list[Step] = []
    for kind in APPLY_ORDER:
        for ref in sorted(ref for ref in desired if ref.kind is kind):
            wanted = desired[ref]
            interim = _with_dropped_subsets(wanted, live.get(ref)) if kind is Kind.DESTINATION_RULE else None
            if interim is not None:
                steps.append(Step(Action.APPLY, ref, wanted.path, body=interim, interim=True))
                final.append(Step(Action.APPLY, ref, wanted.path, body=wanted.body))
            else:
                steps.append(Step(Action.APPLY, ref, wanted.path, body=wanted.body))
    steps.extend(final)
    for kind in reversed(APPLY_ORDER):
        for ref in sorted(ref for ref in inventory if ref.kind is kind and ref not in desired):
            steps.append(Step(Action.DELETE, ref, object_path(inventory[ref], ref)))
    return steps


def _with_dropped_subsets(wanted: DesiredObject, live: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``wanted``'s body keeping the subsets the cluster's copy has and ``wanted`` drops; None when it drops none."""
    spec = wanted.body.get("spec")
    live_spec = live.get("spec") if live is not None else None
    if not isinstance(spec, Mapping) or not isinstance(live_spec, Mapping):
        return None
    new = [s for s in spec.get("subsets") or () if isinstance(s, Mapping)]
    names = {s.get("name") for s in new}
    dropped = [s for s in live_spec.get("subsets") or () if isinstance(s, Mapping) and s.get("name") not in names]
    if not dropped:
        return None
    body = copy.deepcopy(dict(wanted.body))
    body["spec"]["subsets"] = [*new, *copy.deepcopy(dropped)]
    return body


def is_managed(obj: Mapping[str, Any]) -> bool:
    """Whether an object carries the ownership label."""
    metadata = obj.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    return isinstance(labels, Mapping) and labels.get(MANAGED_BY_LABEL) == FIELD_MANAGER


def kept_object(obj: object) -> Mapping[str, Any] | None:
    """What an informer keeps of a managed Istio object from the API (None: not one of ours).

    Its metadata (name, namespace, resourceVersion, who wrote which fields) and its spec; not its status.
    """
    if not isinstance(obj, Mapping) or not is_managed(obj):
        return None
    metadata = obj["metadata"]
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {
            key: metadata.get(key) for key in ("name", "namespace", "resourceVersion", "labels", "managedFields")
        },
        "spec": obj.get("spec"),
    }


def inventory_configmap(*, namespace: str, name: str, entries: Mapping[ObjectRef, str]) -> dict[str, Any]:
    """The inventory as a ConfigMap (an apply body): every applied object with its apiVersion, sorted."""
    listed = [
        {"apiVersion": entries[ref], "kind": ref.kind.value, "namespace": ref.namespace, "name": ref.name}
        for ref in sorted(entries)
    ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY_LABEL: FIELD_MANAGER}},
        "data": {INVENTORY_KEY: json.dumps(listed, separators=(",", ":"))},
    }


def parse_inventory(obj: Mapping[str, Any]) -> dict[ObjectRef, str]:
    """The entries of an inventory ConfigMap; an entry that is not one of ours (or malformed) is skipped."""
    data = obj.get("data")
    text = data.get(INVENTORY_KEY) if isinstance(data, Mapping) else None
    try:
        listed = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return {}
    kinds = {kind.value: kind for kind in PLURALS}
    found: dict[ObjectRef, str] = {}
    for entry in listed[:MAX_INVENTORY] if isinstance(listed, list) else ():
        if not isinstance(entry, dict):
            continue
        kind, version = kinds.get(str(entry.get("kind"))), entry.get("apiVersion")
        namespace, name = entry.get("namespace"), entry.get("name")
        if kind is None or not isinstance(version, str) or not version.startswith(f"{API_GROUP}/"):
            continue
        if isinstance(namespace, str) and isinstance(name, str) and namespace and name and "/" not in name + namespace:
            found[ObjectRef(kind, namespace, name)] = version
    return found


class DriftKindName(StrEnum):
    """How a managed object differs from what was applied."""

    MISSING = "missing"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class ObjectDrift:
    """A managed object the cluster holds other than git says: the fields (git's value → the cluster's), and who."""

    ref: ObjectRef
    kind: DriftKindName
    fields: tuple[FieldChange, ...] = ()
    #: Field managers other than reconciler that wrote the object (``kubectl-edit``, ``kubectl-patch``...).
    managers: tuple[str, ...] = ()
    problem: str = ""

    def describe(self) -> str:
        if self.kind is DriftKindName.MISSING:
            return f"{self.ref.describe()}: deleted outside git"
        changed = ", ".join(
            f"{change.field_path} {_short(change.old)}→{_short(change.new)}" for change in self.fields[:5]
        )
        if len(self.fields) > 5:
            changed += f" (+{len(self.fields) - 5} more)"
        by = f" by {', '.join(self.managers)}" if self.managers else ""
        return excerpt(f"{self.ref.describe()}: {self.problem or changed} changed{by}", MESSAGE_CHARS)


def _short(value: Any) -> str:
    return "-" if value is None else excerpt(json.dumps(value, sort_keys=True), 60)


def drift_of(wanted: DesiredObject, live: Mapping[str, Any] | None) -> ObjectDrift | None:
    """How the cluster's copy of ``wanted`` differs from it, normalized as ``reconciler diff`` does; None: alike."""
    if live is None:
        return ObjectDrift(ref=wanted.ref, kind=DriftKindName.MISSING)
    managers = _other_managers(live)
    desired, _ = _decoded(wanted.body)
    found, findings = _decoded(live)
    if desired is None:
        return None  # what was applied validated in git: only a bug lands here, and it is not the cluster's drift
    if found is None:
        problem = next((f.message for f in findings if f.severity is Severity.ERROR), "it does not decode")
        return ObjectDrift(
            ref=wanted.ref, kind=DriftKindName.CHANGED, managers=managers, problem=f"its spec is invalid ({problem})"
        )
    fields = diff_fields(normalize_resource(desired), normalize_resource(found))
    if not fields:
        return None
    return ObjectDrift(ref=wanted.ref, kind=DriftKindName.CHANGED, fields=fields, managers=managers)


def _decoded(obj: Mapping[str, Any]) -> tuple[Resource[Any] | None, list[Finding]]:
    found = obj.get("metadata")
    metadata: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    data = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {"name": metadata.get("name"), "namespace": metadata.get("namespace")},
        "spec": obj.get("spec") or {},
    }
    return decode_resource(data, source=SourceInfo(file="cluster", line=0), default_namespace="default")


def _other_managers(obj: Mapping[str, Any]) -> tuple[str, ...]:
    metadata = obj.get("metadata")
    entries = metadata.get("managedFields") if isinstance(metadata, Mapping) else None
    names = {
        entry.get("manager")
        for entry in (entries if isinstance(entries, list) else ())
        if isinstance(entry, Mapping) and isinstance(entry.get("manager"), str)
    }
    return tuple(sorted(str(name) for name in names - {FIELD_MANAGER, None}))[:5]


def cluster_config(objects: Iterable[Mapping[str, Any]]) -> tuple[MeshConfig, list[Finding]]:
    """The Istio config the cluster holds (objects as the API returns them): a fourth state for ``reconciler diff``."""
    resources: list[Resource[Any]] = []
    findings: list[Finding] = []
    for obj in objects:
        resource, found = _decoded(obj)
        findings.extend(found)
        if resource is not None:
            resources.append(resource)
    config, built = build_config(resources)
    return config, [*findings, *built]
