"""The route table: VirtualService changes as a person reads them in a pull request.

One row per host and HTTP rule, each change in a few characters::

    reviews.bookinfo.svc.cluster.local  route[0]  v1 90→50  v2 10→50
    reviews.bookinfo.svc.cluster.local  route[1]  + timeout 2s  retries 3→5  - subset v3

A destination is shown by its subset (and port) when every destination of the rule is
the same host, by ``host/subset:port`` otherwise. Rows come from the field changes of the
resource view, so both views always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.diff.changes import Change, FieldChange, ObjectChange
from reconciler.model.config import Kind
from reconciler.model.source import format_path

__all__ = ["RouteRow", "route_table"]

#: Field paths (under a rule) shown by a shorter name.
_LABELS: Mapping[tuple[str | int, ...], str] = {("retries", "attempts"): "retries"}


@dataclass(frozen=True, slots=True)
class RouteRow:
    """The changes to one HTTP rule (``route[i]``; empty for the VirtualService's other fields) for one host."""

    host: str
    route: str
    virtual_service: str
    items: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "route": self.route, "virtualService": self.virtual_service, "changes": self.items}


def route_table(
    changes: Sequence[ObjectChange], *, old: Mapping[str, Any], new: Mapping[str, Any]
) -> tuple[RouteRow, ...]:
    """Rows for every VirtualService in ``changes``; ``old``/``new`` are their normalized forms by ``ns/name``."""
    rows: list[RouteRow] = []
    for change in changes:
        if change.kind != Kind.VIRTUAL_SERVICE.value:
            continue
        old_spec = old.get(change.name, {}).get("spec", {})
        new_spec = new.get(change.name, {}).get("spec", {})
        by_rule: dict[int, list[str]] = {}
        for field in _fields(change, old_spec, new_spec):
            rule, item = _item(field, old_spec, new_spec)
            by_rule.setdefault(rule, []).append(item)
        hosts = sorted({*old_spec.get("hosts", ()), *new_spec.get("hosts", ())})
        for host in hosts:
            rows.extend(
                RouteRow(
                    host=host,
                    route="" if rule < 0 else f"route[{rule}]",
                    virtual_service=change.name,
                    items=tuple(items),
                )
                for rule, items in sorted(by_rule.items())
            )
    return tuple(sorted(rows, key=lambda row: (row.host, row.virtual_service)))


def _fields(change: ObjectChange, old_spec: Any, new_spec: Any) -> Sequence[FieldChange]:
    """A changed VirtualService's own field changes; an added or removed one as each of its rules added or removed."""
    if change.change is Change.CHANGED:
        return change.fields
    spec = new_spec if change.change is Change.ADDED else old_spec
    return [
        FieldChange(
            path=("spec", "http", index),
            change=change.change,
            old=rule if change.change is Change.REMOVED else None,
            new=rule if change.change is Change.ADDED else None,
        )
        for index, rule in enumerate(spec.get("http", ()))
    ]


def _item(field: FieldChange, old_spec: Any, new_spec: Any) -> tuple[int, str]:
    """(rule index, or -1 outside the HTTP rules; the change as the table shows it)."""
    path = field.path
    if len(path) < 3 or path[:2] != ("spec", "http") or not isinstance(path[2], int):
        return -1, _generic(path[1:], field)
    index, rest = path[2], path[3:]
    labels = _DestinationLabels(_rule(old_spec, index), _rule(new_spec, index))
    if not rest:
        rule = field.new if field.change is Change.ADDED else field.old
        return index, f"{field.change.sign} rule {_describe(rule, labels)}"
    if rest[0] == "route" and len(rest) >= 2 and isinstance(rest[1], str):
        label = labels(rest[1])
        if len(rest) == 2 and field.change is Change.ADDED:
            return index, f"+ {labels.word(rest[1])} {label} {field.new.get('weight', 0)}"
        if len(rest) == 2 and field.change is Change.REMOVED:
            return index, f"- {labels.word(rest[1])} {label}"
        if rest[2:] == ("weight",):
            return index, f"{label} {_text(field.old, absent='0')}→{_text(field.new, absent='0')}"
        return index, f"{label} {_generic(rest[2:], field)}"
    return index, _generic(rest, field)


def _generic(path: tuple[str | int, ...], field: FieldChange) -> str:
    label = _LABELS.get(path) or format_path(path)
    if field.change is Change.ADDED:
        return f"+ {label} {_text(field.new)}"
    if field.change is Change.REMOVED:
        return f"- {label} {_text(field.old)}"
    return f"{label} {_text(field.old)}→{_text(field.new)}"


def _rule(spec: Any, index: int) -> Any:
    rules = spec.get("http", ())
    return rules[index] if index < len(rules) else {}


class _DestinationLabels:
    """Short names for the destinations of one rule (both sides): the subset when all share one host."""

    def __init__(self, old_rule: Any, new_rule: Any) -> None:
        keys = {*old_rule.get("route", {}), *new_rule.get("route", {})}
        self._one_host = len({_split(key)[0] for key in keys}) == 1

    def __call__(self, key: str) -> str:
        _host, rest = _split(key)
        return rest.lstrip("/") if self._one_host and rest else key

    def word(self, key: str) -> str:
        return "subset" if "/" in key else "destination"


def _split(key: str) -> tuple[str, str]:
    """``host/subset:port`` → (``host``, ``/subset:port``)."""
    cut = min((position for position in (key.find("/"), key.find(":")) if position >= 0), default=len(key))
    return key[:cut], key[cut:]


def _describe(rule: Any, labels: _DestinationLabels) -> str:
    parts = []
    if destinations := rule.get("route"):
        parts.append("→ " + ", ".join(f"{labels(key)} {value.get('weight', 0)}" for key, value in destinations.items()))
    parts.extend(f"{key} {_text(value)}" for key, value in rule.items() if key != "route")
    return "  ".join(parts)


def _text(value: Any, *, absent: str = "") -> str:
    """A value in a few characters: scalars as written, objects as ``key=value`` pairs."""
    if value is None:
        return absent
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return " ".join(f"{key}={_text(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    return str(value)
