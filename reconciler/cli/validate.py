"""``reconciler validate``: check Istio networking YAML before it is pushed, like ``istioctl analyze``.

Reads every ``*.yaml``/``*.yml`` file under the given paths, decodes and validates them
as one config (schema, per-resource rules, cross-resource analyzers) and prints each
finding with file, line and field path. Exit status: 0 no errors, 1 errors, 2 misuse.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TypeVar

from reconciler.cli.args import add_limit_flags, limits_from_args
from reconciler.cli.exitcode import ExitCode
from reconciler.engine.settings import KubeSettings
from reconciler.errors import UsageError
from reconciler.loader import load_files, read_paths
from reconciler.validate.findings import Finding, Severity, sort_findings

__all__ = ["register", "run", "summary_line"]

# Generic so the CLI's own ArgumentParser subclass type-checks without importing main (which imports us).
_Parser = TypeVar("_Parser", bound=argparse.ArgumentParser)

_DESCRIPTION = """\
Validate Istio networking config (VirtualService, DestinationRule, Gateway,
ServiceEntry) the way Istio would, without a cluster: every *.yaml / *.yml file
under PATH is read (directories recursively) and checked as one config.

Each finding names the file and line, severity and code, the resource, what is
wrong and the field path, often with a hint:

  mesh/reviews.yaml:14: ERROR IST0101 VirtualService default/reviews: Referenced
      host+subset in destinationrule not found: "reviews+v3"
      (spec.http[0].route[1].destination.subset) — did you mean 'v2'?
  (wrapped here; each finding is one line, sorted by file and line, then a
  summary such as "1 error, 0 warnings, 0 info in 12 resources from 4 files")

Codes: IST0101 missing reference (gateway, host, subset), IST0106 schema,
IST0109 two mesh VirtualServices for one host, IST0112 port required,
IST0130/IST0131 unreachable rule / ineffective match, IST0132 host not in Gateway,
IST0145 conflicting Gateways, IST0173 subset selects no endpoint, IST0174 unknown
DestinationRule host; RC0xxx are reconciler's own (YAML syntax, duplicates,
unsupported fields, non-Istio kinds, files that are not UTF-8, over a size limit
or symlinked out of PATH; RC0203: Envoy itself would reject the translated
value).

Warnings also list what the daemon would serve differently from what Istio
would (RC0202: TLS termination, non-HTTP ports, a host without endpoints). A
host NAME.NAMESPACE.svc.cluster.local that no ServiceEntry declares gets its
endpoints only from a cluster the daemon watches (--kubeconfig, --in-cluster):
give --cluster-services to check as for such a daemon.

Untrusted input stays bounded: a file over --max-file-size is a finding and is
not parsed, config files together over --max-revision-size are refused unread,
and a symlink whose target is outside the directory given is never read (a
warning). A value a finding echoes is shortened to its first 80 characters, and
control characters in file names and values are escaped.
"""

_EPILOG = """\
examples:
  reconciler validate mesh/                       a whole directory
  reconciler validate vs.yaml dr.yaml             some files
  reconciler validate mesh/ --namespace shop      namespace for resources that set none
  reconciler validate mesh/ --cluster-services    routing to Kubernetes Services the daemon reads
  reconciler validate mesh/ --format json | jq '.findings[] | select(.severity == "error")'

exit status: 0 no error-level findings (warnings and info allowed), 1 at least one
error, 2 usage problem (a PATH that does not exist, no *.yaml / *.yml file under any
PATH, a bad option).
"""


def register(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Add the ``validate`` command to the CLI's subcommands."""
    parser = commands.add_parser(
        "validate",
        help="check Istio networking YAML (schema, references, conflicts) before you push",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="YAML files or directories to check")
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: one line per finding and a summary (default); json: one object for tools",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        default="default",
        metavar="NS",
        help="namespace of resources whose metadata sets none (default: %(default)s)",
    )
    parser.add_argument(
        "--cluster-services",
        action="store_true",
        help="the config is served beside a Kubernetes cluster (the daemon runs with --kubeconfig or --in-cluster): "
        "hosts NAME.NAMESPACE.svc.DOMAIN are its Services, not missing ones (no RC0202 'has no endpoints')",
    )
    parser.add_argument(
        "--cluster-domain",
        default=KubeSettings().domain,
        metavar="DOMAIN",
        help="with --cluster-services: the cluster's DNS domain (default: %(default)s)",
    )
    add_limit_flags(parser)
    parser.set_defaults(handler=run)


def summary_line(findings: tuple[Finding, ...] | list[Finding], *, resources: int, files: int) -> str:
    """``3 errors, 1 warning, 2 info in 12 resources from 4 files``."""
    counts = Counter(finding.severity for finding in findings)
    errors, warnings, infos = counts[Severity.ERROR], counts[Severity.WARNING], counts[Severity.INFO]
    return (
        f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}, {infos} info"
        f" in {resources} resource{'s' * (resources != 1)} from {files} file{'s' * (files != 1)}"
    )


def run(args: argparse.Namespace) -> int:
    """Validate ``args.paths``; print findings; 0 when nothing is error-level, else 1 (UsageError → 2)."""
    limits = limits_from_args(args)
    read = read_paths(args.paths, limits=limits)
    if not read.files and not read.skipped:
        # Checking nothing must not read as a pass: `validate README.md` or a mistyped directory.
        named = ", ".join(str(path) for path in args.paths)
        raise UsageError(
            f"no *.yaml or *.yml files under {named}; config files end in .yaml or .yml (any case), "
            "directories are searched recursively, skipping hidden files and directories"
        )
    result = load_files(
        read.files,
        skipped=read.skipped,
        default_namespace=args.namespace,
        limits=limits,
        cluster_domain=args.cluster_domain if args.cluster_services else None,
    )
    # What the daemon would warn about once proxies connect (a host without endpoints...), beside validation's own.
    findings = sort_findings([*result.findings, *result.notes])
    if args.format == "json":
        document = {"findings": [finding.to_json() for finding in findings], "resources": result.documents}
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for finding in findings:
            print(finding.format())
        print(summary_line(findings, resources=result.documents, files=len(read.files)))
    return ExitCode.OK if result.ok else ExitCode.FAILED
