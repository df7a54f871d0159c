"""``reconciler diff``: what a change does to routing, and what a daemon and its proxies really run.

Three comparisons, one command (exit status like diff(1): 0 equal, 1 different, 2 trouble, 4 refused token):

- ``--from REV --to REV``, offline: reads the config files of both revisions straight from git
  (the daemon's rule for which files are config, and its size limits), loads and validates
  each, and prints the pure comparison of :mod:`reconciler.diff`: a route table, the Istio
  resources, and the Envoy resources per proxy shape;
- ``PATH --server URL``: a working tree (desired) against what the daemon serves
  (``/api/v1/config/manifests``, loaded back into a config): the same views, plus which of the
  proxies connected to the daemon the change reaches;
- ``--server URL --proxy NODE``: one proxy's served, ACKed and live (its ``/config_dump``, read
  by the daemon) versions per xDS type, and every resource it runs other than served;
- ``PATH --kubeconfig FILE``: a working tree against the Istio objects CRD mode applied to a cluster
  (those carrying its ownership label), the cluster being a fourth state beside desired, served
  and live: a ``kubectl edit`` shows as a difference, normalized like the others.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from reconciler.cli.args import add_inventory_flag, add_limit_flags, inventory_from_args, limits_from_args
from reconciler.cli.client import Denied, Server, add_server_flags, request, table
from reconciler.cli.exitcode import ExitCode
from reconciler.diff import diff_configs, format_json, format_markdown, format_text
from reconciler.diff.envoy import ProxyGroup
from reconciler.diff.manifests import manifest_files
from reconciler.diff.mesh import MeshDiff
from reconciler.errors import ReconcilerError, UsageError
from reconciler.kube.apply import managed_objects
from reconciler.kube.client import KubeClient
from reconciler.kube.istio import cluster_config
from reconciler.kube.lease import default_namespace
from reconciler.loader import ConfigFiles, DecodeCache, LoadResult, load_files, read_paths
from reconciler.model.limits import InputLimits, SkippedFile
from reconciler.model.text import printable
from reconciler.sources.git.tree import read_revision
from reconciler.validate.findings import Finding, Severity

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

Against a running daemon (--server URL):
  PATH --server URL          a working tree against what the daemon serves now, in
                             the same three views, plus which of the proxies connected
                             to it the change reaches ("Connected proxies: 1 of 1
                             gateway: RDS only"). The daemon answers the config it
                             serves as manifests; both sides are translated here for
                             every shape either implies and for each connected shape.
                             While a rollout walks, the daemon serves a step's weights,
                             not git's: that difference is intended and said so.
  PATH --kubeconfig FILE     a working tree against the Istio objects the daemon applied
                             to a cluster (--sink kubernetes): what an apply would change,
                             including edits made outside git (kubectl edit).
  --server URL --proxy NODE  one proxy: per xDS type the version served, the version it
                             ACKed and how many resources it runs (from its admin
                             /config_dump, read by the daemon at the address its
                             bootstrap announces), then every resource it runs other
                             than served: missing, held statically by its bootstrap,
                             changed, or not served by this daemon at all.
"""

_EPILOG = """\
examples:
  reconciler diff                                         HEAD~1 → HEAD, whole repository
  reconciler diff --from origin/main --to HEAD --path mesh
  reconciler diff --from origin/main --to HEAD --path mesh --output markdown > comment.md
  reconciler diff --from v1.4 --to v1.5 --repo ~/mesh -o json | jq '.routes[]'
  reconciler diff mesh --server http://127.0.0.1:18001      my edits against what is served
  reconciler diff --server http://127.0.0.1:18001 --proxy ingress-1
  reconciler diff mesh --kubeconfig ~/.kube/config           my edits against the cluster (CRD mode)

exit status (like diff), in every --output: 0 no routing change (or the proxy runs
what it is served), 1 different, 2 trouble (not a git repository, an unknown revision,
no --path at a revision, --to or PATH does not validate, the daemon cannot be reached
or knows no such --proxy), 4 the daemon refused the API token (missing: --token-file
FILE or $RECONCILER_API_TOKEN; or not its own).
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
    parser.add_argument(
        "config_dir", nargs="?", type=Path, metavar="PATH", help="with --server: a directory of YAML (desired)"
    )
    add_server_flags(parser, default=None, help="a daemon's HTTP address: compare with what it serves")
    parser.add_argument("--proxy", metavar="NODE", help="with --server: served, ACKed and live of one proxy")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="FILE",
        help="compare PATH with the Istio objects applied to this kubeconfig's cluster (CRD mode)",
    )
    add_inventory_flag(parser, purpose="with --kubeconfig: the daemon's inventory ConfigMap: the objects it applied")
    add_limit_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Read, load, compare and print; see the command's help for exit codes."""
    try:
        return _diff(args)
    except Denied:
        raise  # exit 4 in main, as for every command that asks the daemon: fix the token, not the input
    except ReconcilerError as error:
        # Every failure is 2 here, not 1: 1 means "different", as in diff(1).
        print(f"reconciler: error: {error}", file=sys.stderr)
        return ExitCode.USAGE


def _diff(args: argparse.Namespace) -> int:
    if args.kubeconfig is not None:
        if args.config_dir is None or args.server is not None or args.proxy is not None:
            raise UsageError("--kubeconfig compares PATH with the cluster: give PATH, and neither --server nor --proxy")
        return _against_cluster(args)
    if args.server is None:
        if args.config_dir is not None or args.proxy is not None:
            raise UsageError("PATH and --proxy compare with a running daemon: add --server URL")
        return _revisions(args)
    if args.proxy is not None:
        if args.config_dir is not None:
            raise UsageError("--proxy compares a proxy with what it is served; leave PATH out")
        return _proxy(args)
    if args.config_dir is None:
        raise UsageError("--server needs PATH (a working tree to compare) or --proxy NODE")
    return _against_served(args)


def _load_desired(args: argparse.Namespace, *, limits: InputLimits, cache: DecodeCache) -> LoadResult | None:
    """PATH loaded and validated; None (findings printed) when the daemon would refuse it."""
    read = read_paths([args.config_dir], limits=limits)
    loaded = load_files(read.files, skipped=read.skipped, default_namespace=args.namespace, cache=cache, limits=limits)
    if not loaded.ok:
        _print_findings(loaded.findings)
        print(f"reconciler: error: {args.config_dir} does not validate; the daemon would refuse it", file=sys.stderr)
        return None
    return loaded


def _against_served(args: argparse.Namespace) -> int:
    limits = limits_from_args(args)
    cache = DecodeCache()  # shared by both sides: each distinct Envoy resource is checked once
    loaded = _load_desired(args, limits=limits, cache=cache)
    if loaded is None:
        return ExitCode.USAGE
    # JSON of a config is about the size of its YAML; the loader then holds it to the same limits as PATH.
    answer = request(Server.of(args), "/api/v1/config/manifests", max_bytes=2 * limits.revision_bytes)
    if not isinstance(answer, dict) or not isinstance(answer.get("manifests"), list):
        raise UsageError(f"{args.server} did not answer a served config")
    served = load_files(manifest_files(answer["manifests"]), cache=cache, limits=limits)
    if not served.ok:
        _print_findings(served.findings)
        raise UsageError(
            f"the config {args.server} serves does not load here: is this reconciler older than the daemon's?"
        )
    origin: dict[str, Any] = answer["origin"] if isinstance(answer.get("origin"), dict) else {}
    sha = str(origin.get("sha", ""))[:12]
    change = str(origin.get("change", ""))
    if change in ("rollout-step", "rollback"):
        print(
            printable(
                f"reconciler: note: the daemon serves a {change} {origin.get('step') or ''} of {sha}: its weights"
                " differ from git's on purpose, so those differences are intended"
            ),
            file=sys.stderr,
        )
    diff = diff_configs(
        served.config,
        loaded.config,
        connected=_groups(answer),
        old_translated=served.translations,
        new_translated=loaded.translations,
    )
    title = printable(f"served ({sha or 'unknown'})..{args.config_dir}")
    base = {"served": origin, "path": str(args.config_dir), "unlistedProxies": answer.get("unlistedProxies", 0)}
    return _print(args, diff, title=title, base=base, findings=loaded.findings)


def _groups(answer: dict[str, Any]) -> list[ProxyGroup]:
    """The connected proxies' groups the daemon listed; an entry that is not one is left out."""
    listed = answer.get("proxies")
    found = (ProxyGroup.from_json(item, index=index) for index, item in enumerate(listed or ()))
    return [group for group in found if group is not None] if isinstance(listed, list) else []


def _against_cluster(args: argparse.Namespace) -> int:
    loaded = _load_desired(args, limits=limits_from_args(args), cache=DecodeCache())
    if loaded is None:
        return ExitCode.USAGE
    if not args.kubeconfig.is_file():
        raise UsageError(f"--kubeconfig {args.kubeconfig}: no such file")
    namespace, name = inventory_from_args(args)
    inventory = (namespace or default_namespace(), name)
    cluster, _ = cluster_config(asyncio.run(_read_cluster(args.kubeconfig, inventory=inventory)))
    # RolloutPolicies stay in git (the cluster holds no such kind); while a rollout walks, weights differ on purpose.
    desired = dataclasses.replace(loaded.config, rollout_policies=())
    diff = diff_configs(cluster, desired, envoy=False)
    title = printable(f"cluster..{args.config_dir}")
    return _print(
        args, diff, title=title, base={"cluster": str(args.kubeconfig), "path": str(args.config_dir)}, findings=()
    )


async def _read_cluster(kubeconfig: Path, *, inventory: tuple[str, str]) -> list[Any]:
    client = await KubeClient.connect(kubeconfig)
    try:
        return await managed_objects(client, inventory=inventory)
    finally:
        await client.close()


def _proxy(args: argparse.Namespace) -> int:
    found = request(Server.of(args), f"/api/v1/proxies/{quote(args.proxy, safe='')}/config")
    if not isinstance(found, dict) or not isinstance(found.get("types"), dict):
        raise UsageError(f"{args.server} did not answer a proxy's config")
    if args.output == "json":
        print(json.dumps(found, indent=2))
    elif args.output == "markdown":
        sys.stdout.write(_proxy_markdown(found))
    else:
        sys.stdout.write(_proxy_text(found))
    acked = all(entry.get("served") == entry.get("acked") for entry in found["types"].values())
    return ExitCode.OK if acked and not found.get("total") else ExitCode.FAILED


def _proxy_text(found: Any) -> str:
    lines = [printable(f"proxy {found.get('nodeId')}: live {found.get('live')}"), ""]
    lines.extend(table([["TYPE", "SERVED", "ACKED", "LIVE"], *_version_rows(found)]))
    lines += ["", _in_sync(found)] if not found.get("drift") else [""]
    lines.extend(f"  {line}" for line in _drift_lines(found))
    return "\n".join(lines).rstrip("\n") + "\n"


def _proxy_markdown(found: Any) -> str:
    """The same as :func:`_proxy_text`, as a heading, a table and a fenced list (an issue or a PR comment)."""
    lines = [printable(f"### proxy {found.get('nodeId')}: live {found.get('live')}"), ""]
    lines += ["| type | served | acked | live |", "| --- | --- | --- | --- |"]
    lines.extend(
        "| " + " | ".join(f"`{printable(cell).replace('|', '¦')}`" for cell in row) + " |"
        for row in _version_rows(found)
    )
    if not found.get("drift"):
        return "\n".join([*lines, "", _in_sync(found)]).rstrip("\n") + "\n"
    return "\n".join([*lines, "", "```", *_drift_lines(found), "```"]) + "\n"


def _version_rows(found: Any) -> list[list[str]]:
    """Per xDS type: served, ACKed (``=`` when the same) and how many resources it runs live."""
    rows = []
    for short, entry in found.get("types", {}).items():
        live = entry.get("live")
        acked = "=" if entry.get("acked") == entry.get("served") else entry.get("acked") or "-"
        rows.append([short, str(entry.get("served")), acked, "-" if live is None else f"{live} resources"])
    return rows


def _in_sync(found: Any) -> str:
    return "It runs every resource it is served, as served." if found.get("live") == "checked" else ""


def _drift_lines(found: Any) -> list[str]:
    drift = found.get("drift", [])
    lines = []
    for item in drift:
        fields = ", ".join(str(field.get("path")) for field in item.get("fields", [])[:5])
        lines.append(printable(f"{item.get('kind'):<8} {item.get('type')} {item.get('name')}  {fields}".rstrip()))
    if found.get("total", 0) > len(drift):
        lines.append(f"... and {found['total'] - len(drift)} more")
    return lines


def _print_findings(findings: tuple[Finding, ...]) -> None:
    for finding in findings:
        print(finding.format(), file=sys.stderr)


def _print(
    args: argparse.Namespace, diff: MeshDiff, *, title: str, base: dict[str, Any], findings: tuple[Finding, ...]
) -> int:
    if args.output == "json":
        sys.stdout.write(format_json(diff, base=base, findings=findings))
    elif args.output == "markdown":
        sys.stdout.write(format_markdown(diff, title=title, findings=findings))
    else:
        _print_findings(findings)
        sys.stdout.write(format_text(diff, title=title))
    return ExitCode.OK if diff.equal else ExitCode.FAILED


def _revisions(args: argparse.Namespace) -> int:
    limits = limits_from_args(args)
    path = args.path.strip("/")
    cache = DecodeCache()  # the two revisions share most files: each distinct file is parsed and checked once
    old_sha, old_read = _read(args, args.from_rev, path=path, limits=limits)
    new_sha, new_read = _read(args, args.to_rev, path=path, limits=limits)
    old = _load(args, old_read, limits=limits, cache=cache)
    # Loading is deterministic: the same config files (a commit that changed only a README) load the same.
    new = old if new_read == old_read else _load(args, new_read, limits=limits, cache=cache)
    if not new.ok:
        _print_findings(new.findings)
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
    base = {"from": {"revision": args.from_rev, "sha": old_sha}, "to": {"revision": args.to_rev, "sha": new_sha}}
    return _print(args, diff, title=title, base={**base, "path": path}, findings=new.findings)


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
