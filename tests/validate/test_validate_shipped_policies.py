"""The policies in policies/ and the repo-template's own are valid and govern the template's VirtualService."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.loader import load_paths
from reconciler.model.rolloutpolicy import RolloutTarget

ROOT = Path(__file__).resolve().parents[2]
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))
TEMPLATE = ROOT / "repo-template" / "mesh"
#: The template's own policy: a shipped one copied in takes its place (one policy per VirtualService).
TEMPLATE_POLICY = TEMPLATE / "rolloutpolicy.yaml"


def test_policies_ship_a_cautious_and_a_fast_policy() -> None:
    assert {path.stem for path in POLICIES} >= {"cautious", "fast"}


@pytest.mark.parametrize("path", POLICIES, ids=lambda path: path.stem)
def test_each_shipped_policy_validates_in_place_of_the_repo_templates_own(path: Path) -> None:
    template = [file for file in sorted(TEMPLATE.glob("*.yaml")) if file != TEMPLATE_POLICY]

    result = load_paths([path, *template])

    assert [finding.format() for finding in result.findings] == []
    (policy,) = result.config.rollout_policies
    assert policy.spec.targets == (RolloutTarget(name="reviews"),)


def test_the_repo_template_validates_with_its_own_policy_governing_reviews() -> None:
    result = load_paths([TEMPLATE])

    assert [finding.format() for finding in result.findings] == []
    (policy,) = result.config.rollout_policies
    assert policy.spec.targets == (RolloutTarget(name="reviews"),)


def test_the_repo_templates_policy_walks_like_the_shipped_fast_policy() -> None:
    (fast,) = load_paths([ROOT / "policies" / "fast.yaml"]).config.rollout_policies
    (own,) = load_paths([TEMPLATE_POLICY]).config.rollout_policies

    assert own.spec == fast.spec
