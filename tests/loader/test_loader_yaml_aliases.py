"""Hostile YAML is a finding, never a crash or an explosion: aliases of collections, deep nesting, bad tags."""

from __future__ import annotations

from mesh_yaml import service_entry

from reconciler.loader import load_files
from reconciler.loader.parse import MAX_DEPTH, parse_yaml
from reconciler.validate.findings import Code, Severity

SERVICE = service_entry("a")


def alias_bomb(levels: int, fan_out: int = 10) -> str:
    """``fan_out ** levels`` values if aliases were expanded, in a few hundred bytes."""
    lines = [f"a0: &a0 [{', '.join(['x'] * fan_out)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan_out)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_recursive_alias_is_a_finding_not_a_crash() -> None:
    documents, findings = parse_yaml("a: &x [*x]\n", file="r.yaml")

    assert documents == []
    (finding,) = findings
    assert (finding.code, finding.severity, finding.file, finding.line) == (
        Code.YAML_SYNTAX,
        Severity.ERROR,
        "r.yaml",
        1,
    )
    assert finding.message.startswith("YAML anchors and aliases are not supported: *x")
    assert not load_files({"r.yaml": "a: &x {b: *x}\n"}).ok


def test_alias_bomb_is_refused_quickly() -> None:
    text = alias_bomb(levels=8)  # 10**9 values if expanded
    assert len(text) < 600

    documents, findings = parse_yaml(text, file="b.yaml")

    assert documents == []
    assert [(f.code, f.line) for f in findings] == [(Code.YAML_SYNTAX, 2)]  # the first alias, not the anchor


def test_the_alias_finding_is_at_the_alias_and_names_the_anchor_line() -> None:
    text = "base: &b\n  x: 1\nother:\n  - 1\n  - *b\n"
    (finding,) = parse_yaml(text, file="m.yaml")[1]

    assert finding.line == 5
    assert "*b repeats the mapping anchored at line 1" in finding.message


def test_a_merge_key_is_an_alias_too() -> None:
    (finding,) = parse_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", file="m.yaml")[1]
    assert (finding.code, finding.line) == (Code.YAML_SYNTAX, 3)


def test_only_the_document_with_the_alias_is_dropped() -> None:
    result = load_files({"m.yaml": SERVICE + "---\nkind: x\nspec: &s [*s]\n"})

    assert [f.code for f in result.findings] == [Code.YAML_SYNTAX]
    assert result.documents == 1
    assert [entry.name for entry in result.config.service_entries] == ["a"]


def test_an_alias_of_a_scalar_is_allowed() -> None:
    (document,), findings = parse_yaml("host: &h a.example.com\nhosts: [*h, *h]\n", file="s.yaml")

    assert findings == []
    assert document.data == {"host": "a.example.com", "hosts": ["a.example.com", "a.example.com"]}
    assert document.source.field_lines["hosts[1]"] == 2


def test_an_undefined_alias_is_malformed_yaml() -> None:
    (finding,) = parse_yaml("a: *nope\n", file="u.yaml")[1]
    assert finding.code == Code.YAML_SYNTAX
    assert "undefined alias" in finding.message


def test_nesting_deeper_than_the_limit_is_refused_like_malformed_yaml() -> None:
    deep_block = "- " * 30_000 + "x\n"  # overflowed libyaml's recursive composer: a segfault
    deep_flow = "a: " + "[" * 50_000 + "]" * 50_000 + "\n"  # took libyaml's scanner seconds to read
    for text in (deep_block, deep_flow, SERVICE + "---\n" + "- " * (MAX_DEPTH + 1) + "x\n"):
        documents, findings = parse_yaml(text, file="d.yaml")
        assert documents == []
        (finding,) = findings
        assert finding.code == Code.YAML_SYNTAX
        assert f"more than {MAX_DEPTH} levels" in finding.message


def test_nesting_up_to_the_limit_is_fine() -> None:
    (document,), findings = parse_yaml("- " * MAX_DEPTH + "x\n", file="d.yaml")
    assert findings == []
    value = document.data
    for _ in range(MAX_DEPTH - 1):
        (value,) = value
    assert value == ["x"]


def test_an_explicit_tag_that_does_not_fit_its_value_is_malformed_yaml() -> None:
    for text in ("a: !!int abc\n", "a: !!bool maybe\n", "a: !!float x\n"):
        documents, (finding,) = parse_yaml(text, file="t.yaml")
        assert documents == []
        assert (finding.code, finding.line) == (Code.YAML_SYNTAX, 1)
        assert "is not a valid !!" in finding.message


def test_a_complex_key_becomes_its_text() -> None:
    (document,), _ = parse_yaml("? [a, b]\n: 1\n", file="k.yaml")
    assert document.data == {"['a', 'b']": 1}


def scalar_alias_bomb(aliases: int, length: int = 100_000) -> str:
    """A ServiceEntry whose annotations repeat one ``length``-character string ``aliases`` times."""
    repeats = "".join(f"    k{i}: *big\n" for i in range(aliases))
    return SERVICE.replace(
        "metadata: {name: a}\n", f"metadata:\n  name: a\n  annotations:\n    big: &big {'x' * length}\n{repeats}"
    )


def test_aliases_of_one_long_string_cannot_expand_a_file_past_the_file_size_limit() -> None:
    text = scalar_alias_bomb(aliases=2000)  # 200 MB of values from a 131 KB file
    assert len(text) < 132_000

    documents, findings = parse_yaml(text, file="s.yaml")

    assert documents == []
    (finding,) = findings
    assert (finding.code, finding.severity) == (Code.YAML_SYNTAX, Severity.ERROR)
    assert finding.line == 6 + 10  # the 11th alias passes 1 MiB
    assert finding.message.startswith("YAML aliases expand this file past 1048576 characters")
    assert not load_files({"s.yaml": text}).ok


def test_the_expansion_limit_follows_the_file_size_limit_and_counts_across_documents() -> None:
    text = scalar_alias_bomb(aliases=3, length=1000)

    assert parse_yaml(text, file="s.yaml", max_chars=5000)[1] == []
    _, findings = parse_yaml(f"{text}---\n{text}", file="s.yaml", max_chars=5000)
    assert [f.line for f in findings] == [len(text.splitlines()) + 1 + 6 + 1]  # the second alias of the second copy
