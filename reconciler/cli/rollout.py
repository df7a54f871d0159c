"""``reconciler rollout``: list, watch and steer the daemon's rollouts, like ``kubectl argo rollouts``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler.api.document import RolloutDocument, Weights
from reconciler.cli.client import Refused, Server, Unreachable, add_server_flags, duration, request, table
from reconciler.cli.exitcode import ExitCode
from reconciler.cli.run import parse_interval
from reconciler.engine.settings import SourceSettings
from reconciler.errors import UsageError
from reconciler.model.text import printable

__all__ = ["register", "render_rollout", "rollout_rows", "watch_exit"]

_HELP = """\
List, watch and steer rollouts: the walks of route weights a RolloutPolicy puts between
git and the proxies (docs/rollouts.md). A rollout is named by its RolloutPolicy: NAME in
namespace -n (default "default"), or NAMESPACE/NAME.

  list                     every rollout: phase, step, weights served and git's, counts
  status NAME [--watch]    one rollout: weights per route and destination, counts, time
                           left in the step, the last decision
  pause NAME               hold the step (its counts are not judged) until resume
  resume NAME              go on with a paused or stalled rollout; the step starts over
  promote NAME [--full]    serve the next step now (--full: git's weights now)
  abort NAME               serve the weights from before the rollout, and stop

Exit codes: 0 done (status: the rollout has not failed); 1 the rollout failed (RolledBack,
Aborted, Reverted), --timeout passed, no such rollout, or the command does not apply to
its phase (e.g. resume of a rollout that is not paused); 2 bad arguments; 3 the daemon
cannot be reached at --server; 4 the daemon refused the API token (missing or not its own).

Examples:
  reconciler rollout list
  reconciler rollout status reviews -n bookinfo
  reconciler rollout status bookinfo/reviews --watch --timeout 10m   # a pipeline's gate
  reconciler rollout promote reviews --full
  reconciler rollout abort reviews -o json
"""

_STATUS_HELP = """\
One rollout: its phase and step, the weights served and git's per route and destination,
the requests and errors per destination since the step's analysis window opened, the time
left in the step, and the last decision with its numbers.

With --watch the view is redrawn every second (one line per change when the output is not
a terminal) until the rollout ends, like `kubectl argo rollouts status`:

  exit 0  Succeeded: every proxy ACKed git's weights
  exit 1  RolledBack, Aborted or Reverted (a commit went back to the weights from before
          it: the change being watched is not live), or --timeout passed
  exit 3  the daemon cannot be reached (at the start; later, once --timeout passed)
  exit 4  the daemon refused the API token (missing or not its own)

Paused and Stalled are waited through (someone may resume or promote). A new commit that
sets other weights supersedes the rollout: the policy's new rollout takes its place and
--watch follows it, so the exit code is the new rollout's. Until a rollout exists under
NAME (the daemon has not seen the commit yet) --watch waits --grace (default 10s, never past
--timeout), then exits 1 saying no rollout is under NAME: a name with no rollout is not waited
on until --timeout. To wait for one commit, wait until it is served first:
reconciler status --wait SHA && reconciler rollout status NAME --watch

Examples:
  reconciler rollout status reviews
  reconciler rollout status reviews --watch --timeout 10m
  reconciler rollout status reviews -o json
"""

#: Phases --watch ends on, with the exit code; the others are waited through.
_WATCH_EXITS = {
    "Succeeded": ExitCode.OK,
    "RolledBack": ExitCode.FAILED,
    "Aborted": ExitCode.FAILED,
    "Reverted": ExitCode.FAILED,
}
#: How often --watch asks the daemon.
_WATCH_SECONDS = 1.0
#: How long --watch waits for a rollout to appear under a name that has none (a commit the daemon has not seen yet).
_GRACE = "10s"
#: Clears a terminal and homes the cursor, for --watch's redraw.
_CLEAR = "\x1b[H\x1b[2J"

_ACTIONS = {
    "pause": "hold the step until resume",
    "resume": "go on with a paused or stalled rollout (the step starts over)",
    "promote": "serve the next step now (--full: git's weights now)",
    "abort": "serve the weights from before the rollout, and stop it",
}


def register(commands: Any) -> None:
    rollout = commands.add_parser(
        "rollout", help="list, watch and steer rollouts", description=_HELP, formatter_class=_Raw
    )
    rollout.set_defaults(handler=_usage(rollout))
    verbs = rollout.add_subparsers(title="commands", metavar="COMMAND")
    listing = verbs.add_parser("list", help="every rollout", description="Every rollout of the served revision.")
    _common(listing)
    listing.set_defaults(handler=_list)
    status = verbs.add_parser("status", help="one rollout; --watch it", description=_STATUS_HELP, formatter_class=_Raw)
    _common(status, named=True)
    status.add_argument("-w", "--watch", action="store_true", help="redraw every second until the rollout ends")
    status.add_argument("--timeout", help="how long --watch waits, e.g. 10m (default: until the rollout ends)")
    status.add_argument(
        "--grace",
        default=_GRACE,
        help=f"how long --watch waits for a rollout to appear under NAME before it exits 1 (default {_GRACE})",
    )
    status.set_defaults(handler=_status)
    for verb, what in _ACTIONS.items():
        action = verbs.add_parser(verb, help=what, description=f"{what[0].upper()}{what[1:]}.")
        _common(action, named=True)
        if verb == "promote":
            action.add_argument("--full", action="store_true", help="serve git's weights now, skipping every step")
        action.set_defaults(handler=_command, verb=verb)


class _Raw(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written: they hold tables and examples."""


def _common(parser: argparse.ArgumentParser, *, named: bool = False) -> None:
    if named:
        parser.add_argument("name", metavar="NAME", help="the RolloutPolicy's name, or NAMESPACE/NAME")
        parser.add_argument("-n", "--namespace", help=f"its namespace (default {SourceSettings().namespace})")
    add_server_flags(parser)
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")


def _usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def usage(_: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE

    return usage


def _policy(args: argparse.Namespace) -> str:
    """``namespace/name`` from NAME and -n."""
    name: str = args.name
    if "/" in name:
        if args.namespace is not None:
            raise UsageError(f"{name!r} names its namespace already: drop -n, or give NAME alone")
        return name
    return f"{args.namespace or SourceSettings().namespace}/{name}"


def _reporting(action: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """What the daemon could not do, on stderr: exit 3 when it did not answer, 1 when it refused the command.

    A refused token (:class:`Denied`) is left to ``main``: exit 4, as for every command.
    """

    def run(args: argparse.Namespace) -> int:
        try:
            return action(args)
        except Unreachable as error:
            print(f"reconciler: {error}", file=sys.stderr)
            return ExitCode.UNREACHABLE
        except Refused as error:
            print(printable(f"reconciler: {error}"), file=sys.stderr)
            return ExitCode.FAILED

    return run


def _fetch_rollout(server: Server, policy: str) -> RolloutDocument:
    return _document(request(server, f"/api/v1/rollouts/{policy}"), server=server)


def _document(data: Any, *, server: Server) -> RolloutDocument:
    try:
        return RolloutDocument.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise Unreachable(f"{server} did not answer with a rollout document: {error!r}") from error


@_reporting
def _list(args: argparse.Namespace) -> int:
    server = Server.of(args)
    data = request(server, "/api/v1/rollouts")
    rollouts = [_document(r, server=server) for r in data["rollouts"]]
    if args.output == "json":
        print(json.dumps({"rollouts": [r.to_json() for r in rollouts]}, indent=2))
    elif not rollouts:
        print("No rollouts.")
    else:
        header = ["NAMESPACE", "NAME", "PHASE", "STEP", "SERVED", "GOAL", "CANARY", "STABLE", "DECIDED"]
        rows = [[*r.policy.split("/", 1), *row[1:]] for r, row in zip(rollouts, rollout_rows(rollouts), strict=True)]
        print("\n".join(table([header, *rows])))
    return ExitCode.OK


def rollout_rows(rollouts: Sequence[RolloutDocument], *, now: float | None = None) -> list[list[str]]:
    """One row per rollout: policy, phase, step, served, goal, canary and stable (requests/errors), decided."""
    moment = time.time() if now is None else now
    return [
        [
            r.policy,
            r.phase,
            f"{r.step + 1}/{r.steps + 1}",
            _weights(r.served, routes=_moving(r), labels=_short_labels(r)),
            _weights(r.goal, routes=_moving(r), labels=_short_labels(r)),
            f"{r.canary.requests}/{r.canary.errors}" if r.canary else "-",
            f"{r.stable.requests}/{r.stable.errors}" if r.stable else "-",
            f"{duration(moment - r.decided_at)} ago" if r.decided_at is not None else "-",
        ]
        for r in rollouts
    ]


def _short_labels(rollout: RolloutDocument) -> Mapping[str, str]:
    """Destination labels for a table cell: the subset alone when every destination is one host's."""
    labels = {label for weights in (rollout.served, rollout.goal) for split in weights.values() for label in split}
    hosts = {label.rsplit(":", 1)[0] for label in labels}
    if len(hosts) == 1 and all(":" in label for label in labels):
        return {label: label.rsplit(":", 1)[1] for label in labels}
    return {label: label for label in labels}


def _moving(rollout: RolloutDocument) -> list[str]:
    """The routes a table cell shows: those whose served weights are not git's, or all when none differ."""
    moving = [route for route, split in rollout.served.items() if rollout.goal.get(route) != split]
    return moving or list(rollout.served)


def _weights(weights: Weights, *, routes: Sequence[str], labels: Mapping[str, str]) -> str:
    """Each distinct split of ``routes``, weighted destinations only: ``v1 90, v2 10``."""
    splits = []
    for split in (weights[route] for route in routes if route in weights):
        text = ", ".join(f"{labels[label]} {weight}" for label, weight in sorted(split.items()) if weight)
        if text not in splits:
            splits.append(text)
    return " | ".join(splits) or "-"


def render_rollout(rollout: RolloutDocument, *, now: float) -> str:
    """The human view of one rollout; what the daemon reports is escaped."""
    lines = [
        f"ROLLOUT    {rollout.policy}  (VirtualServices: {', '.join(rollout.virtual_services)})",
        f"REVISION   {rollout.sha[:12]}",
        f"PHASE      {rollout.phase}",
        f"STEP       {rollout.step + 1} of {rollout.steps + 1} (the last serves git's weights)",
        f"TIME       {_time_left(rollout, now=now)}",
    ]
    decided = f"{duration(now - rollout.decided_at)} ago: " if rollout.decided_at is not None else ""
    lines.append(f"DECISION   {decided}{rollout.message or '-'}")
    lines.append("")
    rows = [["ROUTE", "DESTINATION", "SERVED", "GOAL", "REQUESTS", "ERRORS"]]
    for route in sorted(rollout.served.keys() | rollout.goal.keys()):
        served, goal = rollout.served.get(route, {}), rollout.goal.get(route, {})
        for index, destination in enumerate(sorted(served.keys() | goal.keys())):
            counts = rollout.counts.get(destination)
            rows.append(
                [
                    route if index == 0 else "",
                    destination,
                    str(served.get(destination, 0)),
                    str(goal.get(destination, 0)),
                    str(counts.requests) if counts else "-",
                    str(counts.errors) if counts else "-",
                ]
            )
    lines.extend(table(rows))
    return "\n".join(printable(line) for line in lines)


def _time_left(rollout: RolloutDocument, *, now: float) -> str:
    if rollout.phase != "Progressing":
        return {"Paused": "held until resume, promote or abort", "Stalled": "held: see the decision"}.get(
            rollout.phase, "-"
        )
    deadline = f"{duration(max(rollout.deadline - now, 0))}" if rollout.deadline is not None else "-"
    if rollout.acked_at is None:
        # Acknowledged: every proxy ACKed it (xds), and/or the API server accepted it (CRD mode).
        return f"waiting for the step to be acknowledged; Stalled in {deadline} unless it is"
    look = rollout.next_look_at
    next_look = "as soon as the canary has minRequests" if look is None or look <= now else f"in {duration(look - now)}"
    return f"acknowledged {duration(now - rollout.acked_at)} ago; next look {next_look}; decided within {deadline}"


def watch_exit(phase: str) -> ExitCode | None:
    """The exit code of ``rollout status --watch`` once the rollout is in ``phase``; None: keep watching."""
    return _WATCH_EXITS.get(phase)


@_reporting
def _status(args: argparse.Namespace) -> int:
    policy = _policy(args)
    if args.watch:
        return _watch(args, policy)
    rollout = _fetch_rollout(Server.of(args), policy)
    _show(rollout, output=args.output)
    return ExitCode.FAILED if watch_exit(rollout.phase) is ExitCode.FAILED else ExitCode.OK


def _show(rollout: RolloutDocument, *, output: str) -> None:
    if output == "json":
        print(json.dumps(rollout.to_json(), indent=2))
    else:
        print(render_rollout(rollout, now=time.time()))


def _watch(args: argparse.Namespace, policy: str) -> int:
    started = time.monotonic()
    deadline = None if args.timeout is None else started + parse_interval(args.timeout)
    grace = started + parse_interval(args.grace)
    terminal = args.output == "table" and sys.stdout.isatty()
    answered = False
    found = False
    shown: object = None
    while True:
        expired = deadline is not None and time.monotonic() >= deadline
        try:
            rollout = _fetch_rollout(Server.of(args), policy)
        except Unreachable:
            # A daemon restarting mid-watch is waited for; one that never answered is the wrong --server.
            if not answered or expired:
                raise
            time.sleep(_WATCH_SECONDS)
            continue
        except Refused as error:
            if error.status != 404:
                raise
            if expired or (not found and time.monotonic() >= grace):
                waited = args.timeout if expired else args.grace
                raise Refused(f"{error} (waited {waited})", status=error.status) from error
            if not answered:
                print(
                    printable(f"waiting up to {args.grace} for a rollout under RolloutPolicy {policy}"), file=sys.stderr
                )
            answered = True
            time.sleep(_WATCH_SECONDS)
            continue
        answered = found = True
        shown = _redraw(rollout, output=args.output, terminal=terminal, shown=shown)
        outcome = watch_exit(rollout.phase)
        if outcome is not None:
            return outcome
        if expired:
            print(printable(f"reconciler: {policy} is still {rollout.phase} after {args.timeout}"), file=sys.stderr)
            return ExitCode.FAILED
        time.sleep(_WATCH_SECONDS)


def _redraw(rollout: RolloutDocument, *, output: str, terminal: bool, shown: object) -> object:
    """Show the rollout: redrawn on a terminal, else once per change (a CI log is not flooded); what was shown."""
    if terminal:
        print(_CLEAR + render_rollout(rollout, now=time.time()), flush=True)
        return rollout
    change = (rollout.sha, rollout.phase, rollout.step, rollout.message)
    if change == shown:
        return shown
    if output == "json":
        print(json.dumps(rollout.to_json()), flush=True)
    else:
        [row] = rollout_rows([rollout])
        print(printable(f"{time.strftime('%H:%M:%S')} {'  '.join(row[1:5])}: {rollout.message}"), flush=True)
    return change


@_reporting
def _command(args: argparse.Namespace) -> int:
    policy = _policy(args)
    path = f"/api/v1/rollouts/{policy}/{args.verb}" + ("?full=true" if getattr(args, "full", False) else "")
    server = Server.of(args)
    rollout = _document(request(server, path, method="POST"), server=server)
    if args.output == "json":
        print(json.dumps(rollout.to_json(), indent=2))
    else:
        print(
            printable(f"{policy}: {rollout.phase}, step {rollout.step + 1} of {rollout.steps + 1}: {rollout.message}")
        )
    return ExitCode.OK
