"""A follower's answer to what only the leader does: ``503`` naming the leader, like a standby in HA systems.

With leader election only the replica holding the Lease fetches, serves xDS and moves rollouts.
A follower still serves its reads (``/api/v1/status`` says ``Follower`` and who leads, ``/readyz``
answers 503), but a write sent to it — a rollout command, ``/api/v1/sync``, a git webhook — would
be accepted by nobody: its rollouts and its loop are not running. :func:`standby_middleware`
answers those with ``503`` and a JSON body naming the holder, so a caller (or ``reconciler
rollout``) knows where to go instead of reading a misleading ``404 no rollout``; the rollout
reads (``GET /api/v1/rollouts...``) too, since a follower has none in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from reconciler.model.text import excerpt

__all__ = ["FOLLOWER_REASON", "HOLDER_CHARS", "Standby", "leader_only", "standby_middleware"]

#: The status reason of a replica that does not hold the Lease (``/readyz``, ``/api/v1/status``, these 503s).
FOLLOWER_REASON = "Follower"

#: Characters of the holder's identity shown: a pod name (its usual value) is at most 253; the Lease is untrusted.
HOLDER_CHARS = 253
#: Reads only the leader can answer: a follower holds no rollouts.
_ROLLOUTS = "/api/v1/rollouts"


@dataclass(frozen=True, slots=True)
class Standby:
    """This replica follows: the Lease ``lease`` is held by ``leader`` ("" while nobody holds it)."""

    lease: str
    leader: str

    @property
    def message(self) -> str:
        holder = excerpt(self.leader, HOLDER_CHARS) if self.leader else "nobody yet"
        return f"standby: the Lease {self.lease} is held by {holder}"

    def to_json(self) -> dict[str, object]:
        return {
            "error": f"{self.message}; only the leader takes this request: send it to the leader",
            "reason": FOLLOWER_REASON,
            "leader": excerpt(self.leader, HOLDER_CHARS),
            "lease": self.lease,
        }


def leader_only(request: web.Request) -> bool:
    """Whether only the leader can answer ``request``: any write, and the rollout reads."""
    return request.method not in ("GET", "HEAD") or request.path.startswith(_ROLLOUTS)


def standby_middleware(standby: Callable[[], Standby | None]) -> Middleware:
    """Answer :func:`leader_only` requests with 503 while ``standby()`` says this replica follows (None: it leads).

    Added after the access middlewares: a caller turned away by the token never learns who leads.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        following = standby()
        if following is not None and leader_only(request):
            return web.json_response(following.to_json(), status=503)
        return await handler(request)

    return middleware
