"""``reconciler diff``: what a change to the config repository does to routing, offline, between two git revisions.

Reads the config files of both revisions straight from git (the daemon's rule for which
files are config, and its size limits), loads and validates each, and prints the pure
comparison of :mod:`reconciler.diff`: a route table, the Istio resources, and the Envoy
resources per proxy shape. Exit status like diff(1): 0 equal, 1 different, 2 trouble.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeVar

from reconciler.cli.args import add_limit_flags, limits_from_args
from reconciler.cli.exitcode import ExitCode
from reconciler.diff import diff_configs, format_json, format_markdown, format_text
from reconciler.errors import ReconcilerError
from reconciler.loader import ConfigFiles, DecodeCache, LoadResult, load_files
from reconciler.model.limits import InputLimits, SkippedFile
from reconciler.sources.git.tree import read_revision
from reconciler.validate.findings import Severity

__all__ = ["register", "run"]

# Generic so the CLI's own ArgumentParser subclass type-checks without importing main (which imports us).
_Parser = TypeVar("_Parser", bound=argparse.ArgumentParser)

_DESCRIPTION = """\
Compare the mesh config of two git revisions, offline (no daemon, no cluster): what
a pull request changes in routing, and which Envoy proxies it touches.

Both revisions are read from the repository's objects (the working tree is not
used), loaded and validated as `reconciler run` would. Before comparing, both sides
are normalized, so a commit that only reformats, reorders or moves resources between
files is "equal": lists Istio treats as sets are sorted (hosts, gateways, exportTo,
match conditions) or keyed (route destinations by host/subset, subsets by name,
ports by number), short hosts are resolved (reviews → reviews.NS.svc.cluster.local),
defaults are filled in (one destination weighs 100) and durations spelled one way
(1000ms is 1s). HTTP rules stay in order: the first match wins.

Three views:
  Routes           per host and HTTP rule, in a few characters:
                     reviews.bookinfo.svc.cluster.local  route[0]  v1 90→50  v2 10→50
                     reviews.bookinfo.svc.cluster.local  route[1]  + timeout 2s  retries 3→5  - subset v3
  Istio resources  added (+), removed (-) and changed (~) resources with field paths
  Envoy resources  per proxy shape the config implies (a sidecar per namespace, a
                   gateway per Gateway selector): the clusters, endpoints, listeners
                   and routes that change, which xDS types (CDS, EDS, LDS, RDS) are
                   pushed, and a summary such as "sidecars: 3 of 3 namespaces: RDS only"

Validation: findings of --to are reported (stderr in text output, in the document
for markdown and json); an error there is exit 2 with file:line, since the daemon
would refuse that revision. Errors in --from are a warning: a pull request that
fixes a broken main still gets its diff (resources that did not load are missing
from the --from side).
"""

_EPILOG = """\
examples:
  reconciler diff                                         HEAD~1 → HEAD, whole repository
  reconciler diff --from origin/main --to HEAD --path mesh
  reconciler diff --from origin/main --to HEAD --path mesh --output markdown > comment.md
  reconciler diff --from v1.4 --to v1.5 --repo ~/mesh -o json | jq '.routes[]'

exit status (like diff): 0 no routing change, 1 different, 2 trouble (not a git
repository, an unknown revision, no --path at a revision, --to does not validate).
"""


def register(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Add the ``diff`` command to the CLI's subcommands."""
    parser = commands.add_parser(
        "diff",
        help="what routing changes between two git revisions (route table, resources, affected proxies)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--from", dest="from_rev", default="HEAD~1", metavar="REV", help="the base revision (default: %(default)s)"
    )
    parser.add_argument(
        "--to", dest="to_rev", default="HEAD", metavar="REV", help="the revision checked (default: %(default)s)"
    )
    parser.add_argument(
        "--repo", type=Path, default=Path("."), metavar="DIR", help="a directory in the git repository (default: .)"
    )
    parser.add_argument("--path", default="", metavar="SUBDIR", help="config directory inside the repo (default: root)")
    parser.add_argument(
        "--output",
        "-o",
        choices=("text", "markdown", "json"),
        default="text",
        help="text (default), markdown (a pull-request comment) or json (one document for tools)",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        default="default",
        metavar="NS",
        help="namespace of resources whose metadata sets none (default: %(default)s)",
    )
    add_limit_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Read, load, compare and print; see the command's help for exit codes."""
    try:
        return _diff(args)
    except ReconcilerError as error:
        # Every failure is 2 here, not 1: 1 means "different", as in diff(1).
        print(f"reconciler: error: {error}", file=sys.stderr)
        return ExitCode.USAGE


def _diff(args: argparse.Namespace) -> int:
    limits = limits_from_args(args)
    path = args.path.strip("/")
    cache = DecodeCache()  # the two revisions share most files: each distinct file is parsed and checked once
    old_sha, old_read = _read(args, args.from_rev, path=path, limits=limits)
    new_sha, new_read = _read(args, args.to_rev, path=path, limits=limits)
    old = _load(args, old_read, limits=limits, cache=cache)
    # Loading is deterministic: the same config files (a commit that changed only a README) load the same.
    new = old if new_read == old_read else _load(args, new_read, limits=limits, cache=cache)
    if not new.ok:
        for finding in new.findings:
            print(finding.format(), file=sys.stderr)
        print(f"reconciler: error: --to {args.to_rev} does not validate; the daemon would refuse it", file=sys.stderr)
        return ExitCode.USAGE
    if not old.ok:
        errors = sum(1 for finding in old.findings if finding.severity is Severity.ERROR)
        print(
            f"reconciler: warning: --from {args.from_rev} has {errors} validation error(s); what did not load"
            " is missing from its side",
            file=sys.stderr,
        )
    diff = diff_configs(old.config, new.config, old_translated=old.translations, new_translated=new.translations)
    title = f"{_named(args.from_rev, old_sha)}..{_named(args.to_rev, new_sha)}{f' {path}/' if path else ''}"
    if args.output == "json":
        base = {"from": {"revision": args.from_rev, "sha": old_sha}, "to": {"revision": args.to_rev, "sha": new_sha}}
        sys.stdout.write(format_json(diff, base={**base, "path": path}, findings=new.findings))
    elif args.output == "markdown":
        sys.stdout.write(format_markdown(diff, title=title, findings=new.findings))
    else:
        for finding in new.findings:
            print(finding.format(), file=sys.stderr)
        sys.stdout.write(format_text(diff, title=title))
    return ExitCode.OK if diff.equal else ExitCode.FAILED


def _named(revision: str, sha: str) -> str:
    """``origin/main (0a1b2c3d4e5f)``; a SHA given as the revision is shortened, not repeated."""
    return sha[:12] if sha.startswith(revision) else f"{revision} ({sha[:12]})"


def _read(args: argparse.Namespace, revision: str, *, path: str, limits: InputLimits) -> tuple[str, ConfigFiles]:
    sha, read = read_revision(args.repo, revision, path=path, limits=limits)
    # Keyed by path in the repository, so findings point at mesh/reviews.yaml:14, not reviews.yaml:14.
    return sha, _under(read, path)


def _load(args: argparse.Namespace, read: ConfigFiles, *, limits: InputLimits, cache: DecodeCache) -> LoadResult:
    return load_files(read.files, skipped=read.skipped, default_namespace=args.namespace, cache=cache, limits=limits)


def _under(read: ConfigFiles, path: str) -> ConfigFiles:
    if not path:
        return read
    return ConfigFiles(
        files={f"{path}/{name}": content for name, content in read.files.items()},
        skipped=tuple(
            SkippedFile(f"{path}/{item.path}", item.reason, size=item.size, files=item.files) for item in read.skipped
        ),
    )
