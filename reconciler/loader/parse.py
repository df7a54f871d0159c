"""YAML text → plain documents with the line of every field (pure: text in, values out).

Builds Python values straight from the parser's event stream (libyaml's C parser when
available) in one loop with an explicit stack, recording the line of every field on
the way; no node tree is composed. Two things a careless or
hostile file could use to take the process down are refused instead of built:

* an alias of a mapping or list: ``a: &x [*x]`` is a cycle, and ten levels of ten
  aliases each expand to ten billion values. It is a finding and the document is
  dropped; nothing is expanded. Aliases of scalars are allowed while the file's values,
  expanded, stay within ``max_chars`` (the size a file may have): two thousand aliases of
  a 100 KB string would otherwise make a 120 KB file render 200 MB of Envoy config.
* nesting deeper than :data:`MAX_DEPTH`: libyaml's own composer recurses in C and
  a 60 KB line of ``- - - …`` overflows its stack, and its scanner slows down
  quadratically with ``[[[…`` depth. The file is refused like malformed YAML and
  parsing stops at that event. Newer libyaml builds refuse deep nesting in their
  scanner, ahead of the events this module sees; such an error is re-checked with
  the pure-Python parser, so the finding is ours whatever the library says first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.model.limits import DEFAULT_LIMITS
from reconciler.model.source import SourceInfo, child_path
from reconciler.model.text import excerpt, quote
from reconciler.validate.findings import Code, Finding, Severity
from reconciler.validate.schema import document_subject

__all__ = ["MAX_DEPTH", "ParsedDocument", "parse_yaml"]

#: Deepest nesting of mappings and lists accepted; Istio resources need about a dozen.
MAX_DEPTH = 100

_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS = yaml.constructor.SafeConstructor()
_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
_MALFORMED_HINT = "fix the YAML syntax; nothing in this file is applied"


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """One YAML document: its plain value and where each of its fields is."""

    data: Any
    source: SourceInfo


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Frame:
    """A mapping or list being built; for a mapping, the key waiting for its value."""

    __slots__ = ("anchor", "has_key", "in_key", "is_mapping", "key", "key_child", "line", "path", "value")

    def __init__(self, value: dict[Any, Any] | list[Any], path: str, line: int, anchor: str | None, in_key: bool):
        self.value = value
        self.is_mapping = isinstance(value, dict)
        self.path = path
        self.line = line
        self.anchor = anchor
        self.in_key = in_key  # inside a complex (non-scalar) mapping key: no field lines recorded
        self.has_key = False
        self.key: Any = None
        self.key_child = ""


def parse_yaml(
    text: str, *, file: str, default_namespace: str = "default", max_chars: int = DEFAULT_LIMITS.file_bytes
) -> tuple[list[ParsedDocument], list[Finding]]:
    """Every non-empty document of ``text``; malformed YAML or duplicate keys become findings.

    ``max_chars`` bounds the characters of all values of the file with scalar aliases
    expanded; the document whose alias passes it is dropped with a finding.

    A finding inside a document that has ``kind`` and ``metadata.name`` names that resource
    (namespace ``default_namespace`` if it sets none), as the decoder's findings do.
    """
    documents: list[ParsedDocument] = []
    findings: list[Finding] = []
    loader = _LOADER(text)
    try:
        _build(loader, file, default_namespace=default_namespace, max_chars=max_chars, out=(documents, findings))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        error_line = mark.line + 1 if mark else 1
        deep_line = _too_deep_before(text, error_line)
        if deep_line is not None:
            return [], [*findings, _too_deep(file, deep_line)]
        problem = getattr(error, "problem", None) or str(error)
        return [], [*findings, _malformed(f"malformed YAML: {problem}", file, error_line)]
    except _TooDeep as error:
        return [], [*findings, _too_deep(file, error.line)]
    finally:
        loader.dispose()
    if not documents and not findings:
        findings.append(
            Finding(
                code=Code.EMPTY_FILE,
                severity=Severity.WARNING,
                message="file has no YAML documents",
                file=file,
                line=1,
                hint="delete the file or add a resource",
            )
        )
    return documents, findings


def _too_deep_before(text: str, error_line: int) -> int | None:
    """The line where nesting first passes :data:`MAX_DEPTH` in the lines up to ``error_line``, if it does.

    The pure-Python parser has no nesting limit of its own and reads events one token at a
    time, so it reaches our limit before any library limit; it runs only on the error path.
    """
    end = 0
    for _ in range(error_line):
        end = text.find("\n", end) + 1
        if end == 0:
            end = len(text)
            break
    depth = 0
    try:
        for event in yaml.parse(text[:end], Loader=yaml.SafeLoader):
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return event.start_mark.line + 1 if event.start_mark else error_line
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None
    return None


def _too_deep(file: str, line: int) -> Finding:
    return _malformed(f"malformed YAML: mappings and lists nested more than {MAX_DEPTH} levels deep", file, line)


def _build(
    loader: Any,
    file: str,
    *,
    default_namespace: str,
    max_chars: int,
    out: tuple[list[ParsedDocument], list[Finding]],
) -> None:
    """Turn the parser's events into ``out``'s documents and findings: one loop, one explicit stack (hot path)."""
    documents, findings = out
    get_event = loader.get_event
    resolve = loader.resolve
    stack: list[_Frame] = []
    top: _Frame | None = None  # stack[-1], or None at the document's root
    lines: dict[str, int] = {}
    # anchor → (what it names: "mapping", "list" or "scalar"; a scalar's value and its characters; where it is)
    anchors: dict[str, tuple[str, Any, int, yaml.Mark]] = {}
    expanded = 0  # characters of every value so far, aliases counted at each use: across the file's documents
    data: Any = None
    start = 1
    depth = 0  # open collections, counted even while skipping a dropped document
    dropped = False
    first_finding = 0  # findings[first_finding:] are about the current document
    while True:
        event = get_event()
        kind = type(event)
        if kind is yaml.ScalarEvent or kind is yaml.AliasEvent:
            if dropped:
                continue
            line = event.start_mark.line + 1
            anchor = event.anchor
            if kind is yaml.AliasEvent:
                defined = anchors.get(anchor)
                if defined is None:
                    undefined = f"found undefined alias {quote(anchor)}"
                    raise yaml.composer.ComposerError(None, None, undefined, event.start_mark)
                what, value, chars, mark = defined
                expanded += chars
                if what != "scalar":
                    inside = any(frame.anchor == anchor for frame in stack)
                    refusal: Finding | None = _alias_refused(file, anchor, what, line, mark.line + 1, inside=inside)
                elif expanded > max_chars:
                    refusal = _expansion_refused(file, anchor, chars, line, mark.line + 1, max_chars=max_chars)
                else:
                    refusal = None
                if refusal is not None:
                    findings.append(refusal)
                    # What was built so far (kind, metadata if complete) still names the resource.
                    data = stack[0].value if stack else None
                    dropped, top = True, None
                    stack.clear()
                    continue
            else:
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolve(yaml.ScalarNode, event.value, event.implicit)
                value = event.value if tag == _STR else _scalar(tag, event.value, event.start_mark)
                expanded += len(event.value)
                if anchor is not None:
                    _check_new_anchor(anchors, anchor, event.start_mark)
                    anchors[anchor] = ("scalar", value, len(event.value), event.start_mark)
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            depth += 1
            if depth > MAX_DEPTH:
                raise _TooDeep(event.start_mark.line + 1)
            if dropped:
                continue
            line = event.start_mark.line + 1
            anchor = event.anchor
            is_mapping = kind is yaml.MappingStartEvent
            if anchor is not None:
                _check_new_anchor(anchors, anchor, event.start_mark)
                anchors[anchor] = ("mapping" if is_mapping else "list", None, 0, event.start_mark)
            if top is None:
                path, in_key = "", False
            elif not top.is_mapping:
                path, in_key = f"{top.path}[{len(top.value)}]", top.in_key
            elif top.has_key:
                path, in_key = top.key_child, top.in_key
            else:
                path, in_key = top.path, True  # a complex key: it only ever becomes text
            top = _Frame({} if is_mapping else [], path, line, anchor, in_key)
            stack.append(top)
            continue
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            depth -= 1
            if dropped:
                continue
            finished = stack.pop()
            value, line = finished.value, finished.line
            top = stack[-1] if stack else None
        elif kind is yaml.DocumentStartEvent:
            stack, top, lines, anchors, data, dropped = [], None, {}, {}, None, False
            first_finding = len(findings)
            continue
        elif kind is yaml.DocumentEndEvent:
            if len(findings) > first_finding:
                _name_subject(findings, first_finding, data, default_namespace)
            # data is None for an empty document (`---` with only comments): normal in multi-doc files.
            if not dropped and data is not None:
                documents.append(ParsedDocument(data=data, source=SourceInfo(file=file, line=start, field_lines=lines)))
            continue
        elif kind is yaml.StreamStartEvent:
            continue
        else:
            return  # StreamEndEvent (nothing else can come, and past the end the parser only returns None)
        # A finished value (scalar, alias of a scalar, or a closed collection) starting on `line`.
        if top is None:
            data, start = value, line
        elif not top.is_mapping:
            if not top.in_key:
                lines[f"{top.path}[{len(top.value)}]"] = line
            top.value.append(value)  # type: ignore[union-attr]
        elif top.has_key:
            top.value[top.key] = value
            top.has_key = False
        else:
            key = str(value) if isinstance(value, dict | list) else value
            key_text = str(key)
            child = child_path(top.path, key_text)
            if not top.in_key:
                if key in top.value:
                    findings.append(_duplicate_key(file, key_text, line, child))
                lines[child] = line
            top.key, top.key_child, top.has_key = key, child, True


def _name_subject(findings: list[Finding], first: int, data: Any, default_namespace: str) -> None:
    """Give ``findings[first:]`` (about one document) the resource the document names, if it names one."""
    kind, namespace, name = document_subject(data, default_namespace)
    if not kind or not name:
        return
    for index in range(first, len(findings)):
        if not findings[index].kind:
            findings[index] = dataclasses.replace(findings[index], kind=kind, namespace=namespace, name=name)


def _check_new_anchor(anchors: dict[str, tuple[str, Any, int, yaml.Mark]], anchor: str, mark: yaml.Mark) -> None:
    if anchor in anchors:
        raise yaml.composer.ComposerError(
            "found duplicate anchor; first occurrence", anchors[anchor][3], "second occurrence", mark
        )


def _alias_refused(file: str, anchor: str, what: str, line: int, defined_at: int, *, inside: bool) -> Finding:
    return Finding(
        code=Code.YAML_SYNTAX,
        severity=Severity.ERROR,
        message=(
            f"YAML anchors and aliases are not supported: *{excerpt(anchor)} repeats the {what} anchored at line"
            f" {defined_at}{' from inside itself' if inside else ''}; expand them"
        ),
        file=file,
        line=line,
        hint="write the repeated value out in full; nothing in this document is applied",
    )


def _expansion_refused(file: str, anchor: str, chars: int, line: int, defined_at: int, *, max_chars: int) -> Finding:
    return Finding(
        code=Code.YAML_SYNTAX,
        severity=Severity.ERROR,
        message=(
            f"YAML aliases expand this file past {max_chars} characters, the size a file may have:"
            f" *{excerpt(anchor)} repeats the {chars} characters anchored at line {defined_at}"
        ),
        file=file,
        line=line,
        hint="write the values out, with fewer repeats of long ones; nothing in this document is applied",
    )


def _duplicate_key(file: str, key_text: str, line: int, path: str) -> Finding:
    return Finding(
        code=Code.DUPLICATE_KEY,
        severity=Severity.ERROR,
        message=f"key {quote(key_text)} appears twice in the same mapping; YAML would keep only the last",
        file=file,
        line=line,
        path=path,
        hint="remove or merge the duplicate key",
    )


def _malformed(message: str, file: str, line: int) -> Finding:
    return Finding(
        code=Code.YAML_SYNTAX, severity=Severity.ERROR, message=message, file=file, line=line, hint=_MALFORMED_HINT
    )


def _scalar(tag: str, value: str, mark: yaml.Mark) -> Any:
    if not tag.startswith(_TAG):
        return value
    kind = tag[len(_TAG) :]
    if kind == "str":
        return value
    if kind == "null":
        return None
    construct = _CONSTRUCTORS.get(kind)
    if construct is None:
        # Timestamps, binary and other exotic tags stay text; the schema decides if that is allowed.
        return value
    try:
        return construct(yaml.ScalarNode(tag, value))
    except (ValueError, KeyError, IndexError) as error:  # `!!int abc`, `!!bool ""`, or an int of 5,000 digits
        raise yaml.constructor.ConstructorError(None, None, f"{quote(value)} is not a valid !!{kind}", mark) from error


_CONSTRUCTORS: dict[str, Callable[[yaml.ScalarNode], Any]] = {
    "bool": _SCALARS.construct_yaml_bool,
    "int": _SCALARS.construct_yaml_int,
    "float": _SCALARS.construct_yaml_float,
}
