"""Governed VirtualServices and their weights, read from and written into a config."""

from __future__ import annotations

from memsource import config_of, mesh_files
from rollout_yaml import policy_yaml

from reconciler.model.virtualservice import Destination
from reconciler.rollout.plan import RouteRef
from reconciler.rollout.routes import governed, weights_of, with_weights

V1, V2, V3 = (Destination("reviews.example.com", subset) for subset in ("v1", "v2", "v3"))
TESTERS, DEFAULT = RouteRef("default/reviews", 0), RouteRef("default/reviews", 1)


def test_a_policy_governs_the_virtual_service_it_names() -> None:
    config = config_of({**mesh_files(), "policy.yaml": policy_yaml(steps="10, 25")}).config

    [policy] = governed(config)

    assert (policy.policy, policy.virtual_services, policy.spec.steps) == (
        "default/reviews",
        ("default/reviews",),
        (10, 25),
    )


def test_a_config_without_policies_governs_nothing() -> None:
    assert governed(config_of(mesh_files()).config) == ()


def test_weights_are_read_per_route_and_a_lone_destination_without_weight_has_all_of_it() -> None:
    config = config_of(mesh_files(v1=80, v2=20)).config

    weights = weights_of(config, {"default/reviews"})

    assert {route: dict(split) for route, split in weights.items()} == {TESTERS: {V2: 100}, DEFAULT: {V1: 80, V2: 20}}
    assert weights_of(config, {"default/other"}) == {}


def test_written_weights_are_read_back_and_everything_else_is_kept() -> None:
    config = config_of(mesh_files(v1=100, v2=0)).config

    stepped = with_weights(config, {DEFAULT: {V1: 90, V2: 10}})

    assert dict(weights_of(stepped, {"default/reviews"})[DEFAULT]) == {V1: 90, V2: 10}
    [before], [after] = config.virtual_services, stepped.virtual_services
    assert after.spec.http[1].timeout == before.spec.http[1].timeout
    assert after.spec.http[0] is before.spec.http[0]
    assert stepped.destination_rules == config.destination_rules


def test_a_destination_git_no_longer_lists_is_added_while_it_still_has_weight() -> None:
    config = config_of(mesh_files(v1=0, v2=100)).config

    stepped = with_weights(config, {DEFAULT: {V1: 0, V2: 90, V3: 10}})

    assert dict(weights_of(stepped, {"default/reviews"})[DEFAULT]) == {V1: 0, V2: 90, V3: 10}
