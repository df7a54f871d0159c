"""HTTP routes of the daemon (aiohttp): status, health and metrics, and the git push webhook.

Handlers parse and answer; they read status through callables and trigger syncs through
a callback, so this layer knows nothing of the engine. :mod:`reconciler.api.document` is
the typed status document ``/api/v1/status`` serves and ``reconciler status`` reads.
"""

from reconciler.api.status import status_routes
from reconciler.api.webhook import webhook_routes

__all__ = ["status_routes", "webhook_routes"]
