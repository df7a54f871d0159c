"""``reconciler status``: the daemon's revision and per-proxy sync table, like ``istioctl proxy-status``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from reconciler.api.document import API_SERVER, PROXIES, EngineDocument, ProxyDocument, StatusDocument
from reconciler.api.standby import FOLLOWER_REASON
from reconciler.cli.client import Refused, Server, Standby, Unreachable, add_server_flags, duration, request, table
from reconciler.cli.exitcode import ExitCode
from reconciler.cli.rollout import rollout_rows
from reconciler.cli.run import parse_interval
from reconciler.model.text import printable, quote_path
from reconciler.rollout.decide import Acknowledgement
from reconciler.translate.snapshot import SHORT_NAMES
from reconciler.validate.findings import Finding

__all__ = ["WaitOutcome", "is_healthy", "register", "render_status", "wait_outcome"]

_HELP = """\
Show what the daemon serves and whether every proxy has accepted it.

The first block is the config: the branch head, the revision being served, the
last error (for a refused commit: each finding with file:line), and the rollouts still
walking (`reconciler rollout` shows more). The table lists each
connected proxy with its labels and, per xDS type, SYNCED (ACKed), STALE (sent, not yet
ACKed) or NACKED (rejected: the proxy keeps its previous config), like `istioctl
proxy-status`. Every type whose sent version is not the ACKed one gets a row in a second
table below: both versions and, for a NACK, Envoy's message.

Exit code: 0 when the head is served and every connected proxy runs it (or none is
connected); 1 when the head is refused or not yet served (including while git cannot be
fetched, and Rejected: a proxy NACKed it and the daemon went back to the last revision
every proxy ACKed), a proxy NACKED, or a proxy is still behind the served revision after
--grace; 2 bad arguments; 3 the daemon cannot be reached at --server (not running, wrong
address); 4 the daemon refused the request: no API token was given (--token-file FILE or
$RECONCILER_API_TOKEN) or it is not the daemon's (the message says which, never the token);
5 the daemon is a follower replica (--leader-elect): the message names the leader to ask.

With --wait SHA the command blocks until that commit is served and every connected proxy
has ACKed it (with --sink kubernetes: the API server accepted its objects too; alone, that
is all) (exit 0), or the daemon refused it (exit 1: the finding or Envoy's reason is
printed), or --timeout passes (exit 1). A commit that does not touch the config counts as
served once it is the head. A CI job can `git push` and then wait on the outcome:

  git push && reconciler status --wait "$(git rev-parse HEAD)" --timeout 2m

Examples:
  reconciler status
  reconciler status --server http://reconciler.mesh-system:18001 --output json
  reconciler status --wait 3f2c9e1 --timeout 2m
"""

_WARNINGS_SHOWN = 5
#: The phases of a rollout still walking.
_ACTIVE = ("Progressing", "Paused", "Stalled")
#: Served-config origins that differ from git on purpose: shown as intended, never as drift.
_INTENDED = ("rollout-step", "rollback")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "status",
        help="served revision and proxy sync table",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_flags(parser)
    parser.add_argument(
        "-o", "--output", "--format", dest="format", choices=["table", "json"], default="table", help="output format"
    )
    parser.add_argument(
        "--grace", default="30s", help="how long a proxy may lag the served revision (default %(default)s)"
    )
    parser.add_argument("--wait", metavar="SHA", help="block until this commit is served and ACKed, or refused")
    parser.add_argument("--timeout", default="2m", help="how long --wait waits (default %(default)s)")
    parser.set_defaults(handler=_status)


def _fetch(server: Server) -> StatusDocument:
    try:
        return StatusDocument.from_json(request(server, "/api/v1/status"))
    except Refused as error:
        raise Unreachable(f"cannot reach the daemon at {server}: {error}") from error
    except (KeyError, TypeError, ValueError) as error:
        raise Unreachable(f"{server} did not answer with a status document: {error!r}") from error


def _following(status: StatusDocument, server: Server) -> Standby | None:
    """A follower replica serves no config: what to tell the caller instead (its message names the leader)."""
    engine = status.engine
    if engine.reason != FOLLOWER_REASON:
        return None
    return Standby(f"the daemon at {server} is a follower: {printable(engine.message)}")


def _age(moment: datetime | None, now: datetime) -> str:
    return "-" if moment is None else duration((now - moment).total_seconds())


def _finding_lines(findings: Sequence[Finding]) -> list[str]:
    return [
        f"         {quote_path(f.file)}:{f.line}: {f.code.value} {f.message}" + (f" ({f.path})" if f.path else "")
        for f in findings
    ]


def _accepted(engine: EngineDocument) -> str:
    """Who accepted the served revision once it is synced, in words: the API server, every proxy, or both."""
    return Acknowledgement(proxies=PROXIES in engine.synced_by, api_server=API_SERVER in engine.synced_by).done


def _synced_line(status: StatusDocument, now: datetime) -> str:
    if status.engine.synced:
        return f"yes, {_accepted(status.engine)} it {_age(status.engine.synced_at, now)} ago"
    if API_SERVER in status.engine.synced_by and not status.proxies:
        return "no, the API server has not accepted the served revision yet"
    if not status.proxies:
        return "no proxies connected"
    behind = sum(1 for p in status.proxies if p.acked_generation < status.engine.generation)
    return f"no, {behind} of {len(status.proxies)} proxies have not ACKed the served revision yet"


def _short(version: str | None) -> str:
    """A sha or content-hash version cut to 12 characters, the width every column of this output uses."""
    return (version or "-")[:12]


def _labels(labels: Mapping[str, str]) -> str:
    """``k=v,k=v`` sorted by key, ``<none>`` when there are none: kubectl's ``--show-labels``."""
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels)) or "<none>"


def _unsynced_rows(proxies: Sequence[ProxyDocument]) -> list[list[str]]:
    """One row per proxy and type whose sent version is not (yet) the ACKed one, or that was NACKed."""
    rows = []
    for proxy in proxies:
        for name in SHORT_NAMES.values():
            entry = proxy.types[name]
            if entry.sent == entry.acked and not entry.nacked:
                continue
            # Envoy's NACK text can span lines; one table row must stay one line.
            message = " ".join(entry.nack.message.split()) if entry.nacked and entry.nack else ""
            rows.append([proxy.node_id, name, entry.state, _short(entry.sent), _short(entry.acked), message])
    return rows


def render_status(status: StatusDocument, *, now: datetime) -> str:
    """The human view of a status document; what the daemon reports is escaped, never interpreted by the terminal.

    A node id, label, commit subject or message holding a newline or an ANSI escape is
    shown as ``\\n`` or ``\\u001b``: it cannot add a line or repaint the table.
    """
    engine = status.engine
    served_sha, served_message = (engine.served.sha, engine.served.message) if engine.served else (None, "")
    lines = [
        f"REPO     {engine.repo}  branch={engine.branch}  path={engine.path or '/'}",
        f"HEAD     {_short(engine.head_sha)}",
        f"SERVED   {_short(served_sha)}  {served_message}".rstrip(),
        f"SYNCED   {_synced_line(status, now)}",
        f"STATE    {engine.reason}: {engine.message}",
    ]
    origin = engine.origin
    if origin is not None and origin.change in _INTENDED:
        # e.g. "rollout step 2 (50%)" or "rolled back: default/reviews"
        label = (
            f"rollout {origin.step or ''}".rstrip() if origin.change == "rollout-step" else origin.step or "rollback"
        )
        lines.append(f"INTENDED {label}, at {_short(origin.sha)}: weights differ from git's on purpose (not drift)")
    error = engine.last_error
    if error:
        lines.append(f"ERROR    {error.reason} at {_short(error.sha)}: {error.message}")
        lines.extend(_finding_lines(error.findings))
    if engine.warnings:
        lines.append(f"WARNINGS {len(engine.warnings)} about the served config (reconciler validate shows them all)")
        lines.extend(_finding_lines(engine.warnings[:_WARNINGS_SHOWN]))
    lines.extend(_rollout_lines(status, now=now))
    lines.extend(_cluster_lines(status, now=now))
    lines.append("")
    if not status.proxies:
        lines.append("No proxies connected.")
        return "\n".join(printable(line) for line in lines)
    drift = {entry.node_id: entry for entry in status.drift if entry.source == "proxy"}
    rows = [["NAME", *SHORT_NAMES.values(), "VERSION", "DRIFT", "CONNECTED", "LABELS"]]
    for proxy in status.proxies:
        states = [proxy.types[name].state for name in SHORT_NAMES.values()]
        version = _short(proxy.acked_snapshot_version)
        checked = drift[proxy.node_id].state if proxy.node_id in drift else "-"
        rows.append([proxy.node_id, *states, version, checked, _age(proxy.connected_since, now), _labels(proxy.labels)])
    lines.extend(table(rows))
    for entry in status.drift:
        if not entry.drifted or entry.source != "proxy":
            continue
        lines += ["", f"DRIFT    {entry.node_id}: {entry.message}"]
        lines.extend(f"         {item.detail}" for item in entry.items)
        if entry.total > len(entry.items):
            lines.append(f"         ... and {entry.total - len(entry.items)} more")
        if entry.repushed_at:
            lines.append(f"         re-pushed {_age(entry.repushed_at, now)} ago")
    unsynced = _unsynced_rows(status.proxies)
    if unsynced:
        lines.append("")
        lines.extend(table([["NAME", "TYPE", "STATE", "SENT", "ACKED", "NACK"], *unsynced]))
    return "\n".join(printable(line) for line in lines)


def _cluster_lines(status: StatusDocument, *, now: datetime) -> list[str]:
    """CRD mode: the cluster's Istio objects against git (state, then what differs)."""
    lines = []
    for entry in (entry for entry in status.drift if entry.source == "cluster"):
        lines.append(f"CLUSTER  {entry.state}: {entry.message}")
        lines.extend(f"         {item.detail}" for item in entry.items)
        if entry.total > len(entry.items):
            lines.append(f"         ... and {entry.total - len(entry.items)} more")
        if entry.repushed_at:
            lines.append(f"         re-applied {_age(entry.repushed_at, now)} ago")
    return lines


def _rollout_lines(status: StatusDocument, *, now: datetime) -> list[str]:
    """The rollouts still walking (Progressing, Paused, Stalled): policy, phase, step, served against git's."""
    active = [r for r in status.rollouts if r.phase in _ACTIVE]
    if not active:
        return []
    rows = [row[:5] for row in rollout_rows(active, now=now.timestamp())]
    lines = table([["POLICY", "PHASE", "STEP", "SERVED", "GOAL"], *rows])
    return [
        f"ROLLOUTS {len(active)} walking (reconciler rollout status NAME shows one)",
        *(f"         {line}" for line in lines),
    ]


def _seconds_since(moment: datetime | None, now: datetime) -> float:
    if moment is None:
        return float("inf")
    return (now - moment).total_seconds()


def is_healthy(status: StatusDocument, *, now: datetime, grace_seconds: float) -> bool:
    """Head served; no proxy NACKED or drifted; none behind the served generation for longer than the grace period.

    "Behind" is by generation, not by per-type state: a proxy SYNCED on an older snapshot,
    or one that was never sent anything, is not running what is served.
    """
    engine = status.engine
    if engine.last_error or not engine.served:
        return False
    served_age = _seconds_since(engine.served_since, now)
    if any(entry.drifted for entry in status.drift):
        return False
    for proxy in status.proxies:
        if proxy.nacked:
            return False
        waited = min(served_age, _seconds_since(proxy.connected_since, now))
        if proxy.acked_generation < engine.generation and waited > grace_seconds:
            return False
    return True


class WaitOutcome(StrEnum):
    """Where a commit ``reconciler status --wait`` waits for stands."""

    SERVED = "served"  # served (or the head with no config change) and ACKed by every connected proxy
    REFUSED = "refused"  # the daemon refused it: validation, translation, removal guard or a NACK
    PENDING = "pending"  # not yet either


def wait_outcome(status: StatusDocument, sha: str) -> WaitOutcome:
    """Whether commit ``sha`` (full or abbreviated) is served and ACKed, refused, or neither yet."""
    engine = status.engine
    error = engine.last_error
    if error is not None and error.sha is not None and error.sha.startswith(sha):
        return WaitOutcome.REFUSED
    # No proxy connected: nothing to wait for from the proxies, only from the API server in CRD mode.
    acked = engine.synced or (not status.proxies and API_SERVER not in engine.synced_by)
    served = engine.served is not None and engine.served.sha.startswith(sha)
    # A commit that changed nothing under --path is never "served" itself: it is done once it is the head.
    head_unchanged = engine.head_sha is not None and engine.head_sha.startswith(sha) and error is None
    if acked and (served or (head_unchanged and engine.reason == "UpToDate")):
        return WaitOutcome.SERVED
    return WaitOutcome.PENDING


#: How often --wait asks the daemon.
_WAIT_POLL_SECONDS = 0.5


def _wait(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + parse_interval(args.timeout)
    while True:
        try:
            status = _fetch(Server.of(args))
        except Unreachable as error:
            # A daemon restarting mid-wait: keep asking until the deadline.
            if time.monotonic() >= deadline:
                print(f"reconciler: {error}", file=sys.stderr)
                return ExitCode.UNREACHABLE
            time.sleep(_WAIT_POLL_SECONDS)
            continue
        if (standby := _following(status, Server.of(args))) is not None:
            raise standby  # it never serves the commit while it follows: ask the leader
        outcome = wait_outcome(status, args.wait)
        if outcome is not WaitOutcome.PENDING or time.monotonic() >= deadline:
            return _report_wait(args, status, outcome)
        time.sleep(_WAIT_POLL_SECONDS)


def _report_wait(args: argparse.Namespace, status: StatusDocument, outcome: WaitOutcome) -> int:
    engine = status.engine
    if outcome is WaitOutcome.SERVED:
        print(f"{args.wait}: served, {_accepted(engine)} it")
        return ExitCode.OK
    refusal = engine.last_error
    if outcome is WaitOutcome.REFUSED and refusal is not None:
        print(printable(f"{args.wait}: refused ({refusal.reason}): {refusal.message}"))
        for line in _finding_lines(refusal.findings):
            print(printable(line))
        return ExitCode.FAILED
    print(printable(f"{args.wait}: not served after {args.timeout}; the daemon says {engine.reason}: {engine.message}"))
    return ExitCode.FAILED


def _status(args: argparse.Namespace) -> int:
    grace = parse_interval(args.grace)
    if args.wait:
        return _wait(args)
    try:
        status = _fetch(Server.of(args))
    except Unreachable as error:
        print(f"reconciler: {error}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    now = datetime.now(UTC)
    if args.format == "json":
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(render_status(status, now=now))
    if (standby := _following(status, Server.of(args))) is not None:
        raise standby
    return ExitCode.OK if is_healthy(status, now=now, grace_seconds=grace) else ExitCode.FAILED
