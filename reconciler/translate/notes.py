"""Collecting what translation could not express, as findings pinned to file, line and field.

One :class:`Notes` lives for one ``translate`` call (never global). The same problem met
twice (a destination used by two routes, a policy shared by several clusters) is reported
once. What a piece of work reported can be recorded and replayed into another translation's
notes (:mod:`reconciler.translate.memo` reuses work that way), with the same result as reporting it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.model.config import Resource
from reconciler.model.source import SourceInfo
from reconciler.translate.registry import Origin
from reconciler.validate.findings import Code, Finding, Severity, sort_findings

__all__ = ["NoteCall", "Notes"]

#: The arguments of one :meth:`Notes.about` call: subject, path, message, hint, code, severity.
NoteCall = tuple[Resource[Any] | Origin | None, str, str, str, Code, Severity]


class Notes:
    """An ordered, de-duplicated set of findings produced while translating."""

    __slots__ = ("_findings", "_recording", "_seen", "journal")

    def __init__(self) -> None:
        self._findings: list[Finding] = []
        self._seen: set[tuple[str, int, str, str, str]] = set()
        self._recording: list[Any] | None = None
        #: Every call, in order, when set (apart from :meth:`record`, which work reused through a cache nests).
        self.journal: list[NoteCall] | None = None

    def record(self, into: list[Any] | None) -> None:
        """Append every following call to ``into`` (repeats too: replayed elsewhere, they may be first); None stops."""
        self._recording = into

    def replay(self, calls: Sequence[NoteCall]) -> None:
        """Report recorded calls again, in order, as if made here."""
        for subject, path, message, hint, code, severity in calls:
            self.about(subject, path=path, message=message, hint=hint, code=code, severity=severity)

    def about(
        self,
        subject: Resource[Any] | Origin | None,
        *,
        path: str,
        message: str,
        hint: str = "",
        code: Code = Code.NOT_TRANSLATED,
        severity: Severity = Severity.WARNING,
    ) -> None:
        """Record a finding about ``subject`` (a resource or a registry origin) at field ``path``."""
        if self._recording is not None or self.journal is not None:
            call = (subject, path, message, hint, code, severity)
            if self._recording is not None:
                self._recording.append(call)
            if self.journal is not None:
                self.journal.append(call)
        source: SourceInfo | None
        if isinstance(subject, Resource):
            kind, namespace, name = subject.kind.value, subject.namespace, subject.name
            source = subject.source
        elif subject is not None:
            kind, namespace, name, source = subject.kind, subject.namespace, subject.name, subject.source
        else:
            kind, namespace, name, source = "", "", "", None
        file = source.file if source is not None else ""
        line = source.line_of(path) if source is not None else 0
        key = (file, line, path, message, name)
        if key in self._seen:
            return
        self._seen.add(key)
        self._findings.append(
            Finding(
                code=code,
                severity=severity,
                message=message,
                file=file,
                line=line,
                path=path,
                kind=kind,
                namespace=namespace,
                name=name,
                hint=hint,
            )
        )

    def result(self) -> tuple[Finding, ...]:
        """All findings, in the order people read a report: by file, line, code."""
        return tuple(sort_findings(list(self._findings)))
