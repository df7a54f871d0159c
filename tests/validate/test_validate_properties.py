"""Property tests: whatever text arrives, loading never raises and every finding is located (file, line >= 1)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validate_helpers import FIXTURES

from reconciler.loader import LoadResult, load_files

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


@_settings
@given(data=st.data())
def test_mutated_valid_fixtures_never_raise_and_every_finding_is_located(data: st.DataObject) -> None:
    documents = copy.deepcopy(VALID_DOCUMENTS)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="mutations")):
        document = data.draw(st.sampled_from(documents), label="document")
        container, key = data.draw(st.sampled_from(list(_slots(document))), label="slot")
        operation = data.draw(st.sampled_from(["delete", "retype", "garbage"]), label="operation")
        if operation == "delete":
            del container[key]
        elif operation == "retype":
            container[key] = data.draw(values, label="new value")
        elif isinstance(container, dict):
            container[data.draw(st.text(min_size=1, max_size=8), label="garbage key")] = data.draw(values)
        else:
            container.insert(key, data.draw(values, label="garbage item"))
    files = {"mutated.yaml": yaml.safe_dump_all(documents)}
    assert_located(load_files(files), files)


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
