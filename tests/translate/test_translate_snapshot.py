"""Versions of resources and resource sets: patched ones equal those built from scratch."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.translate.patch import RouteLayout
from reconciler.translate.snapshot import (
    CLUSTER,
    ROUTE,
    Pieces,
    Resource,
    ResourceSet,
    clusters_referenced_by_routes,
    digest,
    resource_version,
    set_version,
)

#: Enough resources for dozens of groups (one in 64 ends a group), few enough to build often.
_POOL = 3000


def _cluster(index: int, revision: int) -> Resource:
    return Resource.of(
        CLUSTER, cluster_pb2.Cluster(name=f"outbound|80||svc{index:05}.mesh", alt_stat_name=str(revision))
    )


edits = st.lists(
    st.tuples(st.integers(0, _POOL - 1), st.sampled_from(["put", "put", "remove"]), st.integers(0, 2)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, _POOL), st.integers(1, 3), st.lists(edits, min_size=1, max_size=4))
def test_a_set_patched_again_and_again_equals_the_set_built_from_its_resources(
    size: int, stride: int, rounds: list[list[tuple[int, str, int]]]
) -> None:
    content = {index: _cluster(index, 0) for index in range(0, size, stride)}
    patched = ResourceSet.build(CLUSTER, [item.message for item in content.values()])
    for round_edits in rounds:
        changed: dict[str, Resource] = {}
        removed: list[str] = []
        for index, kind, revision in round_edits:
            if kind == "put":
                content[index] = changed.setdefault(_cluster(index, revision).name, _cluster(index, revision))
            elif index in content and content[index].name not in changed:
                removed.append(content.pop(index).name)
        patched = patched.patched(changed, removed=removed)

        built = ResourceSet.build(CLUSTER, [item.message for item in content.values()])
        # In name order whichever way they are read, as a built set's: xDS responses list them so.
        assert list(patched.items) == list(built.items)
        assert list(patched.items.keys()) == list(built.items.keys())
        assert list(patched.items.values()) == list(built.items.values())
        assert list(patched.items.items()) == list(built.items.items())
        assert list(patched.resources.values()) == list(built.resources.values())
        assert patched.items == built.items
        assert len(patched.items) == len(built.items)
        assert all(patched.items.get(name) is None for name in removed if name not in changed)
        # Set operations on the names (a consistency check's ``references <= keys``) as on a dict's.
        names = frozenset(built.items)
        assert patched.items.keys() == built.items.keys()
        assert names <= patched.items.keys()
        assert names <= patched.resources.keys()
        assert not patched.items.keys() - names
        assert patched.items.keys() & names == names
        assert patched.version == built.version == set_version(content.values())
        assert (patched.ends, patched.digests) == (tuple(built.ends), tuple(built.digests))


def test_a_set_version_depends_on_every_resource_and_not_on_the_order_given() -> None:
    items = [_cluster(index, 0) for index in range(200)]
    changed = [*items[:100], _cluster(100, 1), *items[101:]]

    assert set_version(items) == set_version(reversed(items))
    assert set_version(items) != set_version(changed)
    assert set_version(items) != set_version(items[:-1])


def _route_config(hosts: list[tuple[int, int]]) -> route_pb2.RouteConfiguration:
    """A sidecar-like route configuration: one virtual host per (service, revision), in name order."""
    config = route_pb2.RouteConfiguration(name="15001")
    for index, revision in sorted(hosts):
        config.virtual_hosts.add(
            name=f"svc{index:04}.mesh:80",
            domains=[f"svc{index:04}.mesh"],
            routes=[
                route_components_pb2.Route(
                    route=route_components_pb2.RouteAction(cluster=f"outbound|80|v{revision}|svc{index:04}.mesh")
                )
            ],
        )
    return config


def _vhost_bytes(index: int, revision: int) -> bytes:
    (vhost,) = _route_config([(index, revision)]).virtual_hosts
    return vhost.SerializeToString(deterministic=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 999),
    st.integers(1, 3),
    st.lists(st.tuples(st.integers(0, 999), st.sampled_from(["put", "remove"]), st.integers(0, 2)), max_size=12),
)
def test_a_route_configuration_spliced_from_bytes_has_the_version_of_one_serialized_whole(
    size: int, stride: int, edits: list[tuple[int, str, int]]
) -> None:
    hosts = dict.fromkeys(range(0, size, stride), 0)
    layout = RouteLayout.of(Resource.of(ROUTE, _route_config(list(hosts.items()))))
    after = dict(hosts)
    replaced: dict[int, bytes] = {}
    inserted: dict[str, bytes] = {}
    removed: set[int] = set()
    touched: set[int] = set()
    for index, kind, revision in edits:
        name = f"svc{index:04}.mesh:80"
        if index in touched:
            continue
        touched.add(index)
        if kind == "remove" and index in hosts:
            removed.add(layout.position(name))
            del after[index]
        elif kind == "put":
            after[index] = revision
            if index in hosts:
                replaced[layout.position(name)] = _vhost_bytes(index, revision)
            else:
                inserted[name] = _vhost_bytes(index, revision)
    whole = Resource.of(ROUTE, _route_config(list(after.items())))

    spliced = layout.spliced(
        replaced, inserted=inserted, references=clusters_referenced_by_routes([whole.message]), removed=removed
    )

    assert spliced.resource.packed == whole.packed
    assert spliced.resource.version == whole.version
    assert spliced.hashes == RouteLayout.of(whole).hashes


@given(st.lists(st.binary(max_size=12), max_size=8), st.integers(0, 100), st.integers(0, 100))
def test_bytes_kept_as_pieces_read_slice_and_join_as_the_bytes_they_make(
    chunks: list[bytes], start: int, stop: int
) -> None:
    whole = b"".join(chunks)
    pieces = Pieces([*chunks[:2], *map(memoryview, chunks[2:])])
    start, stop = min(start, len(whole)), min(max(start, stop), len(whole))

    assert len(pieces) == len(whole)
    assert pieces.read(start, stop) == whole[start:stop]
    assert b"".join(pieces.slice(start, stop)) == whole[start:stop]
    assert pieces == whole
    assert pieces.whole() == whole
    assert pieces.read(start, stop) == whole[start:stop]  # joined now: read from the one piece
    assert hash(pieces) == hash(Pieces([whole]))


def test_a_resource_kept_in_pieces_equals_the_one_kept_whole_and_frames_the_same_chunks() -> None:
    whole = Resource.of(ROUTE, _route_config([(1, 0), (2, 0)]))
    packed = whole.packed
    split = Resource(
        name=whole.name,
        content=Pieces([packed[:7], memoryview(packed)[7:]]),
        version=whole.version,
        references=whole.references,
    )

    assert b"".join(split.chunks()) == packed
    assert split.size == len(packed)
    assert split == whole
    assert split.message == whole.message
    assert split.packed == packed
    assert split.chunks() == (packed,)  # asked whole once, kept whole


def test_a_route_configuration_spliced_patch_after_patch_stays_in_few_pieces_with_the_bytes_of_one_made_whole() -> None:
    hosts = dict.fromkeys(range(0, 600, 2), 0)
    layout = RouteLayout.of(Resource.of(ROUTE, _route_config(list(hosts.items()))))
    for step in range(400):
        index = (step * 7) % 600 // 2 * 2
        hosts[index] = (hosts[index] + 1) % 3
        whole = Resource.of(ROUTE, _route_config(list(hosts.items())))
        layout = layout.spliced(
            {layout.position(f"svc{index:04}.mesh:80"): _vhost_bytes(index, hosts[index])},
            inserted={},
            references=whole.references,
        )
        assert len(layout.resource.chunks()) <= 260
        assert layout.resource.version == whole.version

    assert layout.resource.packed == whole.packed
    assert layout.body(10) == whole.message.virtual_hosts[10].SerializeToString(deterministic=True)


def test_a_resource_version_hashes_its_name_and_bytes_and_a_route_configurations_its_virtual_hosts() -> None:
    cluster = cluster_pb2.Cluster(name="outbound|80||a.mesh")
    data = cluster.SerializeToString(deterministic=True)
    route = _route_config([(1, 0), (2, 0)])
    moved = _route_config([(1, 0), (2, 1)])

    assert Resource.of(CLUSTER, cluster).version == digest((b"outbound|80||a.mesh", data))
    assert resource_version(CLUSTER, "other", data) != resource_version(CLUSTER, "outbound|80||a.mesh", data)
    assert Resource.of(ROUTE, route).version == resource_version(
        ROUTE, "15001", route.SerializeToString(deterministic=True)
    )
    assert Resource.of(ROUTE, route).version != Resource.of(ROUTE, moved).version
    assert resource_version(ROUTE, "15001", b"") != resource_version(ROUTE, "15002", b"")
