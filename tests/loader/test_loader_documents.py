"""Loading: multi-document files, order, file:line and field paths, and each malformed input as a clear finding."""

from __future__ import annotations

import pytest
from validate_helpers import DESTINATION_RULE, load_text, with_code

from reconciler.loader import load_files
from reconciler.validate.findings import Severity

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
spec:
  hosts: [{name}]
  http:
  - route:
    - destination: {{host: {name}}}
"""


def vs(name: str) -> str:
    return VS.format(name=name).lstrip("\n")


def test_a_multi_document_file_yields_every_resource_in_order() -> None:
    result = load_text(vs("a"), vs("b"), DESTINATION_RULE, vs("c"))
    assert [r.name for r in result.config.virtual_services] == ["a", "b", "c"]
    assert result.documents == 4
    assert [r.source.line for r in result.config.virtual_services] == [1, 11, 30]


def test_files_load_in_sorted_path_order_whatever_the_mapping_order() -> None:
    files = {"z/last.yaml": vs("z"), "a/first.yaml": vs("a"), "m.yaml": vs("m")}
    result = load_files(files)
    assert [r.name for r in result.config.virtual_services] == ["a", "m", "z"]
    assert [r.source.file for r in result.config.virtual_services] == ["a/first.yaml", "m.yaml", "z/last.yaml"]


def test_findings_are_sorted_by_file_then_line() -> None:
    bad = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: []\n"
    result = load_files({"b.yaml": bad, "a.yaml": "key: [unclosed\n", "c.yaml": ""})
    keys = [(f.file, f.line) for f in result.findings]
    assert keys == sorted(keys)
    assert {f.file for f in result.findings} == {"a.yaml", "b.yaml", "c.yaml"}


def test_a_finding_names_file_line_and_field_path() -> None:
    document = vs("reviews").replace(
        "    - destination: {host: reviews}", "    - destination: {host: reviews, port: 80}"
    )
    result = load_text(document, file="mesh/reviews.yaml")
    (finding,) = result.findings
    assert (finding.file, finding.line, finding.path) == (
        "mesh/reviews.yaml",
        9,
        "spec.http[0].route[0].destination.port",
    )
    assert finding.format().startswith("mesh/reviews.yaml:9: ERROR IST0106 VirtualService default/reviews: ")
    assert finding.format().endswith("(spec.http[0].route[0].destination.port)")


def test_malformed_yaml_is_one_error_at_its_line_and_nothing_else_of_that_file() -> None:
    result = load_files({"bad.yaml": "apiVersion: v1\nkind: [oops\n", "good.yaml": vs("reviews")})
    (finding,) = result.findings
    assert (finding.code.value, finding.severity, finding.file) == ("RC0001", Severity.ERROR, "bad.yaml")
    assert finding.line >= 2
    assert [r.name for r in result.config.virtual_services] == ["reviews"]


def test_an_empty_file_is_a_warning() -> None:
    (finding,) = load_files({"empty.yaml": "   \n# nothing\n"}).findings
    assert (finding.code.value, finding.severity, finding.line) == ("RC0002", Severity.WARNING, 1)


def test_empty_documents_between_separators_are_skipped_silently() -> None:
    result = load_files({"mesh.yaml": "---\n---\n" + vs("a") + "---\n# just a comment\n"})
    assert result.findings == ()
    assert result.documents == 1


def test_a_non_mapping_document_is_an_error() -> None:
    (finding,) = load_files({"list.yaml": "- a\n- b\n"}).findings
    assert (finding.code.value, finding.severity, finding.line) == ("RC0003", Severity.ERROR, 1)
    assert "not a Kubernetes object" in finding.message


def test_a_duplicate_resource_is_an_error_pointing_at_the_first_definition() -> None:
    result = load_files({"a.yaml": vs("reviews"), "b.yaml": vs("reviews")})
    (finding,) = with_code(result, "RC0004")
    assert (finding.file, finding.line, finding.path) == ("b.yaml", 4, "metadata.name")
    assert "already defined at a.yaml:1" in finding.message
    assert len(result.config.virtual_services) == 1


def test_the_same_name_in_two_namespaces_is_not_a_duplicate() -> None:
    other = vs("reviews").replace("  name: reviews", "  name: reviews\n  namespace: other")
    assert with_code(load_text(vs("reviews"), other), "RC0004") == []


def duplicate_hosts(document: str, name: str) -> str:
    """``document`` with its ``hosts:`` key written twice."""
    return document.replace(f"  hosts: [{name}]", f"  hosts: [{name}]\n  hosts: [{name}]")


def test_a_duplicate_key_is_an_error_at_the_second_key_naming_its_resource() -> None:
    (finding,) = with_code(load_text(duplicate_hosts(vs("reviews"), "reviews")), "RC0005")
    assert (finding.line, finding.path, finding.severity) == (7, "spec.hosts", Severity.ERROR)
    assert finding.format().startswith("mesh.yaml:7: ERROR RC0005 VirtualService default/reviews: key 'hosts' ")


@pytest.mark.parametrize(
    ("metadata", "subject"),
    [
        pytest.param("  name: a", ("VirtualService", "shop", "a"), id="namespace defaulted"),
        pytest.param("  name: a\n  namespace: team-a", ("VirtualService", "team-a", "a"), id="namespace set"),
        pytest.param("  labels: {app: a}", ("", "", ""), id="no name: no subject"),
    ],
)
def test_a_duplicate_key_names_the_resource_of_its_own_document(metadata: str, subject: tuple[str, str, str]) -> None:
    # The duplicate is in the second document; the first names another resource.
    second = duplicate_hosts(vs("a").replace("  name: a", metadata), "a")
    (finding,) = with_code(load_text(vs("first"), second, namespace="shop"), "RC0005")
    assert (finding.kind, finding.namespace, finding.name) == subject


def test_an_alias_refused_in_a_named_document_names_its_resource() -> None:
    document = vs("reviews").replace("  http:\n  - route:", "  http:\n  - &rule\n    route:") + "  - *rule\n"
    (finding,) = with_code(load_text(document), "RC0001")
    assert "aliases are not supported" in finding.message
    assert (finding.kind, finding.namespace, finding.name) == ("VirtualService", "default", "reviews")


def test_a_kubernetes_service_is_an_info_finding_and_ignored() -> None:
    service = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n  ports: [{port: 9080}]\n"
    result = load_text(service, vs("reviews"))
    (finding,) = result.findings
    assert (finding.code.value, finding.severity, finding.kind, finding.path) == (
        "RC0101",
        Severity.INFO,
        "Service",
        "kind",
    )
    assert result.ok
    assert result.config.resource_count == 1


def test_metadata_namespace_defaults_to_the_given_namespace() -> None:
    explicit = vs("a").replace("  name: a", "  name: a\n  namespace: team-a")
    result = load_text(vs("b"), explicit, namespace="shop")
    assert {r.name: r.namespace for r in result.config.virtual_services} == {"a": "team-a", "b": "shop"}


def test_short_hosts_resolve_in_the_default_namespace() -> None:
    first = vs("reviews")
    second = vs("other").replace("  hosts: [other]", "  hosts: [reviews.shop.svc.cluster.local]")
    conflicts = with_code(load_text(first, second, namespace="shop"), "IST0109")
    assert {f.name for f in conflicts} == {"reviews", "other"}
    assert with_code(load_text(first, second, namespace="default"), "IST0109") == []


def test_an_error_anywhere_makes_the_result_not_ok_while_warnings_do_not() -> None:
    assert load_text(vs("reviews")).ok
    warning_only = DESTINATION_RULE  # IST0174: host matches no service (a warning)
    assert load_text(warning_only).ok
    assert not load_text(vs("reviews").replace("hosts: [reviews]", "hosts: []")).ok
