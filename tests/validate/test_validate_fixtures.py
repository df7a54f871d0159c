"""The fixture configs: the valid bookinfo-like tree is clean; each invalid file gives exactly its expected findings.

An invalid fixture states what it must produce in header comments, one finding a line:
``# expect: CODE PATH @LINE [hint=TEXT]`` (``-`` for no path).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from validate_helpers import FIXTURES

from reconciler.loader import load_files, load_paths

_EXPECT = re.compile(r"^# expect: (?P<code>\S+) (?P<path>\S+) @(?P<line>\d+)(?: hint=(?P<hint>.*))?$", re.MULTILINE)
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))


def test_the_valid_bookinfo_fixture_has_no_findings_at_all() -> None:
    result = load_paths([FIXTURES / "valid"])
    assert [finding.format() for finding in result.findings] == []
    assert result.config.resource_count == result.documents == 13


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_each_invalid_fixture_reports_exactly_its_expected_findings(path: Path) -> None:
    text = path.read_text()
    expected = sorted((m["code"], m["path"], int(m["line"])) for m in _EXPECT.finditer(text))
    assert expected, f"{path.name} states no expectations"
    result = load_files({path.name: text})
    actual = sorted((f.code.value, f.path or "-", f.line) for f in result.findings)
    assert actual == expected
    for match in _EXPECT.finditer(text):
        if match["hint"]:
            assert any(f.hint == match["hint"] for f in result.findings if f.path == match["path"])


def test_there_are_many_invalid_fixtures() -> None:
    assert len(INVALID) >= 20
