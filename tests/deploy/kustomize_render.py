"""Render a kustomization the way ``kustomize build`` does, for the subset deploy/ uses, in Python.

No kustomize library exists for Python; deploy/ sticks to what this renders exactly: ``resources``
(files, and directories: a base rendered first), ``namespace``, ``labels`` (metadata only), ``images``
(``newTag``/``newName``), a ``configMapGenerator`` of ``files`` without a name hash, and ``patches``:
inline JSON 6902 ``add`` operations on a target named by kind and name. Anything else in a kustomization.yaml fails
the render, so a feature added to deploy/ cannot slip past the tests unrendered. Where ``kubectl``
is installed, ``tests/deploy/test_deploy_manifests.py`` checks this against ``kubectl kustomize``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CLUSTER_SCOPED", "Manifest", "render"]

Manifest = dict[str, Any]

#: Kinds without a namespace (kustomize leaves their metadata.namespace unset).
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"})

_KNOWN_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "namespace",
        "labels",
        "resources",
        "images",
        "configMapGenerator",
        "generatorOptions",
        "patches",
    }
)


def render(directory: Path) -> list[Manifest]:
    """The manifests ``kustomize build directory`` prints, in resource order (generated ConfigMaps last)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - _KNOWN_FIELDS
    assert not unknown, f"{directory}/kustomization.yaml uses {sorted(unknown)}, which this renderer does not know"
    manifests = [
        document
        for resource in kustomization.get("resources", [])
        for document in (
            render(directory / resource)
            if (directory / resource).is_dir()
            else yaml.safe_load_all((directory / resource).read_text())
        )
        if document is not None
    ]
    for patch in kustomization.get("patches", []):
        _patch(manifests, patch)
    generators = kustomization.get("configMapGenerator", [])
    manifests += [_generated_config_map(directory, spec, kustomization) for spec in generators]
    labels = {key: value for entry in kustomization.get("labels", []) for key, value in entry["pairs"].items()}
    for entry in kustomization.get("labels", []):
        assert set(entry) == {"pairs"}, f"labels options {sorted(set(entry) - {'pairs'})} are not rendered here"
    return [_transform(manifest, kustomization, labels) for manifest in manifests]


def _patch(manifests: list[Manifest], patch: dict[str, Any]) -> None:
    """Apply an inline JSON 6902 patch of ``add`` operations to the one manifest its target names."""
    assert set(patch) == {"target", "patch"}, "only inline patches are rendered here"
    assert set(patch["target"]) == {"kind", "name"}, "only targets by kind and name are rendered here"
    target = patch["target"]
    [manifest] = [m for m in manifests if m["kind"] == target["kind"] and m["metadata"]["name"] == target["name"]]
    for operation in yaml.safe_load(patch["patch"]):
        assert operation["op"] == "add", f"patch op {operation['op']!r} is not rendered here"
        *parents, last = operation["path"].lstrip("/").split("/")
        node: Any = manifest
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), operation["value"])
        else:
            node[last] = operation["value"]


def _generated_config_map(directory: Path, spec: dict[str, Any], kustomization: dict[str, Any]) -> Manifest:
    assert (kustomization.get("generatorOptions") or {}).get("disableNameSuffixHash"), "name hashes are not rendered"
    assert set(spec) <= {"name", "files"}, f"configMapGenerator options {sorted(spec)} are not rendered here"
    data = {}
    for item in spec["files"]:
        key, _, path = item.rpartition("=")
        data[key or Path(path).name] = (directory / path).read_text()
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": spec["name"]}, "data": data}


def _transform(original: Manifest, kustomization: dict[str, Any], labels: dict[str, str]) -> Manifest:
    manifest = copy.deepcopy(original)
    metadata = manifest.setdefault("metadata", {})
    namespace = kustomization.get("namespace")
    if namespace and manifest["kind"] not in CLUSTER_SCOPED:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = {**metadata.get("labels", {}), **labels}
    for container in _containers(manifest):
        container["image"] = _image(container["image"], kustomization.get("images", []))
    return manifest


def _containers(manifest: Manifest) -> list[dict[str, Any]]:
    pod = manifest.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _image(image: str, rules: list[dict[str, str]]) -> str:
    name, _, tag = image.partition(":")
    for rule in rules:
        if rule["name"] == name:
            return f"{rule.get('newName', name)}:{rule.get('newTag', tag)}" if rule.get("newTag", tag) else name
    return image
