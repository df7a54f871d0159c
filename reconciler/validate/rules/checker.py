"""What every kind's rules share: the :class:`Checker` that collects one resource's findings.

Its value checks (durations, percentages, Kubernetes labels, ``exportTo``) and the name
checks (``dns1123_label_error``, ``wildcard_domain_error``, which the host rules of every
kind use) follow istio/istio ``pkg/config/validation``. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from reconciler.model.common import Duration, Percent
from reconciler.model.config import Resource
from reconciler.model.source import child_path
from reconciler.model.text import quote
from reconciler.validate.findings import Code, Finding, Severity
from reconciler.validate.report import resource_finding

__all__ = ["Checker", "dns1123_label_error", "wildcard_domain_error"]

_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
_WILDCARD_LABEL = re.compile(rf"^(?:\*|(?:\*|\*-)?{_LABEL})$")
_QUALIFIED_NAME = re.compile(r"^(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$")
_MILLISECOND = 1_000_000


def dns1123_label_error(name: str) -> str:
    """Why ``name`` is not a DNS-1123 label (as Istio's ``IsDNS1123Label`` checks), or ``""``."""
    if not name:
        return "must not be empty"
    if len(name) > 63:
        return f"{quote(name)} is longer than 63 characters"
    if not _DNS1123_LABEL.match(name):
        return (
            f"{quote(name)} is not a DNS-1123 label"
            " (letters, digits and '-', starting and ending with a letter or digit)"
        )
    return ""


def wildcard_domain_error(domain: str, *, wildcard: bool = True) -> str:
    """Why ``domain`` is not a valid (wildcard) host name, as Istio's ``ValidateWildcardDomain``, or ``""``.

    A ``*`` is allowed only as (the start of) the first label; ``wildcard=False`` is
    Istio's ``ValidateFQDN``.
    """
    if not domain:
        return "empty domain name not allowed"
    if len(domain) > 255:
        return f"domain name {quote(domain)} too long (max 255)"
    first, dot, rest = domain.partition(".")
    first_ok = _WILDCARD_LABEL.match(first) if wildcard else _DNS1123_LABEL.match(first)
    if not first_ok or len(first) > 63:
        return f"domain name {quote(domain)} invalid (label {quote(first)} invalid)"
    if not dot:
        return ""
    labels = rest.split(".")
    if labels[-1].isdigit():
        return f"domain name {quote(domain)} invalid (top level domain {quote(labels[-1])} cannot be all-numeric)"
    for index, label in enumerate(labels):
        if index == len(labels) - 1 and label == "":
            return ""  # a trailing dot: an absolute name
        if len(label) > 63 or not _DNS1123_LABEL.match(label):
            return f"domain name {quote(domain)} invalid (label {quote(label)} invalid)"
    return ""


class Checker:
    """Collects the findings about one resource."""

    def __init__(self, resource: Resource[Any]) -> None:
        self.resource = resource
        self.findings: list[Finding] = []

    def error(self, path: str, message: str, *, hint: str = "") -> None:
        self.findings.append(resource_finding(self.resource, code=Code.SCHEMA, path=path, message=message, hint=hint))

    def warning(self, path: str, message: str, *, hint: str = "") -> None:
        self.findings.append(
            resource_finding(
                self.resource, code=Code.SCHEMA, path=path, message=message, severity=Severity.WARNING, hint=hint
            )
        )

    # Shared value checks -----------------------------------------------------------------------

    def duration_at_least_1ms(self, duration: Duration | None, path: str) -> None:
        """Istio's ``ValidateDuration``: Envoy takes these in whole milliseconds, and 0 would disable them."""
        if duration is None:
            return
        if duration.nanos < _MILLISECOND:
            self.error(path, f"duration {duration.text} must be at least 1ms", hint="write e.g. 1ms, 250ms or 2s")
        elif duration.nanos % _MILLISECOND:
            self.error(path, f"duration {duration.text} is finer than a millisecond; only ms precision is supported")

    def percentage(self, percent: Percent | None, path: str) -> None:
        # Envoy keeps fractions to a millionth; smaller non-zero shares would silently become 0.
        if percent is not None and 0.0 < percent.value < 0.0001:
            self.error(child_path(path, "value"), f"percentage {percent.value} is neither 0 nor in 0.0001..100")

    def labels(self, labels: Mapping[str, str] | None, path: str) -> None:
        """Kubernetes label syntax (Istio's ``labels.Instance.Validate``)."""
        for key, value in (labels or {}).items():
            key_path = child_path(path, key)
            prefix, slash, name = key.rpartition("/")
            bad_prefix = bool(slash) and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix))
            if bad_prefix or len(name) > 63 or not _QUALIFIED_NAME.match(name):
                self.error(
                    key_path,
                    f"invalid label key {quote(key)}",
                    hint="an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_' or '.'",
                )
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                self.error(
                    key_path, f"invalid label value {quote(value)}", hint="up to 63 letters, digits, '-', '_' or '.'"
                )

    def export_to(self, export_to: tuple[str, ...], path: str, *, allow_none: bool) -> None:
        """``exportTo``: ``.``, ``*``, a namespace (``~`` for ServiceEntries), no duplicates, no mixing with ``*``."""
        seen: set[str] = set()
        namespace = self.resource.namespace
        for index, entry in enumerate(export_to):
            entry_path = f"{path}[{index}]"
            key = namespace if entry == "." else entry
            if key in seen:
                self.error(entry_path, f"duplicate entry {quote(entry)} in exportTo")
                continue
            seen.add(key)
            if entry == "~" and not allow_none:
                self.error(entry_path, "exportTo '~' (visible to no one) is only allowed on ServiceEntries")
            elif entry not in (".", "*", "~") and dns1123_label_error(entry):
                self.error(entry_path, f"exportTo entry {quote(entry)} is not '.', '*' or a namespace name")
        if len(export_to) > 1 and "*" in export_to:
            self.error(
                path, "exportTo cannot mix public (*) with other entries", hint="'*' alone already means everywhere"
            )
        if len(export_to) > 1 and "~" in export_to:
            self.error(path, "cannot export a ServiceEntry to no one (~) and someone")
