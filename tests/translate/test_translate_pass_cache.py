"""Each distinct Envoy resource is checked against Envoy's constraints once per scope (the pass cache)."""

from __future__ import annotations

from translate_support import FIXTURES, GATEWAY, SIDECAR, load

from reconciler.loader import DecodeCache, load_files
from reconciler.translate import translate
from reconciler.translate.envoy_check import PassCache, envoy_findings
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, Snapshot

_MESH = (FIXTURES / "weighted-80-20.yaml").read_text(encoding="utf-8")


def _nowhere(*_: object) -> None:
    return None


def _with_broken_cluster(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` with one cluster's connect timeout negative: Envoy's rule says it must be above zero."""
    clusters = [type(message)() for message in snapshot.resources(CLUSTER).values()]
    for copy, message in zip(clusters, snapshot.resources(CLUSTER).values(), strict=True):
        copy.CopyFrom(message)
    clusters[0].connect_timeout.seconds = -1  # type: ignore[attr-defined]
    return Snapshot.build(
        clusters=clusters,
        endpoints=snapshot.resources(ENDPOINT).values(),
        listeners=snapshot.resources(LISTENER).values(),
        routes=snapshot.resources(ROUTE).values(),
    )


def _virtual_hosts(snapshot: Snapshot) -> set[bytes]:
    """The distinct virtual hosts of ``snapshot``'s route tables (the pass cache remembers each apart)."""
    return {
        vhost.SerializeToString(deterministic=True)
        for config in snapshot.resources(ROUTE).values()
        for vhost in config.virtual_hosts  # type: ignore[attr-defined]
    }


def test_a_resource_whose_bytes_passed_is_not_checked_again() -> None:
    broken = _with_broken_cluster(translate(load(_MESH), SIDECAR).snapshot)
    passed = PassCache()
    assert len(envoy_findings(broken, locate=_nowhere, passed=passed)) == 1

    bad = next(digest for name, digest in broken.digests(CLUSTER).items() if not passed.known(CLUSTER, digest))
    passed.add(CLUSTER, bad)

    assert envoy_findings(broken, locate=_nowhere, passed=passed) == []
    resources = sum(len(broken.resources(url)) for url in PUSH_ORDER)
    assert len(passed) == resources + len(_virtual_hosts(broken))


def test_a_resource_that_breaks_a_rule_is_reported_every_time_it_is_met() -> None:
    broken = _with_broken_cluster(translate(load(_MESH), SIDECAR).snapshot)
    passed = PassCache()

    reports = [envoy_findings(broken, locate=_nowhere, passed=passed) for _ in range(2)]

    assert [len(found) for found in reports] == [1, 1]
    assert "connect_timeout" in reports[1][0].message


def test_the_shapes_of_one_config_share_the_passes_of_their_common_clusters() -> None:
    config = load(_MESH)
    passed = PassCache()
    sidecar = translate(config, SIDECAR, passed=passed).snapshot
    after_sidecar = len(passed)
    gateway = translate(config, GATEWAY, passed=passed).snapshot

    assert set(sidecar.digests(CLUSTER).values()) & set(gateway.digests(CLUSTER).values())
    new_in_gateway = {
        (url, digest)
        for url in PUSH_ORDER
        for digest in gateway.digests(url).values()
        if digest not in set(sidecar.digests(url).values())
    }
    assert len(passed) == after_sidecar + len(new_in_gateway) + len(_virtual_hosts(gateway) - _virtual_hosts(sidecar))


def test_a_load_keeps_only_the_passes_of_the_resources_it_met() -> None:
    cache = DecodeCache()
    first_text = _MESH.replace("weight: 80", "weight: 70").replace("weight: 20", "weight: 30")
    load_files({"mesh.yaml": first_text}, cache=cache)
    first = translate(load(first_text), SIDECAR).snapshot
    load_files({"mesh.yaml": _MESH}, cache=cache)

    (old_route,) = first.digests(ROUTE).values()
    assert not cache.passed.known(ROUTE, old_route)  # only the first load met that route table
    assert all(cache.passed.known(CLUSTER, digest) for digest in first.digests(CLUSTER).values())


def _with_route_timeout(snapshot: Snapshot, seconds: int) -> Snapshot:
    """``snapshot`` with the first route of its last virtual host timing out after ``seconds``."""
    (message,) = snapshot.resources(ROUTE).values()
    config = type(message)()
    config.CopyFrom(message)
    config.virtual_hosts[-1].routes[0].route.timeout.seconds = seconds  # type: ignore[attr-defined]
    return Snapshot.build(
        clusters=snapshot.resources(CLUSTER).values(),
        endpoints=snapshot.resources(ENDPOINT).values(),
        listeners=snapshot.resources(LISTENER).values(),
        routes=[config],
    )


def test_a_changed_route_table_is_checked_again_only_in_its_new_virtual_host() -> None:
    snapshot = translate(load(_MESH), SIDECAR).snapshot
    passed = PassCache()
    envoy_findings(snapshot, locate=_nowhere, passed=passed)
    before = len(passed)

    assert envoy_findings(_with_route_timeout(snapshot, 7), locate=_nowhere, passed=passed) == []
    assert len(passed) == before + 2  # the new route table and its one new virtual host


def test_a_broken_virtual_host_in_a_route_table_seen_before_is_reported_as_without_the_cache() -> None:
    snapshot = translate(load(_MESH), SIDECAR).snapshot
    passed = PassCache()
    envoy_findings(snapshot, locate=_nowhere, passed=passed)
    broken = _with_route_timeout(snapshot, 10**12)

    found = envoy_findings(broken, locate=_nowhere, passed=passed)

    assert found == envoy_findings(broken, locate=_nowhere)
    assert len(found) == 1
    assert "virtual_hosts[" in found[0].message
    assert "timeout" in found[0].message
