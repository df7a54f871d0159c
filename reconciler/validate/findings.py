"""Findings: what validation says about the config, each pinned to file, line and field path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reconciler.model.text import MESSAGE_CHARS, excerpt, printable, quote_path

__all__ = ["Code", "Finding", "Severity", "has_errors", "sort_findings"]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Code(StrEnum):
    """Finding codes. ``IST*`` are Istio's analyzer codes (same meaning and level); ``RC*`` are ours."""

    YAML_SYNTAX = "RC0001"
    EMPTY_FILE = "RC0002"
    NOT_A_MAPPING = "RC0003"
    DUPLICATE_RESOURCE = "RC0004"
    DUPLICATE_KEY = "RC0005"
    NOT_UTF8 = "RC0006"
    FILE_TOO_LARGE = "RC0007"
    REVISION_TOO_LARGE = "RC0008"
    SYMLINK_SKIPPED = "RC0009"
    UNKNOWN_KIND = "RC0101"
    UNSUPPORTED_FIELD = "RC0201"
    NOT_TRANSLATED = "RC0202"
    #: A proxy NACKed what this resource became (found at run time, not by validation).
    ENVOY_REJECTED = "RC0301"
    #: Envoy's own proto constraints refuse what this resource translates to (found before publishing).
    ENVOY_WOULD_REJECT = "RC0203"
    #: A VirtualService is the target of more than one RolloutPolicy: which walks its weights is ambiguous.
    CONFLICTING_ROLLOUT_POLICIES = "RC0401"
    SCHEMA = "IST0106"
    REFERENCED_RESOURCE_NOT_FOUND = "IST0101"
    CONFLICTING_MESH_GATEWAY_HOSTS = "IST0109"
    DESTINATION_PORT_SELECTOR_REQUIRED = "IST0112"
    UNREACHABLE_RULE = "IST0130"
    INEFFECTIVE_MATCH = "IST0131"
    HOST_NOT_IN_GATEWAY = "IST0132"
    CONFLICTING_GATEWAYS = "IST0145"
    SUBSET_SELECTS_NO_PODS = "IST0173"
    HOST_MATCHES_NO_SERVICE = "IST0174"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem (or note) about the config, located precisely enough to fix it."""

    code: Code
    severity: Severity
    message: str
    file: str
    line: int
    path: str = ""
    kind: str = ""
    namespace: str = ""
    name: str = ""
    hint: str = ""

    def __post_init__(self) -> None:
        # A value echoed without quote() (a host in an analyzer's message, a map key in a path)
        # still cannot make a finding, a status document or a log line huge.
        for field in _USER_TEXT:
            text = getattr(self, field)
            if len(text) > MESSAGE_CHARS:
                object.__setattr__(self, field, excerpt(text, MESSAGE_CHARS))

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "file": self.file,
            "line": self.line,
            "path": self.path,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "message": self.message,
            "hint": self.hint,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        """The finding :meth:`to_json` wrote; ``ValueError`` for a code or severity this version does not know."""
        return cls(
            code=Code(data["code"]),
            severity=Severity(data["severity"]),
            message=data["message"],
            file=data["file"],
            line=data["line"],
            path=data["path"],
            kind=data["kind"],
            namespace=data["namespace"],
            name=data["name"],
            hint=data["hint"],
        )

    def format(self) -> str:
        """``file:line: SEVERITY CODE Kind ns/name: message (field path)``, one printable line.

        An odd file name (a newline, a quote) is quoted; control characters anywhere are escaped.
        """
        subject = f" {self.kind} {self.namespace}/{self.name}" if self.kind else ""
        where = f" ({self.path})" if self.path else ""
        hint = f" — {self.hint}" if self.hint else ""
        told = f"{self.severity.upper()} {self.code.value}{subject}: {self.message}{where}{hint}"
        return f"{quote_path(self.file)}:{self.line}: {printable(told)}"


# A file's name is bounded by the filesystem; everything else may be a value from the config.
_USER_TEXT = ("message", "path", "kind", "namespace", "name", "hint")


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """By file and line, then code: the order people read a report in."""
    return sorted(findings, key=lambda f: (f.file, f.line, f.code.value, f.path, f.message))


def has_errors(findings: list[Finding] | tuple[Finding, ...]) -> bool:
    return any(f.severity is Severity.ERROR for f in findings)
