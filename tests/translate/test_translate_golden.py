"""Golden files: each fixture rendered exactly as ``reconciler render`` prints it.

A change in translation shows up as a readable JSON diff. When the change is intended,
rewrite the files and review the diff like code::

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/translate/test_translate_golden.py
"""

from __future__ import annotations

import os

import pytest
from translate_support import FIXTURES, GATEWAY, GOLDEN, SIDECAR, load_fixture

from reconciler.cli.render import format_document, render_document
from reconciler.translate import ProxyIdentity, translate

PROXIES: dict[str, ProxyIdentity] = {"sidecar": SIDECAR, "gateway": GATEWAY}

#: (fixture file stem, proxy role): the gateway fixtures render for a gateway, the rest for a sidecar.
CASES = [
    ("weighted-80-20", "sidecar"),
    ("header-match-jason", "sidecar"),
    ("fault", "sidecar"),
    ("timeout-retries", "sidecar"),
    ("mirror", "sidecar"),
    ("rewrite", "sidecar"),
    ("redirect", "sidecar"),
    ("direct-response", "sidecar"),
    ("gateway-two-ports", "gateway"),
    ("traffic-policy", "sidecar"),
    ("service-entries", "sidecar"),
    ("not-translated", "sidecar"),
    ("not-translated", "gateway"),
]


def rendered(stem: str, role: str) -> str:
    return format_document(render_document(translate(load_fixture(f"{stem}.yaml"), PROXIES[role])))


@pytest.mark.parametrize(("stem", "role"), CASES, ids=[f"{stem}.{role}" for stem, role in CASES])
def test_rendered_fixture_matches_its_golden_file(stem: str, role: str) -> None:
    golden = GOLDEN / f"{stem}.{role}.json"
    text = rendered(stem, role)
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"{golden.name} is missing: run with UPDATE_GOLDEN=1 to create it"
    assert text == golden.read_text(encoding="utf-8"), f"{golden.name} differs; UPDATE_GOLDEN=1 if intended"


def test_every_fixture_has_a_golden_file_and_every_golden_file_a_fixture() -> None:
    fixtures = {path.stem for path in FIXTURES.glob("*.yaml")}
    goldens = {path.name for path in GOLDEN.glob("*.json")}

    assert fixtures == {stem for stem, _ in CASES}
    assert goldens == {f"{stem}.{role}.json" for stem, role in CASES}
