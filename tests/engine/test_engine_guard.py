"""RemovalGuard on its own: which removals it refuses and how it words the numbers."""

from __future__ import annotations

from reconciler.engine.guard import RemovalGuard, ResourceKey
from reconciler.model.config import Kind


def keys(count: int) -> frozenset[ResourceKey]:
    return frozenset((Kind.SERVICE_ENTRY, "default", f"svc-{i:03d}") for i in range(count))


def test_a_share_just_over_the_limit_is_not_rounded_down_to_it() -> None:
    refusal = RemovalGuard().refusal(served=keys(199), proposed=keys(99))

    assert refusal is not None
    assert "would remove 100 of 199 served resources (50.3%) > 50%" in refusal


def test_a_refusal_names_the_first_removed_resources_and_counts_the_rest() -> None:
    refusal = RemovalGuard().refusal(served=keys(10), proposed=keys(2))

    assert refusal is not None
    assert refusal.endswith(
        "(ServiceEntry default/svc-002, ServiceEntry default/svc-003, ServiceEntry default/svc-004 and 5 more)"
    )


def test_renaming_most_resources_counts_as_removing_them() -> None:
    renamed = frozenset((kind, namespace, f"{name}-v2") for kind, namespace, name in keys(4))

    assert RemovalGuard().refusal(served=keys(4), proposed=renamed) is not None


def test_adding_resources_is_never_refused() -> None:
    assert RemovalGuard(max_removal_percent=0).refusal(served=keys(3), proposed=keys(30)) is None
