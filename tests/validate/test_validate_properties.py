"""Property tests: whatever text arrives, loading never raises and every finding is located (file, line >= 1).

Inputs include what a hostile or careless file can hold beyond plain values: anchors and
aliases (shared and self-containing values, dumped by PyYAML as ``&id001``/``*id001``),
explicit tags and deep nesting.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validate_helpers import FIXTURES

from reconciler.loader import LoadResult, load_files
from reconciler.validate.findings import Code

VALID_FILES = sorted((FIXTURES / "valid").rglob("*.yaml"))
VALID_DOCUMENTS = [doc for path in VALID_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]
KINDS = ["VirtualService", "DestinationRule", "ServiceEntry", "Gateway", "Service", "Sidecar"]

_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["*", "reviews", "v1", "1.5s", "HTTP", "STATIC", "10.0.0.1", "*.example.com", "-1"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

#: Fragments of YAML syntax that random text almost never spells: anchors, aliases, merge
#: keys, tags, flow and block nesting. Joined at random they make mostly-malformed YAML.
YAML_TOKENS = [
    "&a ", "&b ", "*a", "*b", "<<: ", "!!int ", "!!bool ", "!!float ", "!!str ", "!x ", "? ",
    "[", "]", "{", "}", ", ", ": ", "- ", "\n", "\n  ", "\n    ", "---\n", "key", "x", "1", "~", "'q'", "#c",
]  # fmt: skip


def assert_located(result: LoadResult, files: dict[str, str]) -> None:
    for finding in result.findings:
        assert finding.file in files
        assert finding.line >= 1
        assert finding.message


@_settings
@given(st.text(max_size=400))
def test_random_text_never_raises_and_every_finding_is_located(text: str) -> None:
    files = {"random.yaml": text}
    assert_located(load_files(files), files)


@_settings
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    files = {"bytes.yaml": data}
    result = load_files(files)
    for finding in result.findings:
        assert finding.file == "bytes.yaml"
        assert finding.line >= 1


@_settings
@given(kind=st.sampled_from(KINDS), spec=values, name=st.text(max_size=10), namespace=st.one_of(st.none(), values))
def test_random_resources_with_istio_envelopes_never_raise(kind: str, spec: Any, name: str, namespace: Any) -> None:
    document = {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    files = {"resource.yaml": yaml.safe_dump(document)}
    assert_located(load_files(files), files)


@_settings
@given(st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join))
def test_yaml_syntax_soup_with_anchors_and_tags_never_raises(text: str) -> None:
    files = {"soup.yaml": text}
    assert_located(load_files(files), files)


@_settings
@given(levels=st.integers(min_value=0, max_value=12), fan_out=st.integers(min_value=1, max_value=12))
def test_nested_aliases_are_refused_never_expanded(levels: int, fan_out: int) -> None:
    lines = [f"a0: &a0 [{', '.join(['x'] * fan_out)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan_out)}]" for i in range(1, levels + 1)]
    files = {"aliases.yaml": "\n".join(lines) + "\n"}
    result = load_files(files)
    assert_located(result, files)
    assert [f.code for f in result.findings if f.code == Code.YAML_SYNTAX] == ([Code.YAML_SYNTAX] if levels else [])


def _slots(node: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key-or-index) inside a parsed document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield node, key
            yield from _slots(value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield node, index
            yield from _slots(value)


def _contains(node: Any, target: Any) -> bool:
    """Whether ``target`` is ``node`` or inside it (by identity)."""
    if node is target:
        return True
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return any(_contains(child, target) for child in children)


def _shares_a_collection(node: Any, seen: set[int]) -> bool:
    """Whether a dict or list occurs twice in ``node`` (PyYAML then dumps an anchor and an alias)."""
    if not isinstance(node, dict | list):
        return False
    if id(node) in seen:
        return True
    seen.add(id(node))
    return any(_shares_a_collection(child, seen) for child in (node.values() if isinstance(node, dict) else node))


@_settings
@given(data=st.data())
def test_mutated_valid_fixtures_never_raise_and_every_finding_is_located(data: st.DataObject) -> None:
    documents = copy.deepcopy(VALID_DOCUMENTS)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="mutations")):
        document = data.draw(st.sampled_from(documents), label="document")
        container, key = data.draw(st.sampled_from(list(_slots(document))), label="slot")
        operation = data.draw(st.sampled_from(["delete", "retype", "garbage", "alias"]), label="operation")
        if operation == "delete":
            del container[key]
        elif operation == "retype":
            container[key] = data.draw(values, label="new value")
        elif operation == "alias":  # the same dict or list in two places: dumped as &id001 ... *id001
            shared = [
                value
                for value in (parent[slot] for parent, slot in _slots(document))
                if isinstance(value, dict | list) and not _contains(value, container)
            ]
            if shared:
                container[key] = data.draw(st.sampled_from(shared), label="shared")
        elif isinstance(container, dict):
            container[data.draw(st.text(min_size=1, max_size=8), label="garbage key")] = data.draw(values)
        else:
            container.insert(key, data.draw(values, label="garbage item"))
    if data.draw(st.booleans(), label="cycle"):  # last: _slots would never end on a cyclic document
        container, key = data.draw(st.sampled_from(list(_slots(data.draw(st.sampled_from(documents))))))
        container[key] = container
    files = {"mutated.yaml": yaml.safe_dump_all(documents)}
    result = load_files(files)
    assert_located(result, files)
    if any(_shares_a_collection(document, set()) for document in documents):
        assert Code.YAML_SYNTAX in {finding.code for finding in result.findings}


@_settings
@given(data=st.data())
def test_truncated_or_corrupted_fixture_text_never_raises(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(VALID_FILES), label="fixture")
    text = path.read_text()
    cut = data.draw(st.integers(min_value=0, max_value=len(text)), label="cut")
    if data.draw(st.booleans(), label="truncate"):
        text = text[:cut]
    else:
        text = text[:cut] + data.draw(st.text(max_size=10), label="garbage") + text[cut:]
    files = {path.name: text}
    assert_located(load_files(files), files)
