"""``reconciler status``: the daemon's revision and per-proxy sync table, like ``istioctl proxy-status``."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from reconciler.cli.exitcode import ExitCode
from reconciler.cli.run import parse_interval
from reconciler.engine.settings import ApiSettings
from reconciler.errors import ReconcilerError
from reconciler.model.text import printable, quote_path

__all__ = ["is_healthy", "register", "render_status"]

_HELP = """\
Show what the daemon serves and whether every proxy has accepted it.

The first block is the config: the branch head, the revision being served, and the
last error (for a refused commit: each finding with file:line). The table lists each
connected proxy with its labels and, per xDS type, SYNCED (ACKed), STALE (sent, not yet
ACKed) or NACKED (rejected: the proxy keeps its previous config), like `istioctl
proxy-status`. Every type whose sent version is not the ACKed one gets a row in a second
table below: both versions and, for a NACK, Envoy's message.

Exit code: 0 when the head is served and every connected proxy runs it (or none is
connected); 1 when the head is refused or not yet served (including while git cannot be
fetched, and Rejected: a proxy NACKed it and the daemon went back to the last revision
every proxy ACKed), a proxy NACKED, or a proxy is still behind the served revision after
--grace; 2 bad arguments; 3 the daemon cannot be reached at --server (not running, wrong
address).

Examples:
  reconciler status
  reconciler status --server http://reconciler.mesh-system:18001 --format json
"""

_TYPES = ("CDS", "LDS", "EDS", "RDS")
_WARNINGS_SHOWN = 5


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "status",
        help="served revision and proxy sync table",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server", default=f"http://{ApiSettings().address}", help="daemon HTTP address (default %(default)s)"
    )
    parser.add_argument("--format", choices=["table", "json"], default="table", help="output format")
    parser.add_argument(
        "--grace", default="30s", help="how long a proxy may lag the served revision (default %(default)s)"
    )
    parser.set_defaults(handler=_status)


class _Unreachable(ReconcilerError):
    """The daemon's status API did not answer with a status document."""


def _fetch(server: str) -> dict[str, Any]:
    url = server.rstrip("/") + "/api/v1/status"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: dict[str, Any] = json.load(response)
            return body
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise _Unreachable(f"cannot reach the daemon at {server}: {reason}") from error


def _age(timestamp: str | None, now: datetime) -> str:
    if not timestamp:
        return "-"
    seconds = int((now - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _table(rows: list[list[str]]) -> list[str]:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _finding_lines(findings: list[dict[str, Any]]) -> list[str]:
    return [
        f"         {quote_path(f['file'])}:{f['line']}: {f['code']} {f['message']}"
        + (f" ({f['path']})" if f.get("path") else "")
        for f in findings
    ]


def _synced_line(status: dict[str, Any], now: datetime) -> str:
    if not status.get("proxies"):
        return "no proxies connected"
    if status.get("synced"):
        return f"yes, every proxy ACKed it {_age(status.get('syncedAt'), now)} ago"
    behind = sum(1 for p in status["proxies"] if p.get("ackedGeneration", 0) < status.get("generation", 0))
    return f"no, {behind} of {len(status['proxies'])} proxies have not ACKed the served revision yet"


def _short(version: str | None) -> str:
    """A sha or content-hash version cut to 12 characters, the width every column of this output uses."""
    return (version or "-")[:12]


def _labels(labels: dict[str, str]) -> str:
    """``k=v,k=v`` sorted by key, ``<none>`` when there are none: kubectl's ``--show-labels``."""
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels)) or "<none>"


def _unsynced_rows(proxies: list[dict[str, Any]]) -> list[list[str]]:
    """One row per proxy and type whose sent version is not (yet) the ACKed one, or that was NACKed."""
    rows = []
    for proxy in proxies:
        for name in _TYPES:
            entry = proxy["types"][name]
            nacked = entry["state"] == "NACKED"
            if entry.get("sent") == entry.get("acked") and not nacked:
                continue
            # Envoy's NACK text can span lines; one table row must stay one line.
            message = " ".join(entry["nack"]["message"].split()) if nacked and entry.get("nack") else ""
            rows.append(
                [proxy["nodeId"], name, entry["state"], _short(entry.get("sent")), _short(entry.get("acked")), message]
            )
    return rows


def render_status(status: dict[str, Any], *, now: datetime) -> str:
    """The human view of a status document; what the daemon reports is escaped, never interpreted by the terminal.

    A node id, label, commit subject or message holding a newline or an ANSI escape is
    shown as ``\\n`` or ``\\u001b``: it cannot add a line or repaint the table.
    """
    served = status.get("served") or {}
    lines = [
        f"REPO     {status.get('repo')}  branch={status.get('branch')}  path={status.get('path') or '/'}",
        f"HEAD     {_short(status.get('headSha'))}",
        f"SERVED   {_short(served.get('sha'))}  {served.get('message', '')!s}".rstrip(),
        f"SYNCED   {_synced_line(status, now)}",
        f"STATE    {status.get('reason')}: {status.get('message')}",
    ]
    error = status.get("lastError")
    if error:
        lines.append(f"ERROR    {error['reason']} at {_short(error.get('sha'))}: {error['message']}")
        lines.extend(_finding_lines(error["findings"]))
    warnings = status.get("warnings") or []
    if warnings:
        lines.append(f"WARNINGS {len(warnings)} about the served config (reconciler validate shows them all)")
        lines.extend(_finding_lines(warnings[:_WARNINGS_SHOWN]))
    lines.append("")
    proxies = status.get("proxies") or []
    if not proxies:
        lines.append("No proxies connected.")
        return "\n".join(printable(line) for line in lines)
    rows = [["NAME", *_TYPES, "VERSION", "CONNECTED", "LABELS"]]
    for proxy in proxies:
        states = [proxy["types"][name]["state"] for name in _TYPES]
        version = _short(proxy.get("ackedSnapshotVersion"))
        labels = _labels(proxy.get("labels") or {})
        rows.append([proxy["nodeId"], *states, version, _age(proxy.get("connectedSince"), now), labels])
    lines.extend(_table(rows))
    unsynced = _unsynced_rows(proxies)
    if unsynced:
        lines.append("")
        lines.extend(_table([["NAME", "TYPE", "STATE", "SENT", "ACKED", "NACK"], *unsynced]))
    return "\n".join(printable(line) for line in lines)


def _seconds_since(timestamp: str | None, now: datetime) -> float:
    if not timestamp:
        return float("inf")
    return (now - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds()


def is_healthy(status: dict[str, Any], *, now: datetime, grace_seconds: float) -> bool:
    """Head served; no proxy NACKED; none behind the served generation for longer than the grace period.

    "Behind" is by generation, not by per-type state: a proxy SYNCED on an older snapshot,
    or one that was never sent anything, is not running what is served.
    """
    if status.get("lastError") or not status.get("served"):
        return False
    generation = status.get("generation", 0)
    served_age = _seconds_since(status.get("servedSince"), now)
    for proxy in status.get("proxies") or []:
        if any(proxy["types"][name]["state"] == "NACKED" for name in _TYPES):
            return False
        waited = min(served_age, _seconds_since(proxy.get("connectedSince"), now))
        if proxy.get("ackedGeneration", 0) < generation and waited > grace_seconds:
            return False
    return True


def _status(args: argparse.Namespace) -> int:
    grace = parse_interval(args.grace)
    try:
        status = _fetch(args.server)
    except _Unreachable as error:
        print(f"reconciler: {error}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    now = datetime.now(UTC)
    if args.format == "json":
        print(json.dumps(status, indent=2))
    else:
        print(render_status(status, now=now))
    return ExitCode.OK if is_healthy(status, now=now, grace_seconds=grace) else ExitCode.FAILED
