"""Responses framed from resources serialized once decode as the protobuf messages Envoy expects."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2

from reconciler.translate.snapshot import CLUSTER, Resource, ResourceSet, set_version
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


def test_a_resource_set_is_framed_once_for_every_stream_that_sends_it() -> None:
    encoder = Encoder()
    resource_set = clusters("a", "b")
    version = resource_set.version

    first = encoder.sotw(type_url=CLUSTER, version=version, resources=resource_set.items.values(), key=version, after=0)
    second = encoder.sotw(
        type_url=CLUSTER, version=version, resources=clusters("a", "b").items.values(), key=version, after=0
    )

    assert second is first


def test_a_stream_that_had_a_shared_response_gets_the_same_content_under_a_newer_nonce() -> None:
    encoder = Encoder()
    resource_set = clusters("a", "b")
    version = resource_set.version

    def send(after: int) -> Framed:
        return encoder.sotw(
            type_url=CLUSTER, version=version, resources=resource_set.items.values(), key=version, after=after
        )

    first = send(0)
    again = send(first.serial)  # the same stream, asked again (a warming cluster, drift's resend)

    assert again.serial > first.serial
    assert again.nonce != first.nonce
    decoded = discovery_pb2.DiscoveryResponse.FromString(again.data)
    assert decoded.nonce == again.nonce
    assert decoded.resources == discovery_pb2.DiscoveryResponse.FromString(first.data).resources
    assert send(0) is again  # other streams now share the newer one


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


def test_a_response_only_one_stream_sent_is_forgotten_among_newer_ones_while_a_shared_one_is_kept() -> None:
    encoder = Encoder(max_unshared=2)

    def send(resource_set: ResourceSet) -> Framed:
        version = resource_set.version
        return encoder.sotw(
            type_url=CLUSTER, version=version, resources=resource_set.items.values(), key=version, after=0
        )

    shared, own = clusters("shared"), clusters("own")
    first_shared = send(shared)
    assert send(shared) is first_shared  # a second stream of the shape: kept from now on
    first_own = send(own)
    for index in range(2):  # two more shapes' own route tables
        send(clusters(f"other-{index}"))

    assert send(shared) is first_shared
    again = send(own)
    assert again is not first_own
    assert again.data.replace(again.nonce.encode(), b"") == first_own.data.replace(first_own.nonce.encode(), b"")
