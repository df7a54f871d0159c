"""IST0130 VirtualServiceUnreachableRule and IST0131 VirtualServiceIneffectiveMatch.

Rules are tried in order and the first match wins, so (as Istio's
``analyzeUnreachableHTTPRules`` and its TCP/TLS twins):

* a rule after a rule without ``match`` (a catch-all) is never used (IST0130);
* a rule all of whose matches appeared in earlier rules is never used (IST0130);
* a match equal to an earlier one (its ``name`` aside) is never used (IST0131), nor an
  HTTP ``uri.prefix`` match covered by an earlier, shorter prefix with otherwise equal
  conditions (IST0131).

Per VirtualService; the cost is linear in its matches (prefix coverage compares only
matches whose other conditions are equal).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from reconciler.model.config import Resource
from reconciler.model.virtualservice import HTTPMatchRequest, VirtualServiceSpec
from reconciler.validate.analyzers.context import AnalysisContext
from reconciler.validate.findings import Code, Finding, Severity
from reconciler.validate.report import go_quote, resource_finding

__all__ = ["analyze", "ineffective_message", "unreachable_message"]


def unreachable_message(ruleno: str, reason: str) -> str:
    """Istio's template: ``VirtualService rule %v not used (%s).``"""
    return f"VirtualService rule {ruleno} not used ({reason})."


def ineffective_message(ruleno: str, *, matchno: str, dupno: str) -> str:
    """Istio's template for VirtualServiceIneffectiveMatch."""
    return f"VirtualService rule {ruleno} match {matchno} is not used (duplicate/overlapping match in rule {dupno})."


def _name(name: str | None, index: int) -> str:
    return go_quote(name) if name else f"#{index}"


def _http_key(match: HTTPMatchRequest) -> Hashable:
    """Everything that decides whether a request matches (header names are case-insensitive)."""
    return (
        match.uri,
        _rest_key(match),
    )


def _rest_key(match: HTTPMatchRequest) -> Hashable:
    """The conditions other than the URI."""
    return (
        match.method,
        tuple(sorted((name.lower(), value) for name, value in (match.headers or {}).items())),
        tuple(sorted((match.query_params or {}).items())),
        match.ignore_uri_case,
    )


class _Reporter:
    def __init__(self, service: Resource[VirtualServiceSpec], findings: list[Finding]) -> None:
        self.service = service
        self.findings = findings

    def unreachable(self, path: str, ruleno: str, reason: str) -> None:
        self.findings.append(
            resource_finding(
                self.service,
                code=Code.UNREACHABLE_RULE,
                severity=Severity.WARNING,
                path=path,
                message=unreachable_message(ruleno, reason),
                hint="reorder the rules (specific matches first, the catch-all last) or delete this one",
            )
        )

    def ineffective(self, path: str, ruleno: str, matchno: str, dupno: str) -> None:
        self.findings.append(
            resource_finding(
                self.service,
                code=Code.INEFFECTIVE_MATCH,
                severity=Severity.INFO,
                path=path,
                message=ineffective_message(ruleno, matchno=matchno, dupno=dupno),
                hint="an earlier match already takes these requests; delete or narrow this match",
            )
        )


def _analyze_rules(
    report: _Reporter,
    *,
    section: str,
    rules: Sequence[Any],
    rule_name: Callable[[Any, int], str],
    match_name: Callable[[Any, int], str],
    key: Callable[[Any], Hashable],
) -> None:
    seen: dict[Hashable, int] = {}
    catch_all = -1
    for index, rule in enumerate(rules):
        path = f"spec.{section}[{index}]"
        name = rule_name(rule, index)
        if not rule.match:
            if catch_all >= 0:
                report.unreachable(path, name, "only the last rule can have no matches")
            catch_all = index
            continue
        if catch_all >= 0:
            report.unreachable(path, name, "route without matches defined before")
            continue
        duplicates = 0
        for match_index, match in enumerate(rule.match):
            match_key = key(match)
            earlier = seen.get(match_key)
            if earlier is not None:
                duplicates += 1
                report.ineffective(
                    f"{path}.match[{match_index}]",
                    name,
                    match_name(match, match_index),
                    rule_name(rules[earlier], earlier),
                )
                continue
            seen[match_key] = index
        if duplicates == len(rule.match):
            report.unreachable(path, name, "all matches used by prior rules")


def _analyze_prefixes(report: _Reporter, spec: VirtualServiceSpec) -> None:
    """IST0131 for a ``uri.prefix`` match that an earlier, shorter prefix (other conditions equal) covers."""
    groups: dict[Hashable, list[tuple[str, int, int]]] = {}
    seen: set[Hashable] = set()
    for index, rule in enumerate(spec.http):
        for match_index, match in enumerate(rule.match):
            match_key = _http_key(match)
            if match_key in seen:
                continue  # exact duplicates are reported already
            seen.add(match_key)
            if match.uri is not None and match.uri.prefix:
                groups.setdefault(_rest_key(match), []).append((match.uri.prefix, index, match_index))
    for entries in groups.values():
        for position, (prefix, index, match_index) in enumerate(entries):
            for earlier_prefix, earlier_index, earlier_match in entries[:position]:
                if prefix != earlier_prefix and prefix.startswith(earlier_prefix):
                    earlier_rule = spec.http[earlier_index]
                    report.ineffective(
                        f"spec.http[{index}].match[{match_index}]",
                        _name(spec.http[index].name, index),
                        f"{_name(spec.http[index].match[match_index].name, match_index)} of prefix {prefix}",
                        f"{_name(earlier_rule.match[earlier_match].name, earlier_match)} of prefix {earlier_prefix} "
                        f"on {_name(earlier_rule.name, earlier_index)}",
                    )
                    break


def analyze(context: AnalysisContext) -> list[Finding]:
    findings: list[Finding] = []
    for service in context.config.virtual_services:
        report = _Reporter(service, findings)
        spec = service.spec
        _analyze_rules(
            report,
            section="http",
            rules=spec.http,
            rule_name=lambda rule, index: _name(rule.name, index),
            match_name=lambda match, index: _name(match.name, index),
            key=_http_key,
        )
        # TCP and TLS rules and matches have no names.
        for section, rules in (("tcp", spec.tcp), ("tls", spec.tls)):
            _analyze_rules(
                report,
                section=section,
                rules=rules,
                rule_name=lambda _rule, index: f"#{index}",
                match_name=lambda _match, index: f"#{index}",
                key=lambda match: match,
            )
        _analyze_prefixes(report, spec)
    return findings
