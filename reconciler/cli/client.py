"""Asking the running daemon over its HTTP API (``--server``), and printing what it says as tables.

:func:`add_server_flags` gives a command ``--server``, ``--token-file`` and ``--ca-file``, and
:meth:`Server.of` reads them back: the API token comes from the file or ``$RECONCILER_API_TOKEN``
(never from a flag's value, which ``ps`` shows) and is sent as ``Authorization: Bearer``.
Every command that talks to the daemon goes through :func:`request`: no answer at all is
:class:`Unreachable` (exit 3, "not running, wrong address"); a 401 or 403 is :class:`Denied`
(exit 4: the daemon is there and turned the caller away; the message says which token is
missing or wrong, never its value); a 503 from a follower replica is :class:`Standby` (exit 5:
the message names the leader to ask); any other error status is :class:`Refused` with the
daemon's message. :func:`table` and :func:`duration` lay out what came back; cells are
escaped, since the daemon echoes what git and proxies wrote.
"""

from __future__ import annotations

import argparse
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.api.access import TOKEN_ENV
from reconciler.api.standby import FOLLOWER_REASON
from reconciler.engine.settings import ApiSettings
from reconciler.errors import ReconcilerError
from reconciler.model.text import printable
from reconciler.sources.webhook import load_secret

__all__ = ["Denied", "Refused", "Server", "Standby", "Unreachable", "add_server_flags", "duration", "request", "table"]

#: Seconds one request may take; the daemon answers from memory.
_TIMEOUT_SECONDS = 10


class Unreachable(ReconcilerError):
    """The daemon did not answer at ``--server`` (not running, wrong address), or not with JSON."""


class Refused(ReconcilerError):
    """The daemon answered with an error status; the message is its ``error``."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class Denied(ReconcilerError):
    """The daemon answered 401 or 403: it is running and turned this caller away (no token, or not its token).

    Not :class:`Unreachable` (nothing is wrong with the address) and not :class:`Refused` (nothing is
    wrong with the request): a script tells the three apart by the exit code.
    """


class Standby(ReconcilerError):
    """The daemon is a follower replica (leader election): only the leader, named in the message, does this.

    Not :class:`Refused` (nothing is wrong with the request): ask the leader, or the Service in front of the
    replicas, which sends requests to the ready one.
    """


@dataclass(frozen=True, slots=True)
class Server:
    """Where the daemon answers, and what to show it: the API token, the CA its HTTPS certificate is from."""

    url: str
    token: bytes | None = None
    ca_file: Path | None = None
    #: Where the token came from (``--token-file PATH`` or ``$RECONCILER_API_TOKEN``), to name it, never show it.
    token_origin: str = ""

    def __str__(self) -> str:
        return self.url

    @classmethod
    def of(cls, args: argparse.Namespace) -> Server:
        """The server ``--server``, ``--token-file`` (or ``$RECONCILER_API_TOKEN``) and ``--ca-file`` name."""
        token = load_secret(file=args.token_file, env_var=TOKEN_ENV, what="API token")
        origin = f"--token-file {args.token_file}" if args.token_file else f"${TOKEN_ENV}"
        return cls(url=args.server, token=token, ca_file=args.ca_file, token_origin=origin if token else "")


_SERVER_HELP = "daemon HTTP address (default %(default)s)"


def add_server_flags(
    parser: argparse.ArgumentParser,
    *,
    default: str | None = f"http://{ApiSettings().address}",
    help: str = _SERVER_HELP,
) -> None:
    """``--server``, ``--token-file`` and ``--ca-file``: how a command reaches the daemon.

    ``default`` None makes ``--server`` optional for a command that also works without a daemon (``diff``).
    """
    parser.add_argument("--server", default=default, metavar="URL", help=help)
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"the daemon's API token (default: env {TOKEN_ENV}; needed when the daemon has one)",
    )
    parser.add_argument(
        "--ca-file", type=Path, metavar="PEM", help="CA of an https --server's certificate (default: the system's)"
    )


def request(server: Server, path: str, *, method: str = "GET", max_bytes: int | None = None) -> Any:
    """The JSON the daemon at ``server`` answers to ``method path`` (refused past ``max_bytes``, when given)."""
    url = server.url.rstrip("/") + path
    headers = {"Authorization": f"Bearer {server.token.decode()}"} if server.token else {}
    context = ssl.create_default_context(cafile=server.ca_file) if server.ca_file else None
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method=method, headers=headers), timeout=_TIMEOUT_SECONDS, context=context
        ) as answer:
            body = answer.read() if max_bytes is None else answer.read(max_bytes + 1)
        if max_bytes is not None and len(body) > max_bytes:
            raise Refused(f"the answer to {path} is larger than {max_bytes} bytes", status=200)
        return json.loads(body)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise _denied(server, error) from error
        body = _body_of(error)
        if error.code == 503 and body.get("reason") == FOLLOWER_REASON:
            raise Standby(f"the daemon at {server} is a follower: {printable(_message_of(error, body))}") from error
        raise Refused(_message_of(error, body), status=error.code) from error
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise Unreachable(f"cannot reach the daemon at {server}: {reason}") from error


def _denied(server: Server, error: urllib.error.HTTPError) -> Denied:
    """What a 401 or 403 means for this caller: which token to give or fix (named by where it came from)."""
    if error.code == 403:
        # The daemon's own words say why (no token configured beyond loopback) and what to set.
        said = printable(_message_of(error, _body_of(error)))
        return Denied(f"the daemon at {server} refused the request (403 Forbidden): {said}")
    if not server.token:
        return Denied(
            f"the daemon at {server} needs an API token (401 Unauthorized): give --token-file FILE "
            f"or set ${TOKEN_ENV} (the token of the daemon's --api-token-file)"
        )
    return Denied(
        f"the daemon at {server} did not accept the API token from {server.token_origin} (401 Unauthorized): "
        "it is not the token of the daemon's --api-token-file"
    )


def _body_of(error: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        body = json.load(error)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message_of(error: urllib.error.HTTPError, body: dict[str, Any]) -> str:
    message = body.get("error")
    return str(message) if message else f"{error.code} {error.reason}"


def table(rows: list[list[str]]) -> list[str]:
    """``rows`` (the first is the header) as lines, columns 3 spaces apart, every cell escaped."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def duration(seconds: float) -> str:
    """``42s``, ``5m`` or ``3h``, like kubectl's AGE."""
    whole = int(seconds)
    if whole < 120:
        return f"{whole}s"
    if whole < 7200:
        return f"{whole // 60}m"
    return f"{whole // 3600}h"
