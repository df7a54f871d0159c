"""A sidecar translation patched from the previous one is byte for byte the full translation.

A random mesh goes through a random sequence of changes, the kind commits and rollouts make
(weights moved, an endpoint moved, a ServiceEntry resolved by DNS, a destination to a subset
or host that does not exist, a DestinationRule's subsets changed, a host added or removed, a
VirtualService removed), each applied to the model the way the daemon's decode cache hands it
over: unchanged objects stay the same objects. After every change, each proxy's translation
through a kept cache (patched where the change allows, in full where not) must equal a fresh
translation without a cache: versions, every resource's packed bytes and references, and the findings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from translate_support import load

from reconciler.errors import TranslationError
from reconciler.model.common import Weight
from reconciler.model.config import MeshConfig
from reconciler.model.destinationrule import Subset
from reconciler.model.serviceentry import Resolution
from reconciler.translate import ProxyIdentity, ProxyRole, Translation, translate, translator
from reconciler.translate.envoy_check import PassCache
from reconciler.translate.memo import TranslationCache, patch_registry
from reconciler.translate.patch import SidecarState, _Names, patch
from reconciler.translate.registry import build_registry
from reconciler.translate.snapshot import PUSH_ORDER, ROUTE

PROXIES = (
    ProxyIdentity(node_id="a", namespace="alpha", role=ProxyRole.SIDECAR),
    ProxyIdentity(node_id="b", namespace="beta", role=ProxyRole.SIDECAR, outbound_port=15002),
)
VERSIONS = ("v1", "v2", "v3")


def _service(index: int, *, namespace: str) -> str:
    name = f"svc{index}"
    subsets = ", ".join(f"{{name: {v}, labels: {{version: {v}}}}}" for v in VERSIONS)
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{name}.mesh]
  location: MESH_INTERNAL
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 10.0.{index}.1, labels: {{version: v1}}}}
  - {{address: 10.0.{index}.2, labels: {{version: v2}}}}
  - {{address: 10.0.{index}.3, labels: {{version: v3}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: {name}.mesh
  subsets: [{subsets}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{name}.mesh]
  http:
  - match: [{{headers: {{end-user: {{exact: tester}}}}}}]
    route:
    - destination: {{host: {name}.mesh, subset: v3}}
  - route:
    - destination: {{host: {name}.mesh, subset: v1}}
      weight: 80
    - destination: {{host: {name}.mesh, subset: v2}}
      weight: 20
"""


def mesh(count: int) -> MeshConfig:
    return load("---\n".join(_service(index, namespace=("alpha", "beta")[index % 2]) for index in range(count)))


def _with(config: MeshConfig, field: str, index: int, value: object | None) -> MeshConfig:
    """``config`` with item ``index`` of ``field`` replaced by ``value`` (None: removed), the rest the same objects."""
    items = getattr(config, field)
    if not items:
        return config
    index %= len(items)
    kept = (value,) if value is not None else ()
    return dataclasses.replace(config, **{field: (*items[:index], *kept, *items[index + 1 :])})


def _reroute(config: MeshConfig, index: int, destinations: list[tuple[str | None, str | None, int]]) -> MeshConfig:
    """VirtualService ``index``'s weighted rule sent to ``destinations`` (host or its own, subset, weight)."""
    if not config.virtual_services:
        return config
    vs = config.virtual_services[index % len(config.virtual_services)]
    rule = vs.spec.http[-1]
    own = rule.route[0].destination
    route = tuple(
        dataclasses.replace(
            rule.route[0],
            destination=dataclasses.replace(own, host=host or own.host, subset=subset),
            weight=Weight(weight),
        )
        for host, subset, weight in destinations
    )
    http = (*vs.spec.http[:-1], dataclasses.replace(rule, route=route))
    return _with(
        config, "virtual_services", index, dataclasses.replace(vs, spec=dataclasses.replace(vs.spec, http=http))
    )


def _move_endpoint(config: MeshConfig, index: int, address: str) -> MeshConfig:
    if not config.service_entries:
        return config
    entry = config.service_entries[index % len(config.service_entries)]
    first = dataclasses.replace(entry.spec.endpoints[0], address=address)
    spec = dataclasses.replace(entry.spec, endpoints=(first, *entry.spec.endpoints[1:]))
    return _with(config, "service_entries", index, dataclasses.replace(entry, spec=spec))


def _toggle_resolution(config: MeshConfig, index: int) -> MeshConfig:
    """ServiceEntry ``index`` resolved by DNS instead of listing IPs (or back): load assignments come or go."""
    if not config.service_entries:
        return config
    entry = config.service_entries[index % len(config.service_entries)]
    resolution: Resolution = "DNS" if entry.spec.resolution == "STATIC" else "STATIC"
    spec = dataclasses.replace(entry.spec, resolution=resolution)
    return _with(config, "service_entries", index, dataclasses.replace(entry, spec=spec))


def _drop_subset(config: MeshConfig, index: int) -> MeshConfig:
    if not config.destination_rules:
        return config
    rule = config.destination_rules[index % len(config.destination_rules)]
    spec = dataclasses.replace(rule.spec, subsets=rule.spec.subsets[:-1])
    return _with(config, "destination_rules", index, dataclasses.replace(rule, spec=spec))


def _add_subset(config: MeshConfig, index: int) -> MeshConfig:
    """DestinationRule ``index`` with one subset more (a version its ServiceEntry has no endpoint of)."""
    if not config.destination_rules:
        return config
    rule = config.destination_rules[index % len(config.destination_rules)]
    taken = {subset.name for subset in rule.spec.subsets}
    name = next(f"v{n}" for n in range(4, 20) if f"v{n}" not in taken)
    extra = Subset(name=name, labels={"version": name})
    spec = dataclasses.replace(rule.spec, subsets=(*rule.spec.subsets, extra))
    return _with(config, "destination_rules", index, dataclasses.replace(rule, spec=spec))


def _add_host(config: MeshConfig, index: int) -> MeshConfig:
    # A config never holds two objects of one kind, namespace and name (build_config drops repeats).
    taken = {entry.name for entry in config.service_entries}
    number = next(n for n in range(100 + index, 1000) if f"svc{n}" not in taken)
    added = load(_service(number, namespace="alpha"))
    return dataclasses.replace(
        config,
        virtual_services=config.virtual_services + added.virtual_services,
        destination_rules=config.destination_rules + added.destination_rules,
        service_entries=config.service_entries + added.service_entries,
    )


def _remove_service(config: MeshConfig, index: int) -> MeshConfig:
    """Service ``index`` removed whole: its ServiceEntry, DestinationRule and VirtualService."""
    if len(config.service_entries) < 2:
        return config
    for field in ("virtual_services", "destination_rules", "service_entries"):
        config = _with(config, field, index, None)
    return config


def _replace_service(config: MeshConfig, index: int) -> MeshConfig:
    """Service ``index`` removed whole and another added at the end, in one commit."""
    return _add_host(_remove_service(config, index), index)


def _remove_virtual_service(config: MeshConfig, index: int) -> MeshConfig:
    """VirtualService ``index`` removed; its service stays."""
    return _with(config, "virtual_services", index, None)


def _remove_host(config: MeshConfig, index: int) -> MeshConfig:
    if len(config.service_entries) < 2:
        return config
    return _with(config, "service_entries", index, None)


destinations = st.lists(
    st.tuples(
        st.sampled_from([None, None, "svc0.mesh", "nowhere.mesh"]),
        st.sampled_from([*VERSIONS, None, "v9"]),
        st.integers(min_value=0, max_value=100),
    ),
    min_size=1,
    max_size=3,
)
reroutes = st.tuples(st.just(_reroute), st.integers(0, 20), destinations)
moves = st.tuples(st.just(_move_endpoint), st.integers(0, 20), st.sampled_from(["10.9.9.9", "10.0.0.1", "10.8.8.8"]))
# The changes the patch path takes (weights, destinations, endpoints) drawn more often than those it leaves.
changes = st.one_of(
    reroutes,
    reroutes,
    moves,
    moves,
    st.tuples(st.just(_toggle_resolution), st.integers(0, 20)),
    st.tuples(st.just(_drop_subset), st.integers(0, 20)),
    st.tuples(st.just(_add_subset), st.integers(0, 20)),
    st.tuples(st.just(_add_host), st.integers(0, 20)),
    st.tuples(st.just(_add_host), st.integers(0, 20)),
    st.tuples(st.just(_remove_host), st.integers(0, 20)),
    st.tuples(st.just(_remove_service), st.integers(0, 20)),
    st.tuples(st.just(_remove_service), st.integers(0, 20)),
    st.tuples(st.just(_replace_service), st.integers(0, 20)),
    st.tuples(st.just(_remove_virtual_service), st.integers(0, 20)),
)


def _outcome(config: MeshConfig, proxy: ProxyIdentity, **kwargs: object) -> Translation | str:
    try:
        return translate(config, proxy, **kwargs)  # type: ignore[arg-type]
    except TranslationError as error:
        return f"{error} {error.findings}"


def _assert_identical(patched: Translation | str, full: Translation | str) -> None:
    if isinstance(patched, str) or isinstance(full, str):
        assert patched == full
        return
    assert patched.findings == full.findings
    for type_url in PUSH_ORDER:
        ours, theirs = patched.snapshot.sets[type_url], full.snapshot.sets[type_url]
        assert ours.version == theirs.version
        assert list(ours.items) == list(theirs.items)
        for name, item in ours.items.items():
            other = theirs.items[name]
            assert (item.packed, item.version, item.references) == (other.packed, other.version, other.references)
            assert item.message == other.message
    assert patched.snapshot.version == full.snapshot.version
    assert patched == full


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=1, max_value=6), st.lists(changes, min_size=1, max_size=6))
def test_random_changes_through_the_patch_path_give_the_full_translation_byte_for_byte(
    count: int, steps: list[tuple[object, ...]]
) -> None:
    config = mesh(count)
    cache, passed = TranslationCache(), PassCache()
    for proxy in PROXIES:
        _assert_identical(_outcome(config, proxy, cache=cache, passed=passed), _outcome(config, proxy))
    for change, *arguments in steps:
        config = change(config, *arguments)  # type: ignore[operator]
        for proxy in PROXIES:
            _assert_identical(_outcome(config, proxy, cache=cache, passed=passed), _outcome(config, proxy))


def test_a_weight_change_is_spliced_into_the_previous_route_configuration() -> None:
    config = mesh(4)
    cache = TranslationCache()
    before = translate(config, PROXIES[0], cache=cache).snapshot
    after = translate(_reroute(config, 0, [(None, "v1", 50), (None, "v2", 50)]), PROXIES[0], cache=cache).snapshot

    (route,) = after.sets[ROUTE].items.values()
    # Spliced from bytes: the message is parsed only when asked for, and then equals the full translation's.
    assert route.parsed is None
    assert after.version != before.version
    assert after.sets[ROUTE].version != before.sets[ROUTE].version
    full = translate(_reroute(config, 0, [(None, "v1", 50), (None, "v2", 50)]), PROXIES[0]).snapshot
    assert route.message == full.resources(ROUTE)[route.name]
    assert after.sets[ROUTE] == full.sets[ROUTE]


def test_an_endpoint_move_patches_only_the_load_assignments() -> None:
    config = mesh(4)
    cache = TranslationCache()
    before = translate(config, PROXIES[0], cache=cache).snapshot
    after = translate(_move_endpoint(config, 0, "10.9.9.9"), PROXIES[0], cache=cache).snapshot

    assert after.sets[ROUTE] is before.sets[ROUTE]
    assert after.version_of("type.googleapis.com/envoy.config.cluster.v3.Cluster") == before.version_of(
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    )
    changed = [
        name
        for name, item in after.sets[PUSH_ORDER[1]].items.items()
        if item is not before.sets[PUSH_ORDER[1]].items[name]
    ]
    assert changed == ["outbound|8080|v1|svc0.mesh", "outbound|8080||svc0.mesh"]
    assert after == translate(_move_endpoint(config, 0, "10.9.9.9"), PROXIES[0]).snapshot


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda config: _add_host(config, 0), id="a host added"),
        pytest.param(lambda config: _add_subset(config, 1), id="a subset added"),
        pytest.param(lambda config: _drop_subset(config, 2), id="a subset removed"),
        pytest.param(lambda config: _add_host(_add_host(config, 0), 1), id="two hosts added"),
        pytest.param(lambda config: _remove_service(config, 3), id="the last host removed"),
        pytest.param(lambda config: _remove_service(config, 1), id="a host removed from the middle"),
        pytest.param(lambda config: _remove_service(config, 0), id="the first host removed"),
        pytest.param(
            lambda config: _with(config, "virtual_services", 1, None), id="a VirtualService removed, its service kept"
        ),
        pytest.param(lambda config: _replace_service(config, 1), id="a host removed and another added in one commit"),
        pytest.param(
            lambda config: _with(config, "virtual_services", 3, None),
            id="the last VirtualService removed, its service kept",
        ),
    ],
)
def test_hosts_added_or_removed_and_destination_rules_edited_go_through_the_patch_path_byte_for_byte(
    change: Callable[[MeshConfig], MeshConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = mesh(4)
    cache, passed = TranslationCache(), PassCache()
    for proxy in PROXIES:
        translate(config, proxy, cache=cache, passed=passed)
    patched: list[bool] = []

    def spy(*args: Any, **kwargs: Any) -> SidecarState | None:
        found = patch(*args, **kwargs)
        patched.append(found is not None)
        return found

    monkeypatch.setattr(translator, "patch", spy)
    changed = change(config)

    for proxy in PROXIES:
        _assert_identical(_outcome(changed, proxy, cache=cache, passed=passed), _outcome(changed, proxy))

    assert patched == [True, True]


def test_a_host_added_is_served_its_own_clusters_and_virtual_hosts() -> None:
    config = mesh(3)
    cache = TranslationCache()
    translate(config, PROXIES[0], cache=cache)
    grown = _add_host(config, 0)

    snapshot = translate(grown, PROXIES[0], cache=cache).snapshot

    (route,) = snapshot.sets[ROUTE].items.values()
    assert route.parsed is None  # spliced from the previous bytes, not built
    assert "svc100.mesh:8080" in [vhost.name for vhost in route.message.virtual_hosts]
    assert "outbound|8080|v1|svc100.mesh" in snapshot.sets[PUSH_ORDER[0]].items
    assert snapshot == translate(grown, PROXIES[0]).snapshot


def test_a_registry_patched_for_a_removed_entry_equals_the_registry_built_without_it() -> None:
    config = mesh(4)
    before = build_registry(config)
    after = _remove_service(config, 1)

    found = patch_registry(before, before=config.service_entries, after=after.service_entries)

    assert found is not None
    registry, changes = found
    assert registry == build_registry(after)
    assert registry.hosts == build_registry(after).hosts
    assert changes == ((before.lookup("svc1.mesh")[0], None),)


def test_a_removed_entry_whose_host_another_entry_lists_is_left_to_a_full_build() -> None:
    config = mesh(2)
    # A second entry of svc0's namespace listing its host: it is left out while svc0's entry comes first.
    first = config.service_entries[0]
    shadow = dataclasses.replace(first, metadata=dataclasses.replace(first.metadata, name="svc0-shadow"))
    grown = dataclasses.replace(config, service_entries=(*config.service_entries, shadow))
    before = build_registry(grown)

    assert patch_registry(before, before=grown.service_entries, after=grown.service_entries[1:]) is None


# One kind of sidecar on two outbound ports: two shapes that record the same state but for their route table.
PORTS = (PROXIES[0], dataclasses.replace(PROXIES[0], node_id="a2", outbound_port=15003))
orders = st.sampled_from([(0, 1), (1, 0), (0,), (1,)])


def _contents(state: object) -> list[object]:
    """A state's fields, its mappings copied: what it holds now, to compare with what it holds later."""
    assert isinstance(state, SidecarState)
    return [
        dict(value) if isinstance(value, dict) else value
        for part in (state, state.shared)
        for value in (getattr(part, field.name) for field in dataclasses.fields(part))
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=1, max_value=5), st.lists(st.tuples(changes, orders), min_size=1, max_size=6))
# One port patched past two removals apart at once (once taken for the first one alone).
@example(4, [((_drop_subset, 16), (0, 1)), ((_remove_service, 0), (0,)), ((_remove_virtual_service, 2), (0, 1))])
def test_two_ports_patched_in_turn_give_the_full_translation_and_leave_each_other_s_state_alone(
    count: int, steps: list[tuple[tuple[object, ...], tuple[int, ...]]]
) -> None:
    config = mesh(count)
    cache, passed = TranslationCache(), PassCache()
    for proxy in PORTS:
        _assert_identical(_outcome(config, proxy, cache=cache, passed=passed), _outcome(config, proxy))
    for (change, *arguments), order in steps:
        config = change(config, *arguments)  # type: ignore[operator]
        for index in order:
            other = translator.proxy_shape(config, PORTS[1 - index])
            held = cache.sidecar_state(other)
            before = _contents(held)
            _assert_identical(
                _outcome(config, PORTS[index], cache=cache, passed=passed), _outcome(config, PORTS[index])
            )
            assert cache.sidecar_state(other) is held
            assert _contents(held) == before


def test_sidecars_differing_only_in_outbound_port_hold_one_record_of_their_steps() -> None:
    config = mesh(4)
    cache = TranslationCache()
    for proxy in (*PORTS, PROXIES[1]):
        translate(config, proxy, cache=cache)
    first, second, other = (
        cache.sidecar_state(translator.proxy_shape(config, proxy)) for proxy in (*PORTS, PROXIES[1])
    )

    assert isinstance(first, SidecarState)
    assert isinstance(second, SidecarState)
    assert first.snapshot != second.snapshot
    assert first.shared.steps is second.shared.steps
    assert first.shared.steps_of is second.shared.steps_of
    assert first.layout.names is second.layout.names
    assert first.layout.resource is not second.layout.resource
    # Another namespace is another kind of sidecar (what it sees may differ): its state is its own.
    assert isinstance(other, SidecarState)
    assert other.shared.steps is not first.shared.steps


name_edits = st.lists(
    st.tuples(st.sets(st.integers(0, 1500), max_size=300), st.sets(st.integers(0, 1500), max_size=300)), max_size=8
)


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(0, 1500), max_size=600), name_edits)
def test_names_edited_patch_after_patch_hold_what_a_set_edited_the_same_way_holds(
    whole: set[int], edits: list[tuple[set[int], set[int]]]
) -> None:
    names, expected = _Names(frozenset(map(str, whole))), set(map(str, whole))
    for added, removed in edits:
        names = names.edited(added=[str(n) for n in added], removed=[str(n) for n in removed])
        expected = (expected - set(map(str, removed))) | set(map(str, added))

        assert len(names) == len(expected)
        assert {str(n) for n in range(1501) if str(n) in names} == expected
