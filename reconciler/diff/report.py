"""A :class:`~reconciler.diff.mesh.MeshDiff` as text (a terminal), Markdown (a pull-request comment) or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.diff.changes import Change, ObjectChange
from reconciler.diff.envoy import ProxyDiff
from reconciler.diff.mesh import MeshDiff
from reconciler.diff.routes import RouteRow
from reconciler.model.text import excerpt
from reconciler.validate.findings import Finding

__all__ = ["format_json", "format_markdown", "format_text"]

#: How much of a value a text or Markdown line shows.
_VALUE_CHARS = 120


def format_text(diff: MeshDiff, *, title: str) -> str:
    """Route table, Istio resources, Envoy resources per proxy shape and the affected proxies."""
    if diff.equal:
        return f"{title}: no routing change\n"
    lines = [f"{title}: {_counts(diff.resources)}", "", "Routes"]
    lines.extend(f"  {line}" for line in _route_lines(diff.routes) or ["(no VirtualService changes)"])
    lines += ["", "Istio resources"]
    lines.extend(f"  {line}" for line in _change_lines(diff.resources))
    if diff.proxies:
        lines += ["", "Envoy resources"]
        for proxy, same_as in _proxies(diff.proxies):
            lines.append(f"  {_proxy_label(proxy)}: {', '.join(proxy.xds_types) or 'unchanged'}{same_as}")
            if not same_as:
                lines.extend(f"    {line}" for line in _change_lines(proxy.changes))
        lines += ["", f"Affected proxies: {diff.affected}"]
        if diff.connected:
            lines.append(f"Connected proxies: {diff.connected}")
    return "\n".join(lines) + "\n"


def format_markdown(diff: MeshDiff, *, title: str, findings: Sequence[Finding] = ()) -> str:
    """Headings, a table of route changes and fenced blocks of resource changes, for a PR comment."""
    lines = [f"### {title}", ""]
    if diff.equal:
        lines.append("No routing change.")
    else:
        lines += [f"{_counts(diff.resources)}. Affected proxies: {diff.affected}.", ""]
        if diff.connected:
            lines += [f"Connected proxies: {diff.connected}.", ""]
        if diff.routes:
            lines += ["#### Routes", "", "| host | route | changes |", "| --- | --- | --- |"]
            lines.extend(
                f"| `{row.host}` | {row.route or '—'} | {'<br>'.join(_cell(item) for item in row.items)} |"
                for row in diff.routes
            )
            lines.append("")
        lines += ["#### Istio resources", "", "```diff", *_change_lines(diff.resources), "```", ""]
        if diff.proxies:
            lines += ["#### Envoy resources", ""]
            for proxy, same_as in _proxies(diff.proxies):
                if not proxy.changes:
                    continue
                lines += [f"**{_proxy_label(proxy)}**: {', '.join(proxy.xds_types)}{same_as}", ""]
                if not same_as:
                    lines += ["```diff", *_change_lines(proxy.changes), "```", ""]
    if findings:
        lines += ["#### Findings", "", "```", *(finding.format() for finding in findings), "```"]
    return "\n".join(lines).rstrip("\n") + "\n"


def format_json(diff: MeshDiff, *, base: dict[str, Any], findings: Sequence[Finding] = ()) -> str:
    """The diff's document under ``base`` (revisions, path), with the findings, as indented JSON."""
    document = {**base, **diff.to_json(), "findings": [finding.to_json() for finding in findings]}
    return json.dumps(document, indent=2, default=str) + "\n"


def _counts(changes: Sequence[ObjectChange]) -> str:
    counted = {change: sum(1 for item in changes if item.change is change) for change in Change}
    return ", ".join(f"{count} {change.value}" for change, count in counted.items() if count) or "no change"


def _proxies(proxies: Sequence[ProxyDiff]) -> list[tuple[ProxyDiff, str]]:
    """Each proxy shape, and for a connected proxy's own shape `` (same resources as ...)`` when an earlier one's
    changes are the same: connected sidecars of a namespace differ in labels, rarely in what they get."""
    seen: dict[str, str] = {}
    shown: list[tuple[ProxyDiff, str]] = []
    for proxy in proxies:
        key = json.dumps([change.to_json() for change in proxy.changes], sort_keys=True, default=str)
        first = seen.setdefault(key, proxy.label)
        same = proxy.changes and not proxy.implied and first != proxy.label
        shown.append((proxy, f" (same resources as {first})" if same else ""))
    return shown


def _proxy_label(proxy: ProxyDiff) -> str:
    return f"{proxy.label} ({proxy.connected} connected)" if proxy.connected else proxy.label


def _route_lines(rows: Sequence[RouteRow]) -> list[str]:
    host_width = max((len(row.host) for row in rows), default=0)
    route_width = max((len(row.route) for row in rows), default=0)
    return [f"{row.host:<{host_width}}  {row.route:<{route_width}}  {'  '.join(row.items)}".rstrip() for row in rows]


def _change_lines(changes: Sequence[ObjectChange]) -> list[str]:
    lines: list[str] = []
    for change in changes:
        lines.append(f"{change.change.sign} {change.kind} {change.name}")
        for field in change.fields:
            if field.change is Change.CHANGED:
                lines.append(f"    {field.field_path}: {_value(field.old)} → {_value(field.new)}")
            else:
                value = field.new if field.change is Change.ADDED else field.old
                lines.append(f"  {field.change.sign} {field.field_path}: {_value(value)}")
    return lines


def _value(value: Any) -> str:
    # Whole added objects (a virtual host) would fill screens; the JSON output keeps them in full.
    return excerpt(json.dumps(value, sort_keys=True, default=str), limit=_VALUE_CHARS)


def _cell(text: str) -> str:
    # A pipe would end the table cell; backticks keep arrows and signs literal.
    return f"`{text.replace('|', '¦')}`"
