"""A validated config written back as Kubernetes manifests that load into the same config.

What the daemon answers on ``/api/v1/config/manifests``: the config it serves now, which is not
always a commit (a rollout step or a rollback serves other weights), so the served
:class:`~reconciler.model.config.MeshConfig` itself is written out, resource by resource, in
load order. ``reconciler diff PATH --server URL`` loads them back (:func:`manifest_files`) with the
same loader and limits as a working tree, and compares both sides as it compares two revisions:
Istio resources, routes, and the Envoy resources per proxy shape.

The inverse of :mod:`reconciler.validate.schema`'s decoder, driven by the same type annotations:
a field at its default is left out, durations keep their spelling, ``Percentage`` fields are
written ``1%``, a RolloutPolicy check names its ``metric``. Fields the decoder ignored (unsupported
Istio fields) are not in the model and so not written. Pure.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.diff.normalize import field_default
from reconciler.model.common import Duration
from reconciler.model.config import MeshConfig, Resource
from reconciler.model.rolloutpolicy import Percentage
from reconciler.validate.schema import istio_name

__all__ = ["config_manifests", "manifest_files"]

#: The directory the served manifests are loaded under: findings about them name it.
SERVED_DIRECTORY = "served"


def config_manifests(config: MeshConfig) -> list[dict[str, Any]]:
    """Every resource of ``config`` as a Kubernetes object (``apiVersion``, ``kind``, ``metadata``, ``spec``)."""
    return [_manifest(resource) for resource in config.resources()]


def manifest_files(manifests: Sequence[Any]) -> dict[str, str]:
    """Manifests (as a daemon answered them, untrusted) as files for :func:`~reconciler.loader.load_files`.

    One file per object, named by its position, so they load in the order they were served
    (translation reads resources in load order) and each stays within the per-file size limit
    its source file kept. JSON is YAML: the loader parses and validates them like any file.
    """
    width = len(str(len(manifests)))
    return {
        f"{SERVED_DIRECTORY}/{index:0{width}d}.yaml": json.dumps(item, ensure_ascii=False)
        for index, item in enumerate(manifests)
    }


def _manifest(resource: Resource[Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": resource.name, "namespace": resource.namespace}
    if resource.metadata.labels:
        metadata["labels"] = dict(resource.metadata.labels)
    if resource.metadata.annotations:
        metadata["annotations"] = dict(resource.metadata.annotations)
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind.value,
        "metadata": metadata,
        "spec": _object(resource.spec),
    }


def _encode(annotation: Any, value: Any) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        choices = [arg for arg in args if arg is not type(None)]
        if len(choices) > 1:  # tagged by ``metric`` (RolloutPolicy checks), as the decoder reads it
            return {"metric": type(value).METRIC.value, **_object(value)}
        return _encode(choices[0], value)
    if origin is tuple:
        return [_encode(args[0], item) for item in value]
    if origin is Mapping:
        return {str(key): _encode(args[1], item) for key, item in value.items()}
    if annotation is Percentage:
        return f"{value.value!r}%"
    if isinstance(value, Duration):
        return value.text
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _object(value)
    return value


def _object(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cls: type = type(value)
    hints = _hints(cls)
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if item is None or item == field_default(field):
            continue
        out[istio_name(field.name)] = _encode(hints[field.name], item)
    return out


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)
