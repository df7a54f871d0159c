"""Typed differences between two states of keyed objects, field by field (the engine is deepdiff).

Objects are plain values (dicts, lists, scalars) keyed by ``(kind, name)``. Two states may
come from anywhere: two git revisions today; what the daemon serves, what a proxy ACKed or
what a live Envoy dumps later. Each only has to be put in the same plain, canonical form.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from deepdiff import DeepDiff

from reconciler.model.source import format_path

__all__ = ["Change", "FieldChange", "ObjectChange", "diff_fields", "diff_objects"]

_V = TypeVar("_V")

_REPORTS: Mapping[str, str] = {
    "values_changed": "changed",
    "type_changes": "changed",
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
}


class Change(StrEnum):
    """What happened to an object or a field between the two states."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"

    @property
    def sign(self) -> str:
        """``+``, ``-`` or ``~``, as a diff line starts."""
        return {Change.ADDED: "+", Change.REMOVED: "-", Change.CHANGED: "~"}[self]


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field that differs: its path (keys and list indices), and the value on each side (None when absent)."""

    path: tuple[str | int, ...]
    change: Change
    old: Any = None
    new: Any = None

    @property
    def field_path(self) -> str:
        """The path as validation findings write it: ``spec.http[0].timeout``."""
        return format_path(self.path)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.field_path, "change": self.change.value, "old": self.old, "new": self.new}


@dataclass(frozen=True, slots=True)
class ObjectChange:
    """An object added, removed or changed; a changed one lists its fields, sorted by path."""

    kind: str
    name: str
    change: Change
    fields: tuple[FieldChange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "change": self.change.value,
            "fields": [field.to_json() for field in self.fields],
        }


def diff_fields(old: Any, new: Any) -> tuple[FieldChange, ...]:
    """Every leaf-most difference between two plain values, sorted by path."""
    old, new = _prune(old, new)
    # threshold_to_diff_deeper=0: always descend, so a dict whose every key changed still names each key.
    tree = DeepDiff(old, new, view="tree", verbose_level=2, threshold_to_diff_deeper=0)
    found: list[FieldChange] = []
    for report, levels in tree.items():
        change = Change(_REPORTS[report])
        for level in levels:
            found.append(
                FieldChange(
                    path=tuple(level.path(output_format="list")),
                    change=change,
                    old=None if change is Change.ADDED else level.t1,
                    new=None if change is Change.REMOVED else level.t2,
                )
            )
    return tuple(sorted(found, key=lambda field: _path_key(field.path)))


def diff_objects(
    old: Mapping[tuple[str, str], _V],
    new: Mapping[tuple[str, str], _V],
    *,
    plain: Callable[[_V, _V], tuple[Any, Any]],
    same: Callable[[_V, _V], bool] = operator.eq,
) -> tuple[ObjectChange, ...]:
    """Objects keyed by ``(kind, name)`` added, removed or changed, in key order.

    ``same`` decides cheaply that an object did not change (equality, or equal serialized
    bytes); only pairs it calls different are turned ``plain`` (both at once, so the parts
    equal on both sides may be left unconverted) and compared field by field.
    """
    changes: list[ObjectChange] = []
    for key in sorted(old.keys() | new.keys()):
        kind, name = key
        if key not in old:
            changes.append(ObjectChange(kind=kind, name=name, change=Change.ADDED))
        elif key not in new:
            changes.append(ObjectChange(kind=kind, name=name, change=Change.REMOVED))
        elif not same(old[key], new[key]):
            fields = diff_fields(*plain(old[key], new[key]))
            changes.append(ObjectChange(kind=kind, name=name, change=Change.CHANGED, fields=fields))
    return tuple(changes)


def _prune(old: Any, new: Any) -> tuple[Any, Any]:
    """Both values without the map entries equal on both sides, at every depth; paths stay the same.

    A sidecar's RouteConfiguration holds a virtual host per service: comparing the thousand
    equal ones with ``==`` (C speed) first leaves deepdiff the one that changed.
    """
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return old, new
    kept_old: dict[Any, Any] = {}
    kept_new: dict[Any, Any] = {}
    for key in old.keys() | new.keys():
        if key in old and key in new:
            if old[key] == new[key]:
                continue
            kept_old[key], kept_new[key] = _prune(old[key], new[key])
        elif key in old:
            kept_old[key] = old[key]
        else:
            kept_new[key] = new[key]
    return kept_old, kept_new


def _path_key(path: tuple[str | int, ...]) -> tuple[tuple[int, int, str], ...]:
    # Indices in numeric order (route[2] before route[10]); keys by name.
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in path)
