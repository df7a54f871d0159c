"""The policies in policies/ are valid and govern the repo-template's VirtualService."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.loader import load_paths
from reconciler.model.rolloutpolicy import RolloutTarget

ROOT = Path(__file__).resolve().parents[2]
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))


def test_policies_ship_a_cautious_and_a_fast_policy() -> None:
    assert {path.stem for path in POLICIES} >= {"cautious", "fast"}


@pytest.mark.parametrize("path", POLICIES, ids=lambda path: path.stem)
def test_each_shipped_policy_validates_beside_the_repo_template(path: Path) -> None:
    result = load_paths([path, ROOT / "repo-template" / "mesh"])

    assert [finding.format() for finding in result.findings] == []
    (policy,) = result.config.rollout_policies
    assert policy.spec.targets == (RolloutTarget(name="reviews"),)
