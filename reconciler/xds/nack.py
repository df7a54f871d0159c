"""Envoy's NACK text reduced to its cause.

Envoy often quotes the whole rejected resource (a protobuf text dump, marked
``goo.gle/debug...`` by recent protobuf) before the reason, and cuts the message at
4 KB with ``...(truncated)``: a large resource pushes the reason out of the message
altogether. Status and logs want the reason, so the quoted resource is replaced by its
name, and what is left is bounded. Pure functions.
"""

from __future__ import annotations

import re

__all__ = ["MAX_CAUSE_CHARS", "envoy_cause"]

#: The longest cause kept; Envoy's own messages for a single failure are far shorter.
MAX_CAUSE_CHARS = 1000

#: protobuf's marker at the start of a DebugString since 2024; its spelling varies on purpose.
_DUMP_MARKER = re.compile(r"goo\.gle/debug\w*\s*")
#: One field of a text-format dump at its top level: ``name: "x"``, ``virtual_hosts {``, ``[type.url] {``.
_FIELD = re.compile(r"^\s*(?:\[[^\]]*\]|[A-Za-z_][\w.]*)\s*(?::|\{)")
_NAME = re.compile(r'^\s*name:\s*"((?:[^"\\]|\\.)*)"')
_ENVOY_CUT = "...(truncated)"


def envoy_cause(message: str) -> str:
    """``message`` with each quoted resource replaced by ``<name>``, on one line, at most :data:`MAX_CAUSE_CHARS`.

    When Envoy cut the message inside a quoted resource, the cause never reached us; the
    text says so and points at the proxy's own log, which has the whole message.
    """
    parts: list[str] = []
    rest = message
    while (marker := _DUMP_MARKER.search(rest)) is not None:
        parts.append(rest[: marker.start()])
        name, after = _skip_dump(rest[marker.end() :])
        parts.append(f"<{name}>" if name else "<resource>")
        if after is None:
            parts.append(
                " (Envoy cut its message at 4 KB inside its copy of the resource, before the cause;"
                " the proxy's log has it whole)"
            )
            rest = ""
            break
        rest = after
    parts.append(rest)
    text = " ".join("".join(parts).split())
    if len(text) > MAX_CAUSE_CHARS:
        return f"{text[:MAX_CAUSE_CHARS]}... ({len(text) - MAX_CAUSE_CHARS} more characters)"
    return text


def _skip_dump(text: str) -> tuple[str | None, str | None]:
    """The top-level ``name`` of the dump at the start of ``text`` and what follows the dump (None: cut inside)."""
    name: str | None = None
    depth = 0
    offset = 0
    for line in text.splitlines(keepends=True):
        if depth == 0 and line.strip():
            if not _FIELD.match(line):
                return name, text[offset:]
            found = _NAME.match(line)
            if found and name is None:
                name = found.group(1)
        depth = max(depth + _brace_balance(line), 0)
        offset += len(line)
    # Ran to the end: a dump still open (or one Envoy cut, marked ...(truncated)) has no cause after it.
    if depth == 0 and not text.rstrip().endswith(_ENVOY_CUT):
        return name, ""
    return name, None


def _brace_balance(line: str) -> int:
    """Opening minus closing braces on ``line``, outside quoted strings."""
    balance = 0
    quoted = False
    escaped = False
    for char in line:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = quoted
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "{":
            balance += 1
        elif not quoted and char == "}":
            balance -= 1
    return balance
