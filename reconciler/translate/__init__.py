"""Translation of the validated Istio model into Envoy xDS resources.

Purely computational: no I/O, no clocks, no globals. Same model and proxy identity in,
byte-identical snapshot out::

    from reconciler.translate import ProxyIdentity, translate

    result = translate(config, ProxyIdentity(node_id="sidecar-1", namespace="default"))
    result.snapshot.check()      # already checked: every referenced cluster/route exists
    result.findings              # what could not be expressed (Code.NOT_TRANSLATED), never dropped silently

Services come from a :class:`ServiceRegistry`: the config's ServiceEntries via
:func:`build_registry`, or any other registry passed as ``registry=`` (see
:meth:`ServiceRegistry.merged`). ``bootstrap`` builds the bootstrap that connects a proxy
to the daemon, ``static`` a snapshot as one static bootstrap, and ``envoy_check`` finds
what Envoy's proto constraints would reject.
"""

from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.translate.registry import (
    Endpoint,
    Origin,
    Resolution,
    Service,
    ServicePort,
    ServiceRegistry,
    build_registry,
)
from reconciler.translate.snapshot import Snapshot
from reconciler.translate.static import static_bootstrap
from reconciler.translate.translator import Translation, resolve_role, translate

__all__ = [
    "Endpoint",
    "Origin",
    "ProxyIdentity",
    "ProxyRole",
    "Resolution",
    "Service",
    "ServicePort",
    "ServiceRegistry",
    "Snapshot",
    "Translation",
    "build_registry",
    "resolve_role",
    "static_bootstrap",
    "translate",
]
