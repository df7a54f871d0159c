"""Responses framed from resources serialized once decode as the protobuf messages Envoy expects."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2

from reconciler.translate.snapshot import CLUSTER, Pieces, Resource, ResourceSet, set_version
from reconciler.xds.wire import Encoder, Framed


def clusters(*names: str) -> ResourceSet:
    return ResourceSet.build(CLUSTER, [cluster_pb2.Cluster(name=name, alt_stat_name="x" * 300) for name in names])


def test_a_state_of_the_world_response_decodes_to_the_resources_packed_as_any() -> None:
    resource_set = clusters("a", "b")
    framed = Encoder().sotw(
        type_url=CLUSTER, version=resource_set.version, resources=resource_set.items.values(), key=None, after=0
    )

    decoded = discovery_pb2.DiscoveryResponse.FromString(framed.data)

    assert decoded.version_info == resource_set.version
    assert decoded.type_url == CLUSTER
    assert decoded.nonce == framed.nonce
    unpacked = []
    for packed in decoded.resources:
        cluster = cluster_pb2.Cluster()
        assert packed.Unpack(cluster)
        unpacked.append(cluster)
    assert unpacked == list(resource_set.resources.values())


def test_a_delta_response_decodes_with_names_versions_and_removals() -> None:
    resource_set = clusters("a")
    framed = Encoder().delta(
        type_url=CLUSTER, system_version="v", resources=resource_set.items.values(), removed=["gone"], key=None, after=0
    )

    decoded = discovery_pb2.DeltaDiscoveryResponse.FromString(framed.data)

    (resource,) = decoded.resources
    assert resource.name == "a"
    assert resource.version == resource_set.items["a"].version
    cluster = cluster_pb2.Cluster()
    assert resource.resource.Unpack(cluster)
    assert cluster == resource_set.resources["a"]
    assert list(decoded.removed_resources) == ["gone"]
    assert decoded.nonce == framed.nonce
    assert decoded.system_version_info == "v"


def test_resources_kept_in_pieces_are_framed_as_the_same_responses_as_resources_kept_whole() -> None:
    resource_set = clusters("a", "b", "c")
    whole = list(resource_set.items.values())
    split = [
        dataclasses.replace(item, content=Pieces([item.packed[:5], memoryview(item.packed)[5:9], item.packed[9:]]))
        for item in whole
    ]
    for frame, message in (
        (
            lambda encoder, items, after: encoder.sotw(
                type_url=CLUSTER, version="v", resources=items, key="k", after=after
            ),
            discovery_pb2.DiscoveryResponse,
        ),
        (
            lambda encoder, items, after: encoder.delta(
                type_url=CLUSTER, system_version="v", resources=items, key="k", after=after
            ),
            discovery_pb2.DeltaDiscoveryResponse,
        ),
    ):
        encoder = Encoder()
        first = frame(encoder, whole, 0)
        second = frame(encoder, split, 0)  # a second stream: framed again, then shared
        again = frame(encoder, split, second.serial)  # a stream that had it: a new nonce around the kept body

        ours, theirs, later = (message.FromString(framed.data) for framed in (second, first, again))
        assert list(ours.resources) == list(theirs.resources) == list(later.resources)
        assert again.serial > second.serial
        assert second.data.replace(second.nonce.encode(), b"") == first.data.replace(first.nonce.encode(), b"")
        assert again.data.replace(again.nonce.encode(), b"") == first.data.replace(first.nonce.encode(), b"")
        assert all(not isinstance(item.content, bytes) for item in split)  # framed without joining them


def _sender(encoder: Encoder, resource_set: ResourceSet) -> Callable[[int], Framed]:
    """Sends ``resource_set`` whole as a stream whose last response of the type had serial ``after``."""
    version = resource_set.version

    def send(after: int) -> Framed:
        return encoder.sotw(
            type_url=CLUSTER, version=version, resources=resource_set.items.values(), key=version, after=after
        )

    return send


def _without_nonce(framed: Framed) -> bytes:
    return framed.data.replace(framed.nonce.encode(), b"")


def test_a_resource_set_is_framed_by_the_first_two_streams_that_send_it_then_shared_by_the_rest() -> None:
    send = _sender(Encoder(), clusters("a", "b"))

    first, second = send(0), send(0)
    rest = [send(0) for _ in range(3)]

    assert second is not first  # the first one's copy was not kept: a shape's own route table would stay here
    assert all(framed is second for framed in rest)
    assert _without_nonce(second) == _without_nonce(first)


def test_a_stream_that_had_a_shared_response_gets_the_same_content_under_a_newer_nonce() -> None:
    send = _sender(Encoder(), clusters("a", "b"))
    send(0)
    shared = send(0)

    again = send(shared.serial)  # a stream that had it, asked again (a warming cluster, drift's resend)

    assert again.serial > shared.serial
    assert again.nonce != shared.nonce
    decoded = discovery_pb2.DiscoveryResponse.FromString(again.data)
    assert decoded.nonce == again.nonce
    assert decoded.resources == discovery_pb2.DiscoveryResponse.FromString(shared.data).resources
    assert send(0) is again  # other streams now share the newer one


def test_a_stream_asking_again_for_a_response_only_it_was_sent_does_not_make_it_shared() -> None:
    send = _sender(Encoder(), clusters("own"))
    first = send(0)

    again = send(first.serial)
    once_more = send(again.serial)

    assert once_more is not again
    other_stream = send(0)
    assert send(0) is other_stream


def test_a_response_one_stream_sent_is_forgotten_among_newer_ones() -> None:
    encoder = Encoder(max_unshared=2)
    send = _sender(encoder, clusters("own"))
    send(0)
    for index in range(2):  # two more shapes' own route tables
        _sender(encoder, clusters(f"other-{index}"))(0)

    second = send(0)  # taken for the first stream again: not shared yet
    third = send(0)

    assert third is not second
    assert send(0) is third


def test_identical_resources_of_different_snapshots_have_one_version() -> None:
    one = clusters("a", "b")
    other = clusters("a", "c")

    assert one.items["a"].version == other.items["a"].version
    assert one.items["a"].packed == other.items["a"].packed
    assert one.items["b"].version != other.items["c"].version


def test_a_set_with_the_same_content_has_the_same_version_however_it_was_composed() -> None:
    whole = clusters("a", "b")
    composed = {**clusters("a").items, "b": Resource.of(CLUSTER, whole.resources["b"])}

    assert set_version(composed.values()) == whole.version
