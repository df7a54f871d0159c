"""The xDS port over TLS and mutual TLS with a real gRPC client: who is served, who is refused, reloads.

Certificates come from ``reconciler certs``' own code: a CA with clients ``gw-1`` and ``gw-2``
(namespace ``default``, the namespace a bootstrap without one announces) and a second CA that
signed another ``gw-1``.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import pytest

from reconciler.cli.certs import issue_certificates
from reconciler.errors import UsageError
from reconciler.metrics.service import MetricsService
from reconciler.metrics.store import MetricsStore
from reconciler.metrics.wire import METRICS_SERVICE, STREAM_METRICS, StreamMetricsMessage, StreamMetricsResponse
from reconciler.model.address import is_loopback
from reconciler.translate.snapshot import CLUSTER, Snapshot
from reconciler.xds.cache import SnapshotCache
from reconciler.xds.server import start_server
from reconciler.xds.tls import ServerTls, check_listen_security

EMPTY = Snapshot.build(clusters=[], endpoints=[], listeners=[], routes=[])


def stream_metrics(channel: grpc.aio.Channel, node_id: str) -> grpc.aio.StreamUnaryCall:
    """One StreamMetrics call sending a single message that names ``node_id``."""
    call = channel.stream_unary(
        f"/{METRICS_SERVICE}/{STREAM_METRICS}",
        request_serializer=StreamMetricsMessage.SerializeToString,
        response_deserializer=StreamMetricsResponse.FromString,
    )
    message = StreamMetricsMessage()
    message.identifier.node.id = node_id
    return call(iter([message]))


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    issue_certificates(tmp_path / "ca", clients=["gw-1", "gw-2"])
    issue_certificates(tmp_path / "other-ca", clients=["gw-1"])
    return tmp_path


def mutual(pki: Path, **kwargs: object) -> ServerTls:
    ca = pki / "ca"
    return ServerTls(cert_file=ca / "server.crt", key_file=ca / "server.key", client_ca_file=ca / "ca.crt", **kwargs)  # type: ignore[arg-type]


def client(pki: Path, node: str | None, *, ca: str = "ca", trusted_ca: str = "ca") -> grpc.ChannelCredentials:
    """A client's credentials: ``node``'s certificate from ``ca`` (or none), trusting ``trusted_ca``."""
    root = (pki / trusted_ca / "ca.crt").read_bytes()
    if node is None:
        return grpc.ssl_channel_credentials(root_certificates=root)
    return grpc.ssl_channel_credentials(
        root_certificates=root,
        private_key=(pki / ca / f"{node}.key").read_bytes(),
        certificate_chain=(pki / ca / f"{node}.crt").read_bytes(),
    )


def test_a_proxy_whose_certificate_names_its_node_id_is_served_over_mutual_tls(ads, pki: Path) -> None:
    async def scenario(env) -> None:
        env.publish(EMPTY)
        async with env.stream("gw-1") as stream:
            response = await stream.request(CLUSTER)
            await stream.ack(response)
            status = await env.status_where("gw-1", lambda s: s.acked_generation >= 1)
        assert status.types[CLUSTER].version_acked == response.version_info

    ads.run(scenario, tls=mutual(pki), credentials=client(pki, "gw-1"))


@pytest.mark.parametrize(
    ("node", "ca"), [pytest.param(None, "ca", id="no-certificate"), pytest.param("gw-1", "other-ca", id="other-ca")]
)
def test_a_proxy_without_a_certificate_from_the_ca_is_refused_and_never_seen(
    ads, pki: Path, node: str | None, ca: str
) -> None:
    async def scenario(env) -> None:
        env.publish(EMPTY)
        async with env.stream("gw-1") as stream:
            code, _ = await stream.refusal(CLUSTER)
        assert code is grpc.StatusCode.UNAVAILABLE
        assert env.cache.status("gw-1") is None

    ads.run(scenario, tls=mutual(pki), credentials=client(pki, node, ca=ca))


def test_a_proxy_claiming_another_proxys_node_id_is_refused_and_never_seen(ads, pki: Path) -> None:
    async def scenario(env) -> None:
        env.publish(EMPTY)
        async with env.stream("gw-2") as stream:
            code, details = await stream.refusal(CLUSTER)
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "node id 'gw-2'" in details
        assert env.cache.status("gw-2") is None
        assert env.cache.status("gw-1") is None

    ads.run(scenario, tls=mutual(pki), credentials=client(pki, "gw-1"))


def test_node_binding_can_be_turned_off_for_certificates_shared_by_replicas(ads, pki: Path) -> None:
    async def scenario(env) -> None:
        env.publish(EMPTY)
        async with env.stream("replica-7") as stream:
            assert (await stream.request(CLUSTER)).type_url == CLUSTER

    ads.run(scenario, tls=mutual(pki, bind_node_ids=False), credentials=client(pki, "gw-1"))


@pytest.mark.parametrize(("node", "served"), [("gw-2", True), ("gw-1", False)])
def test_only_certificates_on_the_allowlist_are_served(ads, pki: Path, node: str, served: bool) -> None:
    tls = mutual(pki, allowed_identities=("spiffe://cluster.local/ns/default/node/gw-2",))

    async def scenario(env) -> None:
        env.publish(EMPTY)
        async with env.stream(node) as stream:
            if served:
                assert (await stream.request(CLUSTER)).type_url == CLUSTER
                return
            code, details = await stream.refusal(CLUSTER)
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "allowlist" in details
        assert env.cache.status(node) is None

    ads.run(scenario, tls=tls, credentials=client(pki, node))


def test_server_only_tls_serves_proxies_without_client_certificates(ads, pki: Path) -> None:
    ca = pki / "ca"
    tls = ServerTls(cert_file=ca / "server.crt", key_file=ca / "server.key")

    async def scenario(env) -> None:
        env.publish(EMPTY)
        async with env.stream("any-node") as stream:
            assert (await stream.request(CLUSTER)).type_url == CLUSTER

    ads.run(scenario, tls=tls, credentials=client(pki, None))


def test_a_plaintext_client_cannot_talk_to_a_tls_port(ads, pki: Path) -> None:
    async def scenario(env) -> None:
        async with grpc.aio.insecure_channel(env.server.address) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(stream_metrics(plain, "gw-1"), 10)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE

    ads.run(scenario, tls=mutual(pki), credentials=client(pki, "gw-1"))


async def metrics_call(pki: Path, node_id: str) -> None:
    """One metrics stream over gw-1's certificate naming ``node_id``, against a mutual-TLS server."""
    server = await start_server(
        cache=SnapshotCache(), address="127.0.0.1:0", tls=mutual(pki), services=[MetricsService(MetricsStore()).add_to]
    )
    try:
        async with grpc.aio.secure_channel(server.address, client(pki, "gw-1")) as channel:
            await asyncio.wait_for(stream_metrics(channel, node_id), 10)
    finally:
        await server.stop(grace=0)


def test_the_metrics_stream_of_a_certificates_own_node_id_is_accepted(pki: Path) -> None:
    asyncio.run(metrics_call(pki, "gw-1"))


def test_the_metrics_stream_is_bound_to_the_certificates_node_id_too(pki: Path) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        asyncio.run(metrics_call(pki, "gw-2"))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_a_replaced_server_certificate_is_used_for_new_connections_without_a_restart(ads, pki: Path) -> None:
    ca = pki / "ca"
    issue_certificates(pki / "next-ca")  # a new server certificate, from a CA the old clients do not trust

    async def scenario(env) -> None:
        env.publish(EMPTY)
        async with env.stream("gw-1") as stream:  # a connection from before the reload keeps working
            await stream.request(CLUSTER)
            for name in ("server.key", "server.crt"):
                shutil.copyfile(pki / "next-ca" / name, ca / f".{name}")
                (ca / f".{name}").replace(ca / name)
            new_client = client(pki, "gw-1", trusted_ca="next-ca")
            async with grpc.aio.secure_channel(env.server.address, new_client) as channel:
                await asyncio.wait_for(channel.channel_ready(), 10)
            async with grpc.aio.secure_channel(env.server.address, client(pki, "gw-1")) as channel:
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(channel.channel_ready(), 2)
            await stream.send(CLUSTER, nonce="stale")  # still open: a stale request is ignored, not an error
        assert env.cache.status("gw-1") is not None

    ads.run(scenario, tls=mutual(pki), credentials=client(pki, "gw-1"))


def test_a_half_replaced_certificate_pair_is_not_used_and_the_old_one_keeps_serving(ads, pki: Path) -> None:
    ca = pki / "ca"
    issue_certificates(pki / "next-ca")

    async def scenario(env) -> None:
        shutil.copyfile(pki / "next-ca" / "server.crt", ca / "server.crt")  # the key is still the old one
        async with grpc.aio.secure_channel(env.server.address, client(pki, "gw-1")) as channel:
            await asyncio.wait_for(channel.channel_ready(), 10)

    ads.run(scenario, tls=mutual(pki), credentials=client(pki, "gw-1"))


def test_a_key_that_is_not_the_certificates_stops_the_server_from_starting(pki: Path) -> None:
    issue_certificates(pki / "next-ca")
    tls = ServerTls(cert_file=pki / "ca" / "server.crt", key_file=pki / "next-ca" / "server.key")
    with pytest.raises(UsageError, match="is not the key of the certificate"):
        asyncio.run(start_server(cache=SnapshotCache(), address="127.0.0.1:0", tls=tls))


def test_a_missing_certificate_file_stops_the_server_from_starting(tmp_path: Path) -> None:
    tls = ServerTls(cert_file=tmp_path / "nope.crt", key_file=tmp_path / "nope.key")
    with pytest.raises(UsageError, match=r"nope\.crt"):
        asyncio.run(start_server(cache=SnapshotCache(), address="127.0.0.1:0", tls=tls))


def test_plaintext_beyond_loopback_needs_to_be_asked_for() -> None:
    with pytest.raises(UsageError, match="--xds-plaintext"):
        check_listen_security("0.0.0.0", tls=None, plaintext=False)
    check_listen_security("0.0.0.0", tls=None, plaintext=True)  # allowed; the server warns at start
    check_listen_security("127.0.0.1", tls=None, plaintext=False)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("reconciler.mesh.svc", False),
    ],
)
def test_loopback_is_only_addresses_this_machine_alone_reaches(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
