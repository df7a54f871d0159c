"""``reconciler bootstrap``: print the Envoy bootstrap that connects one proxy to reconciler.

The bootstrap is the only file a proxy needs on disk; everything else (listeners, routes,
clusters, endpoints) arrives over ADS. This command turns a proxy's identity and the
reconciler's xDS address into that file, as YAML on stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TypeVar

import yaml

from reconciler.cli.args import add_label_and_role, parse_labels, proxy_from_args
from reconciler.cli.exitcode import ExitCode
from reconciler.errors import UsageError
from reconciler.model.address import parse_address
from reconciler.translate.bootstrap import (
    DEFAULT_ADMIN_HOST,
    DEFAULT_ADMIN_PORT,
    DEFAULT_XDS_RECONNECT_BASE_SECONDS,
    DEFAULT_XDS_RECONNECT_MAX_SECONDS,
    XdsClientTls,
    build_bootstrap,
)
from reconciler.translate.proxy import DEFAULT_SIDECAR_PORT

__all__ = ["bootstrap_from_args", "parse_labels", "register", "run"]

# Generic so the CLI's own ArgumentParser subclass type-checks without importing it here.
_Parser = TypeVar("_Parser", bound=argparse.ArgumentParser)

_DESCRIPTION = """\
Print the Envoy bootstrap (YAML) for one proxy. Start Envoy with it and the proxy
connects to reconciler over ADS, announces who it is, and receives all of its routing
config from there: no other Envoy config files are needed.

The node id names the proxy in `reconciler status`. Labels are matched against Istio
selectors exactly like pod labels: a Gateway with `selector: {istio: ingressgateway}`
configures proxies started with `--label istio=ingressgateway`.
"""

_EPILOG = """\
example:
  reconciler bootstrap --node-id ingress-1 --xds-address reconciler.mesh-system.svc:18000 \\
      --label istio=ingressgateway --role gateway --namespace istio-system > envoy.yaml
  envoy -c envoy.yaml

mutual TLS (certificates from `reconciler certs`; paths as the proxy sees them):
  reconciler bootstrap --node-id ingress-1 --namespace istio-system --xds-address 127.0.0.1:18000 \\
      --xds-ca certs/ca.crt --xds-client-cert certs/ingress-1.crt --xds-client-key certs/ingress-1.key

exit status: 0 printed, 2 bad arguments (label not k=v, address not HOST:PORT, reconnect backoff out of range).
"""


def register(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Add the ``bootstrap`` command to the CLI's subcommands."""
    parser = commands.add_parser(
        "bootstrap",
        help="print the Envoy bootstrap that connects a proxy to reconciler",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--node-id", required=True, metavar="ID", help="unique name of this proxy")
    parser.add_argument(
        "--xds-address",
        required=True,
        metavar="HOST:PORT",
        help="where reconciler serves ADS (an IP, or a DNS name Envoy keeps re-resolving)",
    )
    parser.add_argument(
        "--admin-address",
        default=f"{DEFAULT_ADMIN_HOST}:{DEFAULT_ADMIN_PORT}",
        metavar="HOST:PORT",
        help="Envoy admin API; keep it on loopback (default: %(default)s)",
    )
    add_label_and_role(parser, label_help="a label Istio selectors match on; repeat for more")
    parser.add_argument(
        "--namespace", default="default", metavar="NS", help="namespace the proxy runs in (default: %(default)s)"
    )
    parser.add_argument(
        "--outbound-port",
        type=int,
        default=DEFAULT_SIDECAR_PORT,
        metavar="N",
        help="port a sidecar captures outbound traffic on (default: %(default)s)",
    )
    tls = parser.add_argument_group(
        "xDS TLS", "how the proxy reaches a daemon started with --xds-tls-cert (and --xds-client-ca)"
    )
    tls.add_argument("--xds-ca", metavar="FILE", help="CA (PEM) the daemon's certificate chains to; enables TLS")
    tls.add_argument("--xds-client-cert", metavar="FILE", help="the proxy's certificate (PEM), for mutual TLS")
    tls.add_argument("--xds-client-key", metavar="FILE", help="the proxy's private key (PEM), for mutual TLS")
    tls.add_argument(
        "--xds-server-name",
        metavar="NAME",
        help="SNI, and the DNS (or IP) SAN the daemon's certificate must have (default: the --xds-address host)",
    )
    parser.add_argument(
        "--delta",
        action="store_true",
        help="use incremental (delta) xDS: each update sends only the resources that changed",
    )
    reconnect = parser.add_argument_group(
        "xDS reconnect", "when the ADS stream breaks (the daemon restarts), Envoy retries with a jittered backoff"
    )
    reconnect.add_argument(
        "--xds-reconnect-base",
        type=float,
        default=DEFAULT_XDS_RECONNECT_BASE_SECONDS,
        metavar="SECONDS",
        help="first wait before a retry; each failed retry doubles it (default: %(default)g)",
    )
    reconnect.add_argument(
        "--xds-reconnect-max",
        type=float,
        default=DEFAULT_XDS_RECONNECT_MAX_SECONDS,
        metavar="SECONDS",
        help="longest wait between retries: a proxy is back about this long after the daemon (default: %(default)g)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the bootstrap described by ``args`` as YAML; UsageError on malformed input."""
    bootstrap = bootstrap_from_args(args)
    sys.stdout.write(yaml.safe_dump(bootstrap, sort_keys=False, default_flow_style=False))
    return ExitCode.OK


def bootstrap_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The bootstrap dict for parsed command-line ``args``."""
    xds_host, xds_port = parse_address(args.xds_address, what="--xds-address")
    admin_host, admin_port = parse_address(args.admin_address, what="--admin-address", allow_port_zero=True)
    if not 0 < args.outbound_port < 65536:
        raise UsageError(f"--outbound-port {args.outbound_port} is not a port (1..65535)")
    if not args.namespace:
        raise UsageError("--namespace must not be empty")
    return build_bootstrap(
        proxy=proxy_from_args(args),
        xds_host=xds_host,
        xds_port=xds_port,
        admin_host=admin_host,
        admin_port=admin_port,
        xds_tls=_xds_tls(args),
        delta=args.delta,
        xds_reconnect_base=args.xds_reconnect_base,
        xds_reconnect_max=args.xds_reconnect_max,
    )


def _xds_tls(args: argparse.Namespace) -> XdsClientTls | None:
    if args.xds_ca is None:
        if args.xds_client_cert or args.xds_client_key or args.xds_server_name:
            raise UsageError("--xds-client-cert, --xds-client-key and --xds-server-name need --xds-ca (TLS)")
        return None
    return XdsClientTls(
        ca_file=args.xds_ca,
        cert_file=args.xds_client_cert,
        key_file=args.xds_client_key,
        server_name=args.xds_server_name,
    )
