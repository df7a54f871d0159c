"""User text in messages and on terminals: shortened to an excerpt, control characters escaped.

Config values, file names, commit subjects and Envoy's node ids come from whoever writes
them. Every message that echoes one uses :func:`quote`, so a 5 MB host makes a line of
about a hundred characters, not a 5 MB finding, status document or log line; every
terminal printer uses :func:`printable`, so an ANSI escape or a newline in a value cannot
repaint or split the output.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Callable

__all__ = ["EXCERPT_CHARS", "MESSAGE_CHARS", "excerpt", "printable", "quote", "quote_path"]

#: Characters of a user value a message shows; the rest is counted, not shown.
EXCERPT_CHARS = 80
#: Characters of a whole message (a finding's, a status message): a few quoted values and the words around them.
MESSAGE_CHARS = 1000

_REPR = reprlib.Repr()
_REPR.maxstring = EXCERPT_CHARS
_REPR.maxother = EXCERPT_CHARS


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` if at most ``limit`` characters, else its start and how many characters were left out."""
    return quote(text, quoted_by=str, limit=limit)


def quote(value: object, *, quoted_by: Callable[[str], str] = repr, limit: int = EXCERPT_CHARS) -> str:
    """``value`` quoted (``repr`` unless told otherwise), cut to ``limit`` characters: ``'ab'… (9 more characters)``.

    The one place a user value is shortened for a message: every message that echoes one uses this.
    """
    if not isinstance(value, str):
        # reprlib bounds every level of a list or mapping without building the whole repr first.
        return _REPR.repr(value)
    if len(value) <= limit:
        return quoted_by(value)
    return f"{quoted_by(value[:limit])}… ({len(value) - limit} more characters)"


def printable(text: str) -> str:
    """``text`` with every non-printable character (newline, ESC, NUL...) written as an escape like ``\\n``."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def quote_path(path: str) -> str:
    """A file name as ``file:line:`` output shows it: as is, or in double quotes when it holds odd characters."""
    if path.isprintable() and '"' not in path and "\\" not in path:
        return path
    return '"' + "".join(char if char.isprintable() and char not in '"\\' else _escape(char) for char in path) + '"'


def _escape(char: str) -> str:
    # JSON's escapes (\n, \", \u001b; \udcff for an undecodable byte of a file name) read the same everywhere.
    return json.dumps(char)[1:-1]
