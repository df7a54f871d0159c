"""Everything a daemon (``reconciler run``, ``reconciler serve``) is configured with, and every default.

One frozen :class:`Settings`, grouped by concern like kopf's ``OperatorSettings``::

    Settings
    ├── source   SourceSettings   what is followed: repo or directory, branch, path, polling, watching,
    │                             how the YAML is read (default namespace, size limits)
    ├── xds      XdsSettings      where ADS listens; what a NACK does; push debounce; reconnect memory
    ├── api      ApiSettings      where the status/webhook HTTP API listens; the webhook secret
    ├── state    StateSettings    the directory of the clone, the last good revision and the lock
    └── safety   SafetySettings   what a revision may remove without an opt-in

Each default is written here and only here (the size limits' and the removal guard's in
their own types, :class:`InputLimits` and :class:`RemovalGuard`): the CLI's flags and their
``--help`` read them from these classes (``SourceSettings().branch``), and so does
``reconciler status``'s default server URL. The state directory has no default here: the CLI derives one per
source (:func:`reconciler.cli.run.default_state_dir`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reconciler.engine.guard import RemovalGuard
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits

__all__ = [
    "DIRECTORY_POLL_INTERVAL",
    "ApiSettings",
    "SafetySettings",
    "Settings",
    "SourceSettings",
    "StateSettings",
    "XdsSettings",
]

#: ``reconciler serve``'s poll period (seconds): a local directory is cheap to re-read, unlike a remote.
DIRECTORY_POLL_INTERVAL = 2.0


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
    #: The namespace of resources that name none.
    namespace: str = "default"
    #: Bytes one config file and one revision may have.
    limits: InputLimits = DEFAULT_LIMITS


@dataclass(frozen=True, slots=True)
class XdsSettings:
    """The ADS (gRPC) server Envoy proxies connect to."""

    #: ``HOST:PORT`` to listen on; port 0 asks the kernel for a free one.
    address: str = "127.0.0.1:18000"
    #: A revision a proxy NACKs is replaced by the last one every proxy ACKed (off: it keeps being served).
    rollback_on_nack: bool = True
    #: Seconds of quiet that end a burst of publishes (commits, rollout steps): the first change after a
    #: quiet spell is pushed at once, the rest of a burst as one push of the latest config.
    push_debounce: float = 0.1
    #: The longest a published change waits for its burst to end before it is pushed anyway.
    push_max_delay: float = 1.0
    #: How long what a proxy ACKed is remembered after its stream ends, so that its reconnect keeps the
    #: clusters its routes still use; and for how many proxies at most (the oldest forgotten first).
    remember_seconds: float = 300.0
    remember_nodes: int = 10_000


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The HTTP API: status, health, metrics, manual sync and the push webhook."""

    #: ``HOST:PORT`` to listen on; port 0 asks the kernel for a free one. Not 8080: gateways (the repo
    #: template's among them) listen there, and a proxy on the same host would fail to bind it.
    #: 18001 sits next to ADS and clear of Envoy's and Istio's ports.
    address: str = "127.0.0.1:18001"
    #: The push webhook's shared secret; ``None``: the webhook is refused.
    webhook_secret: bytes | None = None


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
class Settings:
    """Everything ``reconciler run`` and ``reconciler serve`` configure; only ``state`` has no default."""

    state: StateSettings
    source: SourceSettings = field(default_factory=SourceSettings)
    xds: XdsSettings = field(default_factory=XdsSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
