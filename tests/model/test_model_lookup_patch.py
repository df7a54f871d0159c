"""A DestinationRule index patched for a few changed rules answers every look-up as one built anew."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from translate_support import load

from reconciler.model.config import MeshConfig
from reconciler.model.lookup import ROOT_NAMESPACE, DestinationRules

NAMESPACES = ("alpha", "beta", ROOT_NAMESPACE)
HOSTS = ("reviews.alpha.svc.cluster.local", "ratings.mesh", "other.mesh")


def _rule(name: str, namespace: str, host: str, *, subsets: str, extra: str = "") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: {host}
  subsets: [{subsets}]
{extra}"""


def _config() -> MeshConfig:
    rules = [
        _rule("r1", "alpha", "reviews", subsets="{name: v1, labels: {version: v1}}"),
        _rule("r2", "beta", "ratings.mesh", subsets="{name: v1, labels: {version: v1}}", extra="  exportTo: ['.']\n"),
        _rule("r3", ROOT_NAMESPACE, "ratings.mesh", subsets="{name: v2, labels: {version: v2}}"),
        _rule("r4", "alpha", "reviews", subsets="{name: v2, labels: {version: v2}}"),
        _rule(
            "r5",
            "alpha",
            "reviews",
            subsets="{name: canary, labels: {version: v3}}",
            extra="  workloadSelector: {matchLabels: {app: web}}\n",
        ),
        _rule("r6", ROOT_NAMESPACE, '"*.mesh"', subsets="{name: all, labels: {tier: any}}"),
    ]
    return load("---\n".join(rules))


def _answers(index: DestinationRules) -> list[object]:
    return [
        index.rule_for(host, namespace=namespace, labels=labels)
        for host, namespace, labels in itertools.product(HOSTS, NAMESPACES, ({}, {"app": "web"}))
    ]


def _subset_added(config: MeshConfig, at: int) -> MeshConfig:
    rule = config.destination_rules[at]
    extra = dataclasses.replace(rule.spec.subsets[0], name="extra")
    changed = dataclasses.replace(rule, spec=dataclasses.replace(rule.spec, subsets=(*rule.spec.subsets, extra)))
    rules = config.destination_rules
    return dataclasses.replace(config, destination_rules=(*rules[:at], changed, *rules[at + 1 :]))


@pytest.mark.parametrize("at", range(6))
def test_a_rule_edited_in_place_patches_the_index_to_what_building_it_gives(at: int) -> None:
    config = _config()
    index = DestinationRules(config.destination_rules)
    after = _subset_added(config, at)

    patched = index.patched([(config.destination_rules[at], after.destination_rules[at])])

    assert patched is not None
    assert _answers(patched) == _answers(DestinationRules(after.destination_rules))
    assert _answers(index) == _answers(DestinationRules(config.destination_rules))  # the original is unchanged


@pytest.mark.parametrize("at", range(5))
def test_a_rule_removed_or_added_at_the_end_patches_the_index_to_what_building_it_gives(at: int) -> None:
    config = _config()
    rules = config.destination_rules
    index = DestinationRules(rules)
    without = rules[:at] + rules[at + 1 :]

    removed = index.patched([(rules[at], None)])
    added_back = DestinationRules(without).patched([(None, rules[at])])

    assert removed is not None
    assert added_back is not None
    assert _answers(removed) == _answers(DestinationRules(without))
    assert _answers(added_back) == _answers(DestinationRules((*without, rules[at])))


def test_a_wildcard_host_appearing_or_going_needs_a_rebuild() -> None:
    rules = _config().destination_rules
    wildcard = rules[5]

    assert DestinationRules(rules).patched([(wildcard, None)]) is None
    assert DestinationRules(rules[:5]).patched([(None, wildcard)]) is None
