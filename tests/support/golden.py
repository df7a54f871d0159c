"""Golden files: compare an output with the file that records it, or rewrite the file with ``UPDATE_GOLDEN=1``.

When an output change is intended, rewrite the golden files and review their diff like code::

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/cli/test_diff_cli.py
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["assert_golden"]


def assert_golden(text: str, golden: Path) -> None:
    """``text`` equals the content of ``golden`` (written first, under ``UPDATE_GOLDEN=1``)."""
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"{golden.name} is missing: run with UPDATE_GOLDEN=1 to create it"
    assert text == golden.read_text(encoding="utf-8"), f"{golden.name} differs; UPDATE_GOLDEN=1 if intended"
