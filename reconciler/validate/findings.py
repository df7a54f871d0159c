"""Findings: what validation says about the config, each pinned to file, line and field path."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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
    UNKNOWN_KIND = "RC0101"
    UNSUPPORTED_FIELD = "RC0201"
    NOT_TRANSLATED = "RC0202"
    ENVOY_REJECTS = "RC0203"
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

    def format(self) -> str:
        """``file:line: SEVERITY CODE Kind ns/name: message (field path)``."""
        subject = f" {self.kind} {self.namespace}/{self.name}" if self.kind else ""
        where = f" ({self.path})" if self.path else ""
        hint = f" — {self.hint}" if self.hint else ""
        return (
            f"{self.file}:{self.line}: {self.severity.upper()} {self.code.value}{subject}: {self.message}{where}{hint}"
        )


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """By file and line, then code: the order people read a report in."""
    return sorted(findings, key=lambda f: (f.file, f.line, f.code.value, f.path, f.message))


def has_errors(findings: list[Finding] | tuple[Finding, ...]) -> bool:
    return any(f.severity is Severity.ERROR for f in findings)
