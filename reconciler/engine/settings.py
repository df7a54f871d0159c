"""Everything a daemon (``reconciler run``, ``reconciler serve``) is configured with, and every default.

One frozen :class:`Settings`, grouped by concern like kopf's ``OperatorSettings``::

    Settings
    ├── source   SourceSettings   what is followed: repo or directory, branch, path, polling, watching,
    │                             how the YAML is read (default namespace, size limits), git credentials
    ├── xds      XdsSettings      where ADS listens, over TLS or not; what a NACK does; push debounce;
    │                             reconnect memory
    ├── api      ApiSettings      where the status/webhook HTTP API listens; the webhook secret; who may
    │                             call it (bearer token, open reads), TLS, request size and rate limits
    ├── state    StateSettings    the directory of the clone, the last good revision and the lock
    ├── safety   SafetySettings   what a revision may remove without an opt-in
    ├── drift    DriftSettings    how often each proxy is checked for running other than it ACKed; self-heal
    ├── kube     KubeSettings     a Kubernetes cluster (a kubeconfig, or in-cluster): endpoints from it for
    │                             xDS; CRD mode (``--sink kubernetes``): Istio objects applied to it
    └── leader   LeaderSettings   leader election among replicas with a coordination.k8s.io Lease

Each default is written here and only here (the size limits', the removal guard's and xDS
TLS's in their own types, :class:`InputLimits`, :class:`RemovalGuard` and :class:`ServerTls`; the git
timeout beside :class:`GitSource`, which runs without settings too): the CLI's flags and their
``--help`` read them from these classes (``SourceSettings().branch``), and so does
``reconciler status``'s default server URL. The state directory has no default here: the CLI derives one per
source (:func:`reconciler.cli.run.default_state_dir`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reconciler.engine.guard import RemovalGuard
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits
from reconciler.sources.git import DEFAULT_TIMEOUT_SECONDS
from reconciler.sources.git.credentials import NO_CREDENTIALS, GitCredentials
from reconciler.sources.local import WATCH_SETTLE_SECONDS
from reconciler.xds.tls import ServerTls

__all__ = [
    "DIRECTORY_POLL_INTERVAL",
    "GC_THRESHOLDS",
    "ApiSettings",
    "DriftSettings",
    "KubeSettings",
    "LeaderSettings",
    "SafetySettings",
    "Settings",
    "SourceSettings",
    "StateSettings",
    "XdsSettings",
]

#: ``reconciler serve``'s poll period (seconds): a local directory is cheap to re-read, unlike a remote.
DIRECTORY_POLL_INTERVAL = 2.0

#: The daemon's garbage-collector thresholds (``gc.set_threshold``; CPython's are 700, 10, 10). A translation
#: allocates millions of objects, most of them kept (the snapshot, the translation cache), so with the default
#: young threshold it triggers collections that walk the whole loaded config again and again (about a quarter
#: of a cold 10,000-service translation's CPU). A larger young generation collects as much garbage in far
#: fewer passes; older generations keep their ratios, so cyclic garbage is still freed.
GC_THRESHOLDS = (100_000, 10, 10)


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """What the daemon follows, and how it reads it. Exactly one of ``repo`` and ``repo_dir`` is set."""

    #: A git remote (URL or path) to clone into the state directory and fetch.
    repo: str | None = None
    #: A local working tree (or plain directory) read in place instead of a remote.
    repo_dir: Path | None = None
    #: The branch followed; pushes to other branches are ignored.
    branch: str = "main"
    #: The config directory inside the repo ("": its root); commits that do not touch it are skipped.
    path: str = ""
    #: Seconds between fetches; a trigger (webhook, sync, file save) cuts the wait short.
    poll_interval: float = 15.0
    #: With ``repo_dir``: reconcile on file save.
    watch: bool = False
    #: With ``watch``: seconds the directory must stay quiet after a change before it is read (a burst of saves is
    #: one pass). Written with the local source (``WATCH_SETTLE_SECONDS``), like the limits.
    watch_settle: float = WATCH_SETTLE_SECONDS
    #: The namespace of resources that name none.
    namespace: str = "default"
    #: Bytes one config file and one revision may have.
    limits: InputLimits = DEFAULT_LIMITS
    #: How git authenticates to a private remote (token file or variable, SSH deploy key); none by default.
    credentials: GitCredentials = NO_CREDENTIALS
    #: Seconds one git fetch or clone may take before it is ended as ``FetchTimedOut`` (a hung remote);
    #: the next poll tries again. Written with the git source (``DEFAULT_TIMEOUT_SECONDS``), like the limits.
    git_timeout: float = DEFAULT_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class XdsSettings:
    """The ADS (gRPC) server Envoy proxies connect to."""

    #: ``HOST:PORT`` to listen on; port 0 asks the kernel for a free one.
    address: str = "127.0.0.1:18000"
    #: A revision a proxy NACKs is replaced by the last one every proxy ACKed (off: it keeps being served).
    rollback_on_nack: bool = True
    #: TLS on the port (mutual TLS with a client CA, node ids bound to certificates); ``None``: plaintext.
    tls: ServerTls | None = None
    #: Plaintext on an address beyond loopback, accepted explicitly (refused without, warned about with).
    plaintext: bool = False
    #: Seconds of quiet that end a burst of publishes (commits, rollout steps): the first change after a
    #: quiet spell is pushed at once, the rest of a burst as one push of the latest config.
    push_debounce: float = 0.1
    #: The longest a published change waits for its burst to end before it is pushed anyway.
    push_max_delay: float = 1.0
    #: How long what a proxy ACKed is remembered after its stream ends, so that its reconnect keeps the
    #: clusters its routes still use; and for how many proxies at most (the oldest forgotten first).
    remember_seconds: float = 300.0
    remember_nodes: int = 10_000
    #: Serve ADS (the ``xds`` sink). Off (``--sink kubernetes`` alone), the port still takes Envoy's metrics.
    serve: bool = True
    #: Days before the serving certificate expires (xDS's, and the API's with ``api.tls_cert``) from which the
    #: log warns (``tls.certificate_expiring``, once a day); ``reconciler_tls_certificate_expiry_timestamp_seconds``
    #: shows the expiry always.
    tls_expiry_warning_days: float = 14.0
    #: Seconds without xDS events (connects, pushes, ACKs) after which the daemon hands its freed heap back to
    #: the OS (``malloc_trim``: RSS falls back from a burst's peak); 0 never does.
    heap_trim_quiet: float = 2.0


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The HTTP API: status, health, metrics, manual sync and the push webhook."""

    #: ``HOST:PORT`` to listen on; port 0 asks the kernel for a free one. Not 8080: gateways (the repo
    #: template's among them) listen there, and a proxy on the same host would fail to bind it.
    #: 18001 sits next to ADS and clear of Envoy's and Istio's ports.
    address: str = "127.0.0.1:18001"
    #: The push webhook's shared secret; ``None``: the webhook is refused.
    webhook_secret: bytes | None = None
    #: The bearer token ``POST /api/v1/...`` (and reads under /api/, unless ``open_reads``) require. ``None``:
    #: the API is open on a loopback address and refuses those requests (403) on any other.
    token: bytes | None = None
    #: Reads under /api/ (status, rollouts) answer without a token; /healthz, /readyz, /metrics always do.
    open_reads: bool = False
    #: Serve HTTPS with this certificate chain and key (PEM); both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: The largest request body any endpoint reads (the webhook's payloads are well under 1 MiB).
    max_body_bytes: int = 1 << 20
    #: How deeply a JSON body may nest: a push payload nests about 5 levels.
    max_json_depth: int = 64
    #: Per client address, on the webhook and every mutating endpoint: requests a second, sustained...
    rate_per_second: float = 2.0
    #: ...and in a burst; past them a request is answered 429 with Retry-After. 0 requests a second: no limit.
    rate_burst: int = 30
    #: Rejected requests are logged once per reason per interval (seconds), with how many were not.
    rejection_log_interval: float = 10.0


@dataclass(frozen=True, slots=True)
class StateSettings:
    """Where the daemon keeps what outlives it."""

    #: The clone, the SQLite store of the last good revision, and the lock one daemon holds.
    dir: Path


@dataclass(frozen=True, slots=True)
class SafetySettings:
    """Refusals that protect the proxies from a valid but harmful revision."""

    #: What a revision may remove from the served config without an opt-in.
    removal_guard: RemovalGuard = field(default_factory=RemovalGuard)


@dataclass(frozen=True, slots=True)
class DriftSettings:
    """The periodic check that each connected proxy runs what it ACKed (``engine/drift.py``)."""

    #: Seconds between checks of every connected proxy; 0 turns drift checks off.
    interval: float = 30.0
    #: Re-push a drifted proxy's resources (once per drift), logging what that overwrites.
    self_heal: bool = True
    #: Seconds a proxy's admin API has to answer ``/config_dump``.
    admin_timeout: float = 5.0
    #: Bytes of ``/config_dump`` read at most (a 1,000-service sidecar's is about 10 MiB with endpoints).
    max_dump_bytes: int = 64 * 1024 * 1024
    #: Drifted resources listed per proxy in status and the log (the count is always whole).
    max_listed: int = 20


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """Services, EndpointSlices and Pods from a Kubernetes cluster, as endpoints (``reconciler.kube``)."""

    #: Watch a cluster at all; off, endpoints come from ServiceEntries only.
    enabled: bool = False
    #: The kubeconfig whose current context names the cluster; ``None`` (when enabled): in-cluster.
    kubeconfig: Path | None = None
    #: The cluster's DNS domain: Services are ``name.namespace.svc.<domain>``.
    domain: str = "cluster.local"
    #: Seconds changes gather before one update is served: a rollout of twenty Pods is one push.
    debounce: float = 0.1
    #: Retry delays after a failed list or watch: from ``retry_base`` doubling up to ``retry_cap``, with jitter.
    retry_base: float = 0.5
    retry_cap: float = 30.0
    #: CRD mode (``--sink kubernetes``): apply the Istio objects to the cluster, for an istiod to serve.
    apply: bool = False
    #: The ConfigMap listing what was applied (``--inventory NAMESPACE/NAME``): what git removes is pruned.
    #: Its namespace ``None``: the pod's own (in-cluster, as the Lease's), else ``default``.
    inventory_namespace: str | None = None
    inventory_name: str = "reconciler-inventory"


@dataclass(frozen=True, slots=True)
class LeaderSettings:
    """Leader election among replicas (``reconciler.kube.lease``); the cluster is ``kube``'s. client-go's defaults."""

    #: Elect a leader: only it fetches, serves xDS and moves rollouts; rollout state lives in the cluster.
    enabled: bool = False
    #: The Lease's name; the rollout state's ConfigMap is ``<name>-rollouts`` beside it.
    name: str = "reconciler"
    #: The Lease's namespace; ``None``: the pod's own (in-cluster), else ``default``.
    namespace: str | None = None
    #: This replica's ``holderIdentity``; ``None``: ``$POD_NAME``, else ``hostname_pid``.
    identity: str | None = None
    #: Seconds a follower waits after it last saw the Lease change before it takes it.
    lease_duration: float = 15.0
    #: Seconds a leader keeps trying to renew before it steps down (under ``lease_duration``: it stops first).
    renew_deadline: float = 10.0
    #: Seconds between attempts to take or renew the Lease.
    retry_period: float = 2.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``reconciler run`` and ``reconciler serve`` configure; only ``state`` has no default."""

    state: StateSettings
    source: SourceSettings = field(default_factory=SourceSettings)
    xds: XdsSettings = field(default_factory=XdsSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    kube: KubeSettings = field(default_factory=KubeSettings)
    leader: LeaderSettings = field(default_factory=LeaderSettings)
