"""The Envoy v3 bootstrap for one proxy: who it is, where its ADS server is, where its admin listens.

Everything a proxy needs before it can talk to reconciler: the node id and the metadata that
:class:`~reconciler.translate.proxy.ProxyIdentity` reads back on the xDS side, one static
cluster (``xds_cluster``) speaking HTTP/2 gRPC to the ADS server, and ``dynamic_resources``
that fetch Clusters and Listeners (and through them endpoints and routes) over that one
ADS stream. Pure: plain values in, a plain ``dict`` out (JSON/YAML-ready), same input gives
the same dict.

The node metadata announces the admin address (``ADMIN_ADDRESS``, unless the admin port is
0, which only the kernel knows): the daemon reads ``/config_dump`` there to check that the
proxy runs what it ACKed (drift). It must be reachable from the daemon for that; when it is
not, drift checks rest on the proxy's ACKs alone.

Every proxy also pushes its per-cluster request statistics to the same server
(``envoy.stat_sinks.metrics_service`` over ``xds_cluster``, every ``stats_flush_interval``),
which progressive delivery judges canaries by (:mod:`reconciler.metrics`). A stats matcher keeps
that stream small: of the stats under ``cluster.`` (about 50 per cluster, 200,000 on a sidecar
with 4,000 clusters) only :data:`CLUSTER_COUNTERS` and :data:`CLUSTER_HISTOGRAM` exist at all;
every stat outside ``cluster.`` (server, listeners, HTTP managers, cluster manager, xDS) is kept,
for operators and tests reading the admin API, and costs a few hundred stats per proxy whatever
the number of clusters.

When its ADS stream breaks (the daemon restarts, is upgraded or killed) Envoy opens it again after a
jittered exponential backoff. Envoy's own (0.5 s growing to 30 s) leaves a proxy away for tens of
seconds after a short outage; the bootstrap asks for :data:`DEFAULT_XDS_RECONNECT_BASE_SECONDS` growing to
:data:`DEFAULT_XDS_RECONNECT_MAX_SECONDS` instead (Envoy honours ``retry_policy`` on xDS streams only, so
the metrics stream, which reopens at the next flush, has none).

With :class:`XdsClientTls` the ``xds_cluster`` speaks TLS (mutual TLS with a client certificate):
Envoy checks the server's certificate against the CA *and* its SAN against the name it dials
(SNI), so another certificate the same CA signed (a proxy's) cannot pose as reconciler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reconciler.errors import UsageError
from reconciler.model.address import format_address
from reconciler.model.hosts import is_ip_address
from reconciler.translate.proxy import METADATA_ADMIN_ADDRESS, ProxyIdentity
from reconciler.validate.schema import REGEX_PROGRAM_SIZE_LIMIT

__all__ = [
    "CLUSTER_COUNTERS",
    "CLUSTER_HISTOGRAM",
    "DEFAULT_ADMIN_HOST",
    "DEFAULT_ADMIN_PORT",
    "DEFAULT_STATS_FLUSH_INTERVAL_SECONDS",
    "DEFAULT_XDS_RECONNECT_BASE_SECONDS",
    "DEFAULT_XDS_RECONNECT_MAX_SECONDS",
    "MAX_DOWNSTREAM_CONNECTIONS",
    "METRICS_BATCH_SIZE",
    "XDS_CLUSTER",
    "XDS_CONNECT_TIMEOUT",
    "XDS_KEEPALIVE_INTERVAL_SECONDS",
    "XdsClientTls",
    "build_bootstrap",
    "envoy_runtime",
    "is_ip_address",
    "service_cluster",
    "stats_config",
]

#: Name of the static cluster that carries the ADS stream; dynamic config never reuses it.
XDS_CLUSTER = "xds_cluster"
#: Admin listens on loopback only by default: it can change and drain the proxy, so it must not be exposed.
DEFAULT_ADMIN_HOST = "127.0.0.1"
#: Istio's admin port, so existing habits (``curl localhost:15000/config_dump``) keep working.
DEFAULT_ADMIN_PORT = 15000
#: Short so a proxy whose reconciler restarts reconnects quickly; Envoy backs off on its own.
XDS_CONNECT_TIMEOUT = "1s"
#: First wait before Envoy reopens a broken ADS stream; each failed try doubles it (jittered)...
DEFAULT_XDS_RECONNECT_BASE_SECONDS = 0.25
#: ...up to this: a proxy is back within about this long of its daemon's restart. Thousands of proxies
#: retrying at most every 5 s, jittered, are a small load for the daemon's gRPC server.
DEFAULT_XDS_RECONNECT_MAX_SECONDS = 5.0
#: How often Envoy pings the ADS server over HTTP/2; the server must accept pings this often.
XDS_KEEPALIVE_INTERVAL_SECONDS = 30
#: Envoy warns at startup when no downstream connection limit is configured; this is the limit
#: Envoy's edge-proxy best practices suggest, far above what one reconciler-managed proxy expects.
MAX_DOWNSTREAM_CONNECTIONS = 50_000
#: How often a proxy pushes its statistics: a canary's error shows up within about this long.
DEFAULT_STATS_FLUSH_INTERVAL_SECONDS = 1.0
#: Per-cluster counters a proxy pushes (``cluster.<name>.<counter>``); see :mod:`reconciler.metrics.envoy_stats`.
CLUSTER_COUNTERS = (
    "upstream_rq_completed",
    "upstream_rq_5xx",
    "upstream_rq_retry",
    "retry.upstream_rq_completed",
    "retry.upstream_rq_5xx",
)
#: The per-cluster request-time histogram (milliseconds) a proxy pushes.
CLUSTER_HISTOGRAM = "upstream_rq_time"
#: Metric families per StreamMetrics message: keeps a 4,000-cluster sidecar's flush far below gRPC's 4 MB limit.
METRICS_BATCH_SIZE = 1000
_MAX_FLUSH_INTERVAL_SECONDS = 300.0  # Envoy rejects a stats_flush_interval of 300 s or more
_RECONNECT_RANGE_SECONDS = (0.001, 300.0)  # Envoy's base_interval is at least 1 ms; longer than 5 min helps nobody

_HTTP_OPTIONS_NAME = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HTTP_OPTIONS_TYPE = f"type.googleapis.com/{_HTTP_OPTIONS_NAME}"
_METRICS_SERVICE_TYPE = "type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig"
_UPSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
_DOWNSTREAM_CONNECTIONS_TYPE = (
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class XdsClientTls:
    """TLS from a proxy to reconciler's xDS port; paths are as the proxy sees them (they are not read here)."""

    #: CA (PEM) the server's certificate must chain to.
    ca_file: str
    #: The proxy's certificate and key (PEM) for mutual TLS; both or neither.
    cert_file: str | None = None
    key_file: str | None = None
    #: The name sent as SNI and required in the server certificate's SANs; ``None``: the xDS host.
    server_name: str | None = None


def envoy_runtime() -> dict[str, Any]:
    """Runtime values every proxy needs for the config reconciler sends it (Envoy's static layer).

    RE2's program size limit is Istio's, as validation checks it: Envoy's own default (100)
    rejects ordinary regexes such as ``/users/[a-z0-9-]{1,36}``.
    """
    return {"re2.max_program_size.error_level": REGEX_PROGRAM_SIZE_LIMIT}


def service_cluster(proxy: ProxyIdentity) -> str:
    """Envoy's ``node.cluster`` (required with ADS), named like Istio's: ``<app>.<namespace>``.

    Proxies of one service share it; the app comes from the ``app`` label, then the
    ``istio`` label gateways carry (``ingressgateway``), else ``proxy``.
    """
    app = proxy.labels.get("app") or proxy.labels.get("istio") or "proxy"
    return f"{app}.{proxy.namespace}"


def stats_config() -> dict[str, Any]:
    """Envoy's ``stats_config``: every stat outside ``cluster.``, and of each cluster only what analysis reads.

    A stats matcher decides which stats exist at all, so it narrows the admin API as much as the
    pushed stream. RE2 has no lookahead, so "not under ``cluster.``" is spelt out letter by letter.
    Flat names cannot tell Envoy's ``external.``/``internal.`` request variants from a cluster
    whose name ends that way, so the per-cluster pattern lets those variants through too.
    """
    prefix = "cluster."
    not_cluster = "|".join(re.escape(prefix[:i]) + f"[^{re.escape(prefix[i])}]" for i in range(len(prefix)))
    last_segments = sorted({name.rpartition(".")[2] for name in (*CLUSTER_COUNTERS, CLUSTER_HISTOGRAM)})
    per_cluster = rf"^cluster\..+\.(?:{'|'.join(map(re.escape, last_segments))})$"
    return {
        "stats_matcher": {
            "inclusion_list": {
                "patterns": [{"safe_regex": {"regex": f"^(?:{not_cluster}).*"}}, {"safe_regex": {"regex": per_cluster}}]
            }
        }
    }


def build_bootstrap(
    *,
    proxy: ProxyIdentity,
    xds_host: str,
    xds_port: int,
    admin_host: str = DEFAULT_ADMIN_HOST,
    admin_port: int = DEFAULT_ADMIN_PORT,
    stats_flush_interval: float = DEFAULT_STATS_FLUSH_INTERVAL_SECONDS,
    xds_tls: XdsClientTls | None = None,
    delta: bool = False,
    xds_reconnect_base: float = DEFAULT_XDS_RECONNECT_BASE_SECONDS,
    xds_reconnect_max: float = DEFAULT_XDS_RECONNECT_MAX_SECONDS,
) -> dict[str, Any]:
    """Return a complete Envoy v3 bootstrap for ``proxy`` that fetches all its config over ADS.

    ``xds_host`` may be an IP address (static cluster) or a DNS name (re-resolved by Envoy,
    so a reconciler Service whose address changes is followed). ``admin_port`` may be ``0``
    to let the kernel choose (pair it with ``envoy --admin-address-path``). The proxy pushes
    its statistics every ``stats_flush_interval`` seconds (1 ms up to, not including, 300 s).
    With ``xds_tls`` it reaches the server over TLS. ``delta``: the proxy uses incremental xDS (only what
    changed is sent) instead of state of the world. A broken ADS stream is reopened after ``xds_reconnect_base``
    seconds, doubling (jittered) up to ``xds_reconnect_max``.

    Raises :class:`~reconciler.errors.UsageError` for an empty node id or host, a port
    out of range, or a flush interval or reconnect backoff out of range.
    """
    if not proxy.node_id.strip():
        raise UsageError("bootstrap needs a non-empty node id: it is how reconciler tells proxies apart")
    _check_host("xDS", xds_host)
    _check_host("admin", admin_host)
    _check_port("xDS", xds_port, allow_zero=False)
    _check_port("admin", admin_port, allow_zero=True)
    flush_ms = round(stats_flush_interval * 1000) if isinstance(stats_flush_interval, int | float) else 0
    if isinstance(stats_flush_interval, bool) or not 1 <= flush_ms < _MAX_FLUSH_INTERVAL_SECONDS * 1000:
        raise UsageError(
            f"stats flush interval {stats_flush_interval!r} s is out of range"
            f" (0.001 s up to, not including, {_MAX_FLUSH_INTERVAL_SECONDS:g} s)"
        )
    retry_back_off = _retry_back_off(base=xds_reconnect_base, maximum=xds_reconnect_max)
    xds_cluster = _xds_cluster(xds_host, xds_port)
    if xds_tls is not None:
        xds_cluster["transport_socket"] = _xds_transport_socket(xds_tls, xds_host=xds_host)

    metadata = proxy.to_metadata()
    if admin_port:
        # The daemon reads /config_dump there to check what the proxy really runs (drift): it must reach it.
        # An address the identity already announces (say, a pod IP while admin binds 0.0.0.0) wins.
        metadata.setdefault(METADATA_ADMIN_ADDRESS, format_address(admin_host, admin_port))
    return {
        "node": {"id": proxy.node_id, "cluster": service_cluster(proxy), "metadata": metadata},
        "admin": {"address": _socket_address(admin_host, admin_port)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                # The server learns the node from the first request; repeating it on every
                # request only costs bandwidth on a long-lived stream.
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {"envoy_grpc": {"cluster_name": XDS_CLUSTER, "retry_policy": {"retry_back_off": retry_back_off}}}
                ],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [xds_cluster]},
        "stats_flush_interval": f"{flush_ms / 1000:g}s",
        "stats_sinks": [
            {
                "name": "envoy.stat_sinks.metrics_service",
                "typed_config": {
                    "@type": _METRICS_SERVICE_TYPE,
                    "transport_api_version": "V3",
                    "grpc_service": {"envoy_grpc": {"cluster_name": XDS_CLUSTER}},
                    "report_counters_as_deltas": True,
                    # Envoy's tag extraction splits cluster names at dots (`outbound|80|v1|reviews`
                    # from `...|reviews.default.svc.cluster.local`): flat names are parsed instead.
                    "emit_tags_as_labels": False,
                    # Buckets, not quantiles: bucket counts add up over proxies and flushes.
                    "histogram_emit_mode": "HISTOGRAM",
                    "batch_size": METRICS_BATCH_SIZE,
                },
            }
        ],
        "stats_config": stats_config(),
        "layered_runtime": {
            "layers": [
                {"name": "reconciler", "static_layer": envoy_runtime()},
                # Like Istio's: `curl -X POST localhost:15000/runtime_modify?...` keeps working.
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": _DOWNSTREAM_CONNECTIONS_TYPE,
                        "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
                    },
                }
            ]
        },
    }


def _xds_cluster(host: str, port: int) -> dict[str, Any]:
    """The static cluster Envoy uses to reach the ADS server: gRPC, so HTTP/2 only."""
    by_ip = is_ip_address(host)
    cluster: dict[str, Any] = {"name": XDS_CLUSTER, "type": "STATIC" if by_ip else "STRICT_DNS"}
    if not by_ip:
        # "localhost" and dual-stack names often resolve to ::1 first while servers bind 127.0.0.1.
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    cluster["connect_timeout"] = XDS_CONNECT_TIMEOUT
    cluster["load_assignment"] = {
        "cluster_name": XDS_CLUSTER,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket_address(host, port)}}]}],
    }
    cluster["typed_extension_protocol_options"] = {
        _HTTP_OPTIONS_NAME: {
            "@type": _HTTP_OPTIONS_TYPE,
            "explicit_http_config": {
                "http2_protocol_options": {
                    # Pings notice a silently dead server (NAT, node loss) long before TCP would.
                    "connection_keepalive": {"interval": f"{XDS_KEEPALIVE_INTERVAL_SECONDS}s", "timeout": "5s"},
                }
            },
        }
    }
    return cluster


def _retry_back_off(*, base: float, maximum: float) -> dict[str, str]:
    """Envoy's ``BackoffStrategy`` for reopening the ADS stream, in whole milliseconds."""
    low, high = _RECONNECT_RANGE_SECONDS
    for what, seconds in (("base", base), ("max", maximum)):
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not low <= seconds <= high:
            raise UsageError(f"xDS reconnect {what} interval {seconds!r} s is out of range ({low:g} s to {high:g} s)")
    if maximum < base:
        raise UsageError(f"xDS reconnect max interval {maximum:g} s is below the base interval {base:g} s")
    return {"base_interval": _duration(base), "max_interval": _duration(maximum)}


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000) / 1000:g}s"


def _xds_transport_socket(tls: XdsClientTls, *, xds_host: str) -> dict[str, Any]:
    """Envoy's upstream TLS for ``xds_cluster``: the CA, the SAN the server must present, the client certificate."""
    if not tls.ca_file:
        raise UsageError("xDS TLS needs the CA file the server's certificate chains to")
    if bool(tls.cert_file) != bool(tls.key_file):
        raise UsageError("the proxy's client certificate and key go together")
    server_name = tls.server_name or xds_host
    _check_host("xDS server name", server_name)
    by_ip = is_ip_address(server_name)
    common: dict[str, Any] = {
        # gRPC servers require HTTP/2 to be negotiated.
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": {"filename": tls.ca_file},
            # Envoy checks no host name by itself: without this any certificate of the CA would do.
            "match_typed_subject_alt_names": [
                {"san_type": "IP_ADDRESS" if by_ip else "DNS", "matcher": {"exact": server_name}}
            ],
        },
    }
    if tls.cert_file and tls.key_file:
        common["tls_certificates"] = [
            {"certificate_chain": {"filename": tls.cert_file}, "private_key": {"filename": tls.key_file}}
        ]
    context: dict[str, Any] = {"@type": _UPSTREAM_TLS_TYPE, "common_tls_context": common}
    if not by_ip:  # SNI carries host names only
        context["sni"] = server_name
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _check_host(what: str, host: str) -> None:
    if is_ip_address(host):
        return
    # A colon here almost always means "host:port" was passed as the host.
    if not host or any(ch in host for ch in "/ :\t\n"):
        raise UsageError(f"{what} host {host!r} is not a host name or IP address")


def _check_port(what: str, port: int, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if isinstance(port, bool) or not isinstance(port, int) or not low <= port <= 65535:
        raise UsageError(f"{what} port {port!r} is out of range {low}..65535")
