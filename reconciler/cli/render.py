"""``reconciler render``: print the Envoy configuration one proxy would receive, without running anything.

Loads and validates the YAML like ``reconciler validate``, translates it for the proxy the
options describe, and prints the snapshot in Envoy's own JSON (or YAML) form, grouped by
type: what ``reconciler run`` would serve that proxy over ADS, resource for resource.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TypeVar

import yaml
from google.protobuf.json_format import MessageToDict

from reconciler.cli.args import add_label_and_role, proxy_from_args
from reconciler.cli.exitcode import ExitCode
from reconciler.envoy import validate_config
from reconciler.errors import EnvoyError, UsageError
from reconciler.loader import load_paths
from reconciler.translate.proxy import DEFAULT_SIDECAR_PORT
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot
from reconciler.translate.static import static_bootstrap
from reconciler.translate.translator import Translation, translate
from reconciler.validate.findings import Finding, has_errors

__all__ = ["GROUPS", "format_document", "register", "render_document", "run", "snapshot_document"]

# Generic so the CLI's own ArgumentParser subclass type-checks without importing main (which imports us).
_Parser = TypeVar("_Parser", bound=argparse.ArgumentParser)

#: Output keys in push order (what a resource points at comes first), and the xDS type of each.
GROUPS: tuple[tuple[str, str], ...] = (
    ("clusters", CLUSTER),
    ("endpoints", ENDPOINT),
    ("listeners", LISTENER),
    ("routes", ROUTE),
)

_DESCRIPTION = """\
Print the Envoy configuration a proxy would get from the Istio networking YAML under
PATH: its clusters, endpoints (ClusterLoadAssignments), listeners and routes, in
Envoy's JSON field names, plus the snapshot version (a content hash: same config,
same version).

The proxy is described like `reconciler bootstrap` describes it: a node id, labels
(matched against Gateway selectors), an optional role and its namespace (for
exportTo and short host names). A proxy whose labels a Gateway selects renders as that
gateway: a listener per server port. Any other renders as a sidecar: one HTTP listener
on --outbound-port with a virtual host per service.

Findings go to stderr: validation errors stop the render (exit 1); what cannot be
translated yet (TCP/TLS routes, TLS origination, ...) is a warning (RC0202).
"""

_EPILOG = """\
examples:
  reconciler render mesh/ --node-id gw-1 --label istio=ingressgateway
  reconciler render mesh/ --node-id productpage-1 --namespace bookinfo --format yaml
  reconciler render mesh/ --node-id gw-1 --label istio=ingressgateway --validate
  reconciler render mesh/ --node-id s1 | jq '.routes[0].virtual_hosts[].name'

exit status: 0 rendered, 1 config has errors (or --validate: Envoy rejected it),
2 usage problem (a PATH that does not exist, a label not KEY=VALUE).
"""


def register(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Add the ``render`` command to the CLI's subcommands."""
    parser = commands.add_parser(
        "render",
        help="print the Envoy config (clusters, endpoints, listeners, routes) one proxy would get",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="YAML files or directories")
    parser.add_argument("--node-id", required=True, metavar="ID", help="the proxy's node id")
    add_label_and_role(parser, label_help="a label of the proxy (Gateway selectors match on labels); repeat for more")
    parser.add_argument(
        "--namespace",
        "-n",
        default="default",
        metavar="NS",
        help="namespace of the proxy, and of resources whose metadata sets none (default: %(default)s)",
    )
    parser.add_argument(
        "--outbound-port",
        type=int,
        default=DEFAULT_SIDECAR_PORT,
        metavar="N",
        help="port of a sidecar's outbound listener (default: %(default)s)",
    )
    parser.add_argument(
        "--format", choices=("json", "yaml"), default="json", help="output format (default: %(default)s)"
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="also check the result with `envoy --mode validate` (needs the envoy binary)",
    )
    parser.set_defaults(handler=run)


def render_document(translation: Translation) -> dict[str, Any]:
    """The printed form of a translation: ``version`` and each resource type as a list, by name."""
    return snapshot_document(translation.snapshot)


def snapshot_document(snapshot: Snapshot) -> dict[str, Any]:
    """``{"version": ..., "clusters": [...], "endpoints": [...], "listeners": [...], "routes": [...]}``.

    Resources are in Envoy's proto3 JSON with Envoy's own (snake_case) field names, as
    ``/config_dump`` shows them, sorted by name.
    """
    document: dict[str, Any] = {"version": snapshot.version}
    for key, type_url in GROUPS:
        document[key] = [
            _plain(MessageToDict(message, preserving_proto_field_name=True))
            for message in snapshot.resources(type_url).values()
        ]
    return document


def format_document(document: dict[str, Any], *, output_format: str = "json") -> str:
    """The text ``reconciler render`` prints: indented JSON (or block YAML), ending in a newline."""
    if output_format == "yaml":
        return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    return json.dumps(document, indent=2) + "\n"


def _plain(value: Any) -> Any:
    """Plain dicts all the way down: MessageToDict returns OrderedDicts for ``Any`` fields, which YAML refuses."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def run(args: argparse.Namespace) -> int:
    """Load, translate and print; findings to stderr. See the command's help for exit codes."""
    if not args.node_id.strip():
        raise UsageError("--node-id must not be empty")
    if not args.namespace:
        raise UsageError("--namespace must not be empty")
    if not 0 < args.outbound_port < 65536:
        raise UsageError(f"--outbound-port {args.outbound_port} is not a port (1..65535)")
    proxy = proxy_from_args(args)
    loaded = load_paths(args.paths, default_namespace=args.namespace)
    _print_findings(loaded.findings)
    if has_errors(loaded.findings):
        print("reconciler: not rendered: the config has errors (fix them, then render again)", file=sys.stderr)
        return ExitCode.FAILED
    translation = translate(loaded.config, proxy)
    _print_findings(translation.findings)
    sys.stdout.write(format_document(render_document(translation), output_format=args.format))
    if args.validate:
        return _validate(translation.snapshot)
    return ExitCode.OK


def _validate(snapshot: Snapshot) -> int:
    try:
        validate_config(static_bootstrap(snapshot))
    except EnvoyError as error:
        print(f"reconciler: {error}", file=sys.stderr)
        return ExitCode.FAILED
    print(f"envoy --mode validate: OK (snapshot {snapshot.version})", file=sys.stderr)
    return ExitCode.OK


def _print_findings(findings: tuple[Finding, ...]) -> None:
    for finding in findings:
        print(finding.format(), file=sys.stderr)
