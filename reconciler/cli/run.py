"""``reconciler run`` (the GitOps daemon) and ``reconciler serve`` (a directory over ADS)."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.api.access import TOKEN_ENV
from reconciler.cli.args import add_inventory_flag, add_limit_flags, inventory_from_args, limits_from_args
from reconciler.cli.exitcode import ExitCode
from reconciler.cli.logs import configure_logging
from reconciler.engine.daemon import run_daemon
from reconciler.engine.guard import RemovalGuard
from reconciler.engine.settings import (
    DIRECTORY_POLL_INTERVAL,
    ApiSettings,
    DriftSettings,
    KubeSettings,
    LeaderSettings,
    SafetySettings,
    Settings,
    SourceSettings,
    StateSettings,
    XdsSettings,
)
from reconciler.errors import UsageError
from reconciler.kube.lease import LeaseTiming
from reconciler.model.address import parse_address
from reconciler.sources.git import redact_url
from reconciler.sources.git.credentials import DEFAULT_TOKEN_USERNAME, GitCredentials
from reconciler.sources.revision import ALLOW_REMOVAL_FILE
from reconciler.sources.webhook import load_secret
from reconciler.xds.tls import ServerTls, check_files, check_listen_security

__all__ = ["default_state_dir", "parse_interval", "register"]

_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
SECRET_ENV = "RECONCILER_WEBHOOK_SECRET"
GIT_TOKEN_ENV = "RECONCILER_GIT_TOKEN"

# The defaults every flag shows and falls back to: written once, in reconciler.engine.settings.
_SOURCE = SourceSettings()
_XDS = XdsSettings()
_API = ApiSettings()
_GUARD = SafetySettings().removal_guard
_DRIFT = DriftSettings()
_LEADER = LeaderSettings()

_RUN_HELP = """\
Watch a git repository of Istio networking YAML and serve it to Envoy proxies over ADS.

Each new commit on the branch that touches --path is loaded and validated as a whole.
A valid revision is translated and pushed to every connected proxy (clusters, then
endpoints, listeners, routes); an invalid one is refused and the last good revision
keeps serving. `git revert` is just a new revision and takes effect as fast.
A valid revision that would remove all routing, or more than --max-removal-percent of the
served resources, is refused too (RemovalRefused) unless it holds a file named
reconciler-allow-removal in the config directory.

Envoy's word is final: a revision any proxy NACKs is refused too (status Rejected,
with Envoy's reason and the file:line it came from) and the last revision every proxy
ACKed is served again, so all proxies run one config (--no-rollback-on-nack keeps the
rejected one). Only a revision every connected proxy ACKed is kept as last good.

The last good revision is kept in --state-dir and served at once after a restart,
before git is reachable, with the same versions: proxies see no change (only if it came
from the same --repo, --branch and --path). One daemon per --state-dir: a second one
exits at once. SIGTERM or Ctrl-C stops within seconds, even during a hung git fetch or
while validating a huge revision.

Examples:
  reconciler run --repo https://git.example.com/platform/mesh.git --path mesh
  reconciler run --repo /srv/git/mesh.git --poll-interval 5s --webhook-secret-file /etc/reconciler/hook
  reconciler run --repo-dir ~/mesh --path mesh --watch      # local: reconcile on file save
  reconciler run --repo https://github.com/acme/mesh.git --git-token-file /etc/reconciler/git-token \
      --api-token-file /etc/reconciler/api-token --http-address 0.0.0.0:18001

xDS security (the ADS port, which also takes the proxies' metrics):
  Plaintext is for loopback. On any other address the daemon refuses to start without
  --xds-tls-cert/--xds-tls-key, unless --xds-plaintext accepts plaintext (and logs a warning).
  --xds-client-ca makes it mutual TLS: a proxy needs a certificate from that CA, and may only
  use the node id its certificate names, the URI SAN spiffe://TRUST_DOMAIN/ns/NAMESPACE/node/NODE_ID
  or a DNS SAN equal to the node id (--no-xds-node-binding lifts that, e.g. for one certificate
  shared by gateway replicas). Replaced certificate files are picked up for new connections
  without a restart. `reconciler certs` makes a local CA and certificates;
  `reconciler bootstrap --xds-ca ...` writes the matching Envoy side.
  reconciler run --repo ... --xds-address 0.0.0.0:18000 --xds-tls-cert certs/server.crt \
      --xds-tls-key certs/server.key --xds-client-ca certs/ca.crt

Endpoints (on --http-address):
  GET  /api/v1/status   served revision, last error with file:line, per-proxy sync state
  GET  /api/v1/rollouts rollouts, their step and analysis
  GET  /healthz /readyz /metrics                      always open (probes, Prometheus)
  POST /api/v1/sync     reconcile now
  POST /api/v1/rollouts/NS/NAME/{pause,resume,promote,abort}
  POST /hooks/git       GitHub (X-Hub-Signature-256) or GitLab (X-Gitlab-Token) push webhook

Who may call the API: POSTs under /api/ need "Authorization: Bearer TOKEN" with the token
of --api-token-file (or $RECONCILER_API_TOKEN); so do GETs under /api/ unless --api-open-reads.
The CLI sends it from --token-file or the same variable. Without a token the API is open
when it listens on loopback only (127.0.0.1, the default), and refuses /api/ requests (403)
on any other address. The webhook proves itself with its signature instead. POSTs and the
webhook are rate limited per client address (429 with Retry-After).

Private repositories: an HTTPS token from --git-token-file (re-read on every fetch) or
$RECONCILER_GIT_TOKEN; an SSH deploy key with --git-ssh-key and --git-known-hosts. Never
put a token in --repo: ps would show it (it is accepted, redacted, and warned about).
"""

_SERVE_HELP = """\
Serve one directory of Istio networking YAML to Envoy over ADS, without git.

Useful to try a config against real proxies before committing it. With --watch, edits
are picked up on save. Same status API as `reconciler run`.

Example:
  reconciler serve mesh/ --xds-address 127.0.0.1:18000 --watch
"""


def parse_interval(text: str) -> float:
    """``15s``, ``500ms``, ``1m`` or a plain number of seconds → seconds."""
    match = _INTERVAL.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"interval {text!r} is not a positive duration like 15s, 500ms or 1m")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


_STATE_DIR_HELP = (
    "clone and last good revision (default: $XDG_STATE_HOME/reconciler/NAME-HASH, ~/.local/state when unset, "
    "one per source: never inside the config repo)"
)


def default_state_dir(*, source: str, branch: str = "", path: str = "", environ: Mapping[str, str]) -> Path:
    """Where a daemon keeps state unless told: per source, under the XDG state home, outside any work tree.

    Not the working directory: with ``--repo-dir . --watch`` that is the config repo itself, and
    the clone and SQLite store would show up in ``git status``. A token in ``source`` does not
    change the directory (it is left out, as from the stored source identity).
    """
    home = environ.get("XDG_STATE_HOME", "")
    base = Path(home) if os.path.isabs(home) else Path.home() / ".local" / "state"  # the spec ignores relative ones
    identity = redact_url(source)
    digest = hashlib.sha256("\0".join((identity, branch, path.strip("/"))).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", identity.rstrip("/").rsplit("/", 1)[-1]).strip("-.") or "config"
    return base / "reconciler" / f"{name}-{digest}"


def _seconds(value: float) -> str:
    """A default interval as its flag is written: ``15s``."""
    return f"{value:g}s"


def _common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--xds-address", default=_XDS.address, help="ADS gRPC listen address (default %(default)s)")
    parser.add_argument(
        "--http-address",
        default=_API.address,
        help="status/webhook HTTP listen address (default %(default)s)",
    )
    parser.add_argument("--namespace", default=_SOURCE.namespace, help="namespace for resources that name none")
    parser.add_argument(
        "--max-removal-percent",
        type=int,
        default=_GUARD.max_removal_percent,
        metavar="N",
        help="refuse a revision that removes more than N%% of the served resources; 100: no limit "
        f"(default %(default)s; a {ALLOW_REMOVAL_FILE} file in the config dir lets one revision through)",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="serve a revision with no Istio resources (default: refused, it would remove all routing)",
    )
    parser.add_argument("--log-format", choices=["json", "console"], default="json", help="log output (default json)")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning"],
        default="info",
        help="least severe log lines written (default info; debug adds engine.pass_timings: each pass's phases in ms)",
    )
    parser.add_argument(
        "--no-rollback-on-nack",
        dest="rollback_on_nack",
        action="store_false",
        help="when a proxy NACKs a revision, keep serving it instead of the last revision every proxy ACKed",
    )
    parser.add_argument(
        "--drift-interval",
        default=_seconds(_DRIFT.interval),
        metavar="DURATION",
        help="how often every connected proxy is checked for running other than it ACKed: its ACKs, and its"
        " admin /config_dump where its bootstrap announces a reachable admin address; 0 turns it off"
        " (default %(default)s)",
    )
    parser.add_argument(
        "--no-self-heal",
        dest="self_heal",
        action="store_false",
        help="report drift only; by default a drifted proxy's resources are pushed again (once per drift)",
    )
    add_limit_flags(parser)
    _xds_security_flags(parser)
    _api_flags(parser)


def _xds_security_flags(parser: argparse.ArgumentParser) -> None:
    tls = parser.add_argument_group(
        "xDS security",
        "TLS on the ADS/metrics port. Plaintext beyond loopback needs --xds-plaintext; with --xds-client-ca a proxy "
        "may use only the node id its certificate names (details: reconciler run --help)",
    )
    tls.add_argument("--xds-tls-cert", type=Path, metavar="FILE", help="server certificate chain (PEM); enables TLS")
    tls.add_argument("--xds-tls-key", type=Path, metavar="FILE", help="server private key (PEM, unencrypted)")
    tls.add_argument(
        "--xds-client-ca", type=Path, metavar="FILE", help="CA (PEM) proxies' certificates must chain to: mutual TLS"
    )
    tls.add_argument(
        "--xds-allow-identity",
        action="append",
        default=[],
        metavar="PATTERN",
        help="admit only client certificates with a URI or DNS SAN matching PATTERN (* wildcards); repeat for more, "
        "e.g. 'spiffe://cluster.local/ns/istio-system/*'",
    )
    tls.add_argument(
        "--xds-trust-domain",
        metavar="DOMAIN",
        help="node URIs must be in this SPIFFE trust domain (default: any the CA signed)",
    )
    tls.add_argument(
        "--no-xds-node-binding",
        dest="xds_node_binding",
        action="store_false",
        help="with --xds-client-ca: let any admitted certificate use any node id",
    )
    tls.add_argument(
        "--xds-plaintext",
        action="store_true",
        help="accept plaintext xDS on an address beyond loopback (refused without; logged as a warning)",
    )
    tls.add_argument(
        "--tls-expiry-warning-days",
        type=float,
        default=_XDS.tls_expiry_warning_days,
        metavar="DAYS",
        help="warn in the log (tls.certificate_expiring, once a day) when the xDS or API server certificate expires "
        "within DAYS; /metrics has reconciler_tls_certificate_expiry_timestamp_seconds always (default %(default)g)",
    )


def _server_tls(args: argparse.Namespace) -> ServerTls | None:
    """The xDS TLS settings the flags ask for; UsageError for flags that only make sense together."""
    if (args.xds_tls_cert is None) != (args.xds_tls_key is None):
        raise UsageError("--xds-tls-cert and --xds-tls-key go together")
    if args.xds_tls_cert is None:
        if args.xds_client_ca is not None:
            raise UsageError("--xds-client-ca needs --xds-tls-cert and --xds-tls-key (mutual TLS is TLS first)")
        return None
    if args.xds_client_ca is None and (args.xds_allow_identity or args.xds_trust_domain):
        raise UsageError("--xds-allow-identity and --xds-trust-domain check client certificates: add --xds-client-ca")
    tls = ServerTls(
        cert_file=args.xds_tls_cert,
        key_file=args.xds_tls_key,
        client_ca_file=args.xds_client_ca,
        allowed_identities=tuple(args.xds_allow_identity),
        bind_node_ids=args.xds_node_binding,
        trust_domain=args.xds_trust_domain,
    )
    check_files(tls)  # a missing file or a mismatched key is a usage error, before the daemon takes its lock
    return tls


def _api_flags(parser: argparse.ArgumentParser) -> None:
    api = parser.add_argument_group("HTTP API security")
    api.add_argument(
        "--api-token-file",
        type=Path,
        metavar="FILE",
        help=f"bearer token for POSTs (and GETs) under /api/ (or env {TOKEN_ENV}; never a flag value: ps shows those)",
    )
    api.add_argument(
        "--api-open-reads",
        action="store_true",
        help="GET /api/v1/status and /api/v1/rollouts answer without the token (POSTs still need it)",
    )
    api.add_argument("--api-tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this certificate chain")
    api.add_argument("--api-tls-key", type=Path, metavar="PEM", help="...and this private key")
    api.add_argument(
        "--api-rate-limit",
        type=float,
        default=_API.rate_per_second,
        metavar="PER_SECOND",
        help="POSTs and webhooks a client address may send per second, sustained (0: no limit; default %(default)s)",
    )
    api.add_argument(
        "--api-rate-burst",
        type=int,
        default=_API.rate_burst,
        metavar="N",
        help="...and at once, before 429 Too Many Requests (default %(default)s)",
    )


def _git_flags(parser: argparse.ArgumentParser) -> None:
    git = parser.add_argument_group("private repositories")
    git.add_argument(
        "--git-token-file",
        type=Path,
        metavar="FILE",
        help=f"HTTPS token for --repo, read by git on every fetch (or env {GIT_TOKEN_ENV})",
    )
    git.add_argument(
        "--git-username",
        default=DEFAULT_TOKEN_USERNAME,
        help="user name sent with the token (default %(default)s; GitLab OAuth tokens: oauth2)",
    )
    git.add_argument("--git-ssh-key", type=Path, metavar="FILE", help="SSH private key (a deploy key) for --repo")
    git.add_argument(
        "--git-known-hosts",
        type=Path,
        metavar="FILE",
        help="known_hosts the SSH server's key must be in (default ~/.ssh/known_hosts; unknown hosts are refused)",
    )


def _kube_flags(parser: argparse.ArgumentParser) -> None:
    kube = parser.add_argument_group(
        "Kubernetes",
        "With the xds sink: serve the endpoints of Kubernetes Services (name.namespace.svc.cluster.local) from the "
        "cluster's EndpointSlices, with Pod labels for DestinationRule subsets, beside the ServiceEntries from git. "
        "With the kubernetes sink (CRD mode, for clusters running istiod): apply git's VirtualServices, "
        "DestinationRules, ServiceEntries and Gateways to the cluster (server-side apply, field manager "
        "'reconciler'; rollout steps too), prune what git removes, and re-apply objects changed outside git "
        "(--no-self-heal: report only).",
    )
    where = kube.add_mutually_exclusive_group()
    where.add_argument("--kubeconfig", type=Path, metavar="FILE", help="the cluster of this kubeconfig's context")
    where.add_argument("--in-cluster", action="store_true", help="the cluster the daemon runs in")
    kube.add_argument(
        "--sink",
        action="append",
        choices=SINKS,
        metavar="{xds,kubernetes}",
        help="where served configs go, repeatable: xds (ADS to Envoy proxies; the default) and/or kubernetes "
        "(Istio objects applied to the cluster; needs --kubeconfig or --in-cluster)",
    )
    add_inventory_flag(
        kube, purpose="with --sink kubernetes: the ConfigMap listing the objects applied, so what git removes is pruned"
    )


#: ``--sink`` values.
SINKS = ("xds", "kubernetes")


def _kube_settings(args: argparse.Namespace) -> KubeSettings:
    if args.kubeconfig is not None and not args.kubeconfig.is_file():
        raise UsageError(f"--kubeconfig {args.kubeconfig}: no such file")
    cluster = args.kubeconfig is not None or args.in_cluster
    sinks = set(args.sink or ["xds"])
    if "kubernetes" in sinks and not cluster:
        raise UsageError("--sink kubernetes applies to a cluster: add --kubeconfig FILE or --in-cluster")
    namespace, name = inventory_from_args(args)
    return KubeSettings(
        # Endpoints are for the proxies this daemon serves; with the kubernetes sink alone, istiod serves them.
        enabled=cluster and "xds" in sinks,
        kubeconfig=args.kubeconfig.resolve() if args.kubeconfig else None,
        apply="kubernetes" in sinks,
        inventory_namespace=namespace,
        inventory_name=name,
    )


def _leader_flags(parser: argparse.ArgumentParser) -> None:
    leader = parser.add_argument_group(
        "High availability (leader election)",
        "Run several replicas: they elect a leader with a coordination.k8s.io/v1 Lease (needs --kubeconfig or "
        "--in-cluster). Only the leader fetches, serves xDS and moves rollouts; rollout state is kept in the "
        "ConfigMap NAME-rollouts beside the Lease, so the next leader goes on with the step. A follower's "
        "/readyz answers 503 (reason Follower) and its xDS port stays closed; a leader that cannot renew "
        "steps down and exits; a clean stop releases the Lease. Flags as kube-controller-manager's.",
    )
    leader.add_argument("--leader-elect", action="store_true", help="elect a leader among replicas")
    leader.add_argument(
        "--leader-elect-resource-name", default=_LEADER.name, metavar="NAME", help="the Lease (default %(default)s)"
    )
    leader.add_argument(
        "--leader-elect-resource-namespace",
        metavar="NS",
        help="the Lease's namespace (default: the pod's own in-cluster, else default)",
    )
    leader.add_argument(
        "--leader-elect-lease-duration",
        default=_seconds(_LEADER.lease_duration),
        metavar="DURATION",
        help="how long a follower waits after the Lease last changed before taking it (default %(default)s)",
    )
    leader.add_argument(
        "--leader-elect-renew-deadline",
        default=_seconds(_LEADER.renew_deadline),
        metavar="DURATION",
        help="how long the leader tries to renew before it steps down (default %(default)s)",
    )
    leader.add_argument(
        "--leader-elect-retry-period",
        default=_seconds(_LEADER.retry_period),
        metavar="DURATION",
        help="time between attempts to take or renew the Lease (default %(default)s)",
    )


def _leader_settings(args: argparse.Namespace) -> LeaderSettings:
    if not args.leader_elect:
        return LeaderSettings()
    if args.kubeconfig is None and not args.in_cluster:
        raise UsageError("--leader-elect needs a cluster: --kubeconfig FILE or --in-cluster")
    durations = (args.leader_elect_lease_duration, args.leader_elect_renew_deadline, args.leader_elect_retry_period)
    lease_duration, renew_deadline, retry_period = (parse_interval(text) for text in durations)
    try:
        LeaseTiming(lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return LeaderSettings(
        enabled=True,
        name=args.leader_elect_resource_name,
        namespace=args.leader_elect_resource_namespace,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
    )


def register(commands: Any) -> None:
    run = commands.add_parser(
        "run", help="the GitOps daemon: git repo → Envoy", description=_RUN_HELP, formatter_class=_RAW
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--repo", metavar="URL_OR_PATH", help="git remote to clone and follow")
    source.add_argument("--repo-dir", type=Path, metavar="DIR", help="a local working tree instead of a remote")
    run.add_argument("--branch", default=_SOURCE.branch, help="branch to follow (default %(default)s)")
    run.add_argument(
        "--path", default=_SOURCE.path, metavar="SUBDIR", help="config directory inside the repo (default: root)"
    )
    run.add_argument(
        "--poll-interval", default=_seconds(_SOURCE.poll_interval), help="how often to fetch (default %(default)s)"
    )
    run.add_argument(
        "--git-timeout",
        default=_seconds(_SOURCE.git_timeout),
        metavar="DURATION",
        help="how long one git fetch or clone may take; a remote that hangs past it is ended and status says "
        "FetchTimedOut, the last good revision keeps serving and the next poll tries again (default %(default)s)",
    )
    run.add_argument("--state-dir", type=Path, default=None, help=_STATE_DIR_HELP)
    run.add_argument("--webhook-secret-file", type=Path, help=f"push webhook secret (or env {SECRET_ENV})")
    run.add_argument("--watch", action="store_true", help="with --repo-dir: reconcile on file save")
    _watch_settle_flag(run)
    _common_flags(run)
    _git_flags(run)
    _kube_flags(run)
    _leader_flags(run)
    run.set_defaults(handler=_run)

    serve = commands.add_parser(
        "serve", help="serve a directory over ADS (no git)", description=_SERVE_HELP, formatter_class=_RAW
    )
    serve.add_argument("config_dir", type=Path, metavar="PATH", help="directory of YAML files")
    serve.add_argument("--state-dir", type=Path, default=None, help=_STATE_DIR_HELP)
    serve.add_argument("--watch", action="store_true", help="reconcile on file save")
    _watch_settle_flag(serve)
    serve.add_argument(
        "--poll-interval",
        default=_seconds(DIRECTORY_POLL_INTERVAL),
        help="how often to re-read the directory (default %(default)s)",
    )
    _common_flags(serve)
    _kube_flags(serve)
    serve.set_defaults(handler=_serve)


_RAW = argparse.RawDescriptionHelpFormatter


def _watch_settle_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watch-settle",
        default=_seconds(_SOURCE.watch_settle),
        metavar="DURATION",
        help="with --watch: how long the directory must stay quiet after a change before it is read, so a burst "
        "of saves is one pass; lower it for single-file saves, keep it above what a checkout of the tree takes "
        "(default %(default)s)",
    )


def _run(args: argparse.Namespace) -> int:
    if args.watch and args.repo_dir is None:
        raise UsageError("--watch works with --repo-dir (a local working tree)")
    source = SourceSettings(
        repo=args.repo,
        repo_dir=args.repo_dir,
        branch=args.branch,
        path=args.path,
        poll_interval=parse_interval(args.poll_interval),
        watch=args.watch,
        watch_settle=parse_interval(args.watch_settle),
        namespace=args.namespace,
        limits=limits_from_args(args),
        credentials=_git_credentials(args),
        git_timeout=parse_interval(args.git_timeout),
    )
    state_dir = args.state_dir or default_state_dir(
        source=args.repo or str(args.repo_dir.resolve()), branch=args.branch, path=args.path, environ=os.environ
    )
    secret = load_secret(file=args.webhook_secret_file, env_var=SECRET_ENV)
    return _start(_settings(args, source=source, state_dir=state_dir, webhook_secret=secret), args)


def _serve(args: argparse.Namespace) -> int:
    if not args.config_dir.is_dir():
        raise UsageError(f"not a directory: {args.config_dir}")
    source = SourceSettings(
        repo_dir=args.config_dir,
        poll_interval=parse_interval(args.poll_interval),
        watch=args.watch,
        watch_settle=parse_interval(args.watch_settle),
        namespace=args.namespace,
        limits=limits_from_args(args),
    )
    state_dir = args.state_dir or default_state_dir(source=str(args.config_dir.resolve()), environ=os.environ)
    secret = load_secret(file=None, env_var=SECRET_ENV)
    return _start(_settings(args, source=source, state_dir=state_dir, webhook_secret=secret), args)


def _git_credentials(args: argparse.Namespace) -> GitCredentials:
    for flag, path in (("--git-ssh-key", args.git_ssh_key), ("--git-known-hosts", args.git_known_hosts)):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")
    token_file = args.git_token_file
    # Read once now so a missing or empty file stops start-up; git reads it again on every fetch.
    load_secret(file=token_file, env_var=None, what="git token")
    token = None if token_file else load_secret(file=None, env_var=GIT_TOKEN_ENV)
    return GitCredentials(
        token_file=token_file.resolve() if token_file else None,
        token=token.decode() if token else None,
        username=args.git_username,
        ssh_key=args.git_ssh_key.resolve() if args.git_ssh_key else None,
        known_hosts=args.git_known_hosts.resolve() if args.git_known_hosts else None,
    )


def _api_settings(args: argparse.Namespace, *, webhook_secret: bytes | None) -> ApiSettings:
    if args.api_rate_limit < 0 or args.api_rate_burst < 1:
        raise UsageError("--api-rate-limit is 0 or more and --api-rate-burst 1 or more")
    return ApiSettings(
        address=args.http_address,
        webhook_secret=webhook_secret,
        token=load_secret(file=args.api_token_file, env_var=TOKEN_ENV, what="API token"),
        open_reads=args.api_open_reads,
        tls_cert=args.api_tls_cert,
        tls_key=args.api_tls_key,
        rate_per_second=args.api_rate_limit,
        rate_burst=args.api_rate_burst,
    )


def _settings(
    args: argparse.Namespace, *, source: SourceSettings, state_dir: Path, webhook_secret: bytes | None
) -> Settings:
    """The daemon's settings: ``source`` and the state dir as the command chose them, the rest from the common flags."""
    xds_host, _ = parse_address(args.xds_address, what="--xds-address", allow_port_zero=True)
    parse_address(args.http_address, what="--http-address", allow_port_zero=True)
    if not 0 <= args.max_removal_percent <= 100:
        raise UsageError(f"--max-removal-percent {args.max_removal_percent} is not a percentage (0..100)")
    tls = _server_tls(args)
    check_listen_security(xds_host, tls=tls, plaintext=args.xds_plaintext)
    if args.tls_expiry_warning_days < 0:
        raise UsageError(f"--tls-expiry-warning-days {args.tls_expiry_warning_days:g} is negative")
    return Settings(
        state=StateSettings(dir=state_dir),
        source=source,
        xds=XdsSettings(
            address=args.xds_address,
            rollback_on_nack=args.rollback_on_nack,
            tls=tls,
            plaintext=args.xds_plaintext,
            serve="xds" in (args.sink or ["xds"]),
            tls_expiry_warning_days=args.tls_expiry_warning_days,
        ),
        api=_api_settings(args, webhook_secret=webhook_secret),
        safety=SafetySettings(
            removal_guard=RemovalGuard(max_removal_percent=args.max_removal_percent, allow_empty=args.allow_empty)
        ),
        drift=DriftSettings(
            interval=0.0 if args.drift_interval.strip() in ("0", "off") else parse_interval(args.drift_interval),
            self_heal=args.self_heal,
        ),
        kube=_kube_settings(args),
        leader=_leader_settings(args) if hasattr(args, "leader_elect") else LeaderSettings(),
    )


def _start(settings: Settings, args: argparse.Namespace) -> int:
    configure_logging(json=args.log_format == "json", level=logging.getLevelNamesMapping()[args.log_level.upper()])
    asyncio.run(run_daemon(settings))
    return ExitCode.OK
