"""The ``reconciler`` command: kubectl-like verbs over the GitOps routing daemon.

Exit codes follow one rule everywhere (:class:`~reconciler.cli.exitcode.ExitCode`): 0 success,
1 the thing checked is not OK (config errors, proxies not synced), 2 the command was used
wrongly; the commands that ask the daemon (`status`, `rollout`, `diff --server`) add 3, the
daemon could not be reached, 4, it refused the caller (API token missing or wrong), and 5, it is a
follower replica (leader election) and named the leader to ask.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from reconciler import __version__
from reconciler.cli import bootstrap, certs, diff, render, rollout, run, status, validate
from reconciler.cli.client import Denied, Standby
from reconciler.cli.exitcode import ExitCode
from reconciler.errors import ReconcilerError, UsageError

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]

_DESCRIPTION = """\
GitOps for service-mesh routing. Keep Istio networking YAML in git; reconciler
validates it, translates it to Envoy configuration and serves it to Envoy proxies
over ADS. Change traffic with `git push`; undo with `git revert`.

Typical flow:
  reconciler validate mesh/                    check config before you push
  reconciler render mesh/ --node-id gw-1 \\
      --label istio=ingressgateway             see what a proxy will get
  reconciler run --repo https://git.example/mesh.git --path mesh
                                               the daemon: git → Envoy
  reconciler status                            proxy sync table, like istioctl proxy-status
  reconciler rollout status reviews --watch    a rollout step by step, like kubectl argo rollouts
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors with exit code 2 and a hint, never a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\nTry '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reconciler",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    # Listed in the order a user meets them: check, compare, inspect, connect a proxy, run, watch.
    for command in (validate, diff, render, bootstrap, certs, run, status, rollout):
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Command | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    try:
        return handler(args)
    except UsageError as error:
        print(f"reconciler: error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    except Denied as error:
        print(f"reconciler: {error}", file=sys.stderr)
        return ExitCode.DENIED
    except Standby as error:
        print(f"reconciler: {error}", file=sys.stderr)
        return ExitCode.STANDBY
    except ReconcilerError as error:
        print(f"reconciler: {error}", file=sys.stderr)
        return ExitCode.FAILED
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
