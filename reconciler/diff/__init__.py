"""Diff and drift: what changes between two states of the mesh config, and who it affects.

Purely computational: no I/O, no clock. Two validated configs in (two git revisions
today), typed differences out::

    from reconciler.diff import diff_configs

    diff = diff_configs(old.config, new.config)
    diff.equal          # nothing that affects routing changed (reformatting and reordering do not)
    diff.resources      # Istio resources added / removed / changed, field by field
    diff.routes         # the route table: per host and HTTP rule, "v1 90→50", "+ timeout 2s"
    diff.proxies        # per proxy shape (sidecar per namespace, gateway per selector): Envoy resource changes
    diff.affected       # "sidecars: 2 of 3 namespaces: RDS only"
    diff.connected      # with connected=group_proxies(...): "1 of 1 gateway; 120 of 130 sidecars: RDS only"

Other states slot in as further inputs: a served config is a :class:`MeshConfig` too (a daemon
answers it as manifests, :mod:`~reconciler.diff.manifests`, that load back into one), and a
proxy's ACKed or live resources compare with :func:`diff_snapshots` once read into a
:class:`~reconciler.translate.snapshot.Snapshot`. ``report`` formats a diff as text,
Markdown or JSON.
"""

from reconciler.diff.changes import Change, FieldChange, ObjectChange, diff_fields, diff_objects
from reconciler.diff.envoy import (
    ProxyDiff,
    ProxyGroup,
    affected_summary,
    diff_proxies,
    diff_snapshots,
    group_proxies,
    proxy_shapes,
)
from reconciler.diff.mesh import MeshDiff, diff_configs
from reconciler.diff.normalize import normalize_resource
from reconciler.diff.report import format_json, format_markdown, format_text
from reconciler.diff.routes import RouteRow, route_table

__all__ = [
    "Change",
    "FieldChange",
    "MeshDiff",
    "ObjectChange",
    "ProxyDiff",
    "ProxyGroup",
    "RouteRow",
    "affected_summary",
    "diff_configs",
    "diff_fields",
    "diff_objects",
    "diff_proxies",
    "diff_snapshots",
    "format_json",
    "format_markdown",
    "format_text",
    "group_proxies",
    "normalize_resource",
    "proxy_shapes",
    "route_table",
]
