"""Helpers for validation tests (imported by name; pytest puts this folder on sys.path)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from reconciler.loader import LoadResult, load_files
from reconciler.validate.findings import Finding, Severity

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "validate"


def join(*documents: str) -> str:
    """``documents`` dedented and joined as one multi-document YAML file."""
    return "\n---\n".join(textwrap.dedent(document).strip("\n") for document in documents) + "\n"


def load_text(*documents: str, namespace: str = "default", file: str = "mesh.yaml") -> LoadResult:
    """Load ``documents`` (joined as one multi-document file) as a config."""
    return load_files({file: join(*documents)}, default_namespace=namespace)


def line_containing(fragment: str, *documents: str) -> int:
    """The 1-based line of the only line of the joined ``documents`` that contains ``fragment``."""
    (line,) = [number for number, text in enumerate(join(*documents).splitlines(), 1) if fragment in text]
    return line


def with_code(result: LoadResult, code: str) -> list[Finding]:
    """Findings of ``code`` (``"IST0101"``)."""
    return [finding for finding in result.findings if finding.code.value == code]


@dataclass(frozen=True)
class Case:
    """One check, tried on both sides: every ``good`` value loads cleanly, the ``bad`` one is exactly one finding."""

    template: str  # a config with VALUE where the checked value goes
    good: tuple[str, ...]
    bad: str
    path: str
    message: str
    hint: str | None = None  # the exact hint, where it is what teaches the fix
    marker: str = ""  # text on the line the finding points at; default: the bad value
    code: str = "IST0106"
    severity: Severity = Severity.ERROR
    others: tuple[str, ...] = ()  # codes of the other findings the bad value must also raise (a dangling reference)

    def document(self, value: str) -> str:
        return self.template.replace("VALUE", value)


def assert_good_values_load_without_findings(case: Case) -> None:
    for value in case.good:
        result = load_text(case.document(value))
        assert result.findings == (), value
        assert result.config.resource_count == result.documents, value


def assert_bad_value_is_one_finding_at_its_field_and_line(case: Case) -> None:
    document = case.document(case.bad)
    findings = load_text(document).findings
    assert sorted(f.code.value for f in findings if f.code.value != case.code or f.severity != case.severity) == sorted(
        case.others
    )
    (finding,) = [f for f in findings if f.code.value == case.code and f.severity == case.severity]
    assert (finding.code.value, finding.severity, finding.path) == (case.code, case.severity, case.path)
    assert finding.line == line_containing(case.marker or case.bad, document)
    assert finding.message == case.message
    if case.hint is not None:
        assert finding.hint == case.hint


# Small building blocks the tests combine ----------------------------------------------------------

SERVICE_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.shop.example.com]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
  - {address: 10.0.0.2, labels: {version: v2}}
"""

DESTINATION_RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews.shop.example.com
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
"""


def server(port: str, hosts: str = '["*"]', tls: str = "") -> str:
    """One entry of ``GATEWAY``'s ``servers:`` list; append as many as needed."""
    return f"  - port: {port}\n    hosts: {hosts}\n" + (f"    tls: {tls}\n" if tls else "")


def virtual_service(
    http: str, *, name: str = "reviews", extra: str = "", hosts: str = "[reviews.shop.example.com]"
) -> str:
    """A VirtualService with the given ``http:`` block (YAML, indented by two spaces under ``spec``)."""
    return (
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\n"
        f"spec:\n  hosts: {hosts}\n{extra}  http:\n{textwrap.indent(textwrap.dedent(http).strip(chr(10)), '  ')}\n"
    )
