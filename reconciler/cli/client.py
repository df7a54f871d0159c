"""Asking the running daemon over its HTTP API (``--server``), and printing what it says as tables.

Every command that talks to the daemon goes through :func:`request`: no answer at all is
:class:`Unreachable` (exit 3, "not running, wrong address"), an answer with an error status
is :class:`Refused` with the daemon's message. :func:`table` and :func:`duration` lay out
what came back; cells are escaped, since the daemon echoes what git and proxies wrote.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.model.text import printable

__all__ = ["Refused", "Unreachable", "duration", "request", "table"]

#: Seconds one request may take; the daemon answers from memory.
_TIMEOUT_SECONDS = 10


class Unreachable(ReconcilerError):
    """The daemon did not answer at ``--server`` (not running, wrong address), or not with JSON."""


class Refused(ReconcilerError):
    """The daemon answered with an error status; the message is its ``error``."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def request(server: str, path: str, *, method: str = "GET") -> Any:
    """The JSON the daemon at ``server`` answers to ``method path``."""
    url = server.rstrip("/") + path
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=_TIMEOUT_SECONDS) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:
        raise Refused(_error_of(error), status=error.code) from error
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise Unreachable(f"cannot reach the daemon at {server}: {reason}") from error


def _error_of(error: urllib.error.HTTPError) -> str:
    try:
        body = json.load(error)
    except ValueError:
        body = None
    message = body.get("error") if isinstance(body, dict) else None
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
