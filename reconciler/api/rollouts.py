"""The rollout commands over HTTP: ``POST /api/v1/rollouts/{ns}/{name}/{pause|resume|promote|abort}``.

Each answers with the rollout's document after the command (200), ``404`` when no rollout is
under that RolloutPolicy, ``409`` when the command does not apply to its phase (ended, not
paused, already serving git's weights), ``400`` for a malformed promote. ``promote`` goes to
the next step; with ``?full=true`` or the body ``{"full": true}`` it serves git's weights now.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from reconciler.api.document import RolloutDocument
from reconciler.errors import PayloadError, RolloutCommandError, RolloutNotFoundError, UsageError
from reconciler.rollout.decide import Command
from reconciler.sources.webhook import loads_bounded

__all__ = ["rollout_routes"]

#: The verbs of the path; ``promote`` becomes ``promote-full`` when asked for in full.
_VERBS = {
    "pause": Command.PAUSE,
    "resume": Command.RESUME,
    "promote": Command.PROMOTE,
    "abort": Command.ABORT,
}
#: A promote's body is ``{"full": true}`` at most.
_BODY_BYTES = 1024
#: ...which nests one level; a few more are tolerated, a thousand would overflow the parser.
_BODY_DEPTH = 4


def rollout_routes(*, command: Callable[[str, Command], RolloutDocument]) -> list[web.RouteDef]:
    """The command routes; ``command(policy, command)`` acts (``namespace/name``) and returns the rollout after it."""

    async def post_command(request: web.Request) -> web.Response:
        policy = f"{request.match_info['namespace']}/{request.match_info['name']}"
        verb = _VERBS.get(request.match_info["verb"])
        if verb is None:
            known = ", ".join(_VERBS)
            return _error(404, f"no rollout command {request.match_info['verb']!r}: one of {known}")
        try:
            if verb is Command.PROMOTE and await _full(request):
                verb = Command.PROMOTE_FULL
            return web.json_response(command(policy, verb).to_json())
        except UsageError as error:
            return _error(400, str(error))
        except RolloutNotFoundError as error:
            return _error(404, str(error))
        except RolloutCommandError as error:
            return _error(409, str(error))

    return [web.post("/api/v1/rollouts/{namespace}/{name}/{verb}", post_command)]


async def _full(request: web.Request) -> bool:
    """Whether a promote asks for git's weights now: ``?full=true``, or ``{"full": true}`` in the body."""
    query = request.query.get("full")
    if query is not None:
        if query not in ("true", "false"):
            raise UsageError(f"full must be true or false, not {query!r}")
        return query == "true"
    raw = await request.content.read(_BODY_BYTES + 1)
    if len(raw) > _BODY_BYTES:  # measured before stripping: padding must not hide the rest of a large body
        raise UsageError(f"a promote's body is at most {_BODY_BYTES} bytes")
    body = raw.strip()
    if not body:
        return False
    try:
        data = loads_bounded(body.decode("utf-8"), max_depth=_BODY_DEPTH)
    except (PayloadError, ValueError) as error:
        raise UsageError(f"a promote's body is not JSON: {error}") from error
    full = data.get("full", False) if isinstance(data, dict) else None
    if not isinstance(full, bool):
        raise UsageError('a promote\'s body is {"full": true} or {"full": false}')
    return full


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
