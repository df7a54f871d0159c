"""The drift monitor: ACKs first, then the proxy's config dump; drift reported once, re-pushed once, healed or not."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from config_dumps import config_dump, dump_section, resource_json
from memsource import ack_all, config_of, mesh_files, push_all

from reconciler.engine.drift import DriftMonitor
from reconciler.engine.settings import DriftSettings
from reconciler.errors import XdsError
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.translate.snapshot import CLUSTER
from reconciler.xds.cache import ProxyConnection, SnapshotCache

_PROXY = ProxyIdentity(
    node_id="ingress-1", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY, admin_address="127.0.0.1:15000"
)


class _Dumps:
    """What the proxy's admin API answers: a document, or an XdsError (unreachable)."""

    def __init__(self) -> None:
        self.answer: Any = None
        self.asked: list[str] = []

    async def __call__(self, address: str) -> Any:
        self.asked.append(address)
        if isinstance(self.answer, Exception):
            raise self.answer
        return copy.deepcopy(self.answer)


def _setup(*, self_heal: bool = True, proxy: ProxyIdentity = _PROXY) -> tuple[DriftMonitor, ProxyConnection, _Dumps]:
    cache = SnapshotCache()
    cache.publish(config_of(mesh_files()))
    connection = cache.connect(proxy, on_change=lambda: None)
    dumps = _Dumps()
    monitor = DriftMonitor(
        cache=cache,
        settings=DriftSettings(self_heal=self_heal),
        fetch=dumps,
        clock=lambda: datetime(2026, 12, 7, tzinfo=UTC),
    )
    return monitor, connection, dumps


def _check(monitor: DriftMonitor) -> Any:
    document = asyncio.run(monitor.check("ingress-1"))
    assert document is not None
    return document


def _stale(connection: ProxyConnection) -> dict[str, Any]:
    """A dump in which the proxy's bootstrap holds one of the served clusters, with another timeout."""
    snapshot = connection.snapshot
    assert snapshot is not None
    dump = config_dump(snapshot, node_id="ingress-1")
    cluster = resource_json(next(iter(snapshot.resources(CLUSTER).values())), "envoy.config.cluster.v3.Cluster")
    cluster["connect_timeout"] = "9s"
    dump_section(dump, "ClustersConfigDump")["static_clusters"].append({"cluster": cluster})
    return dump


def test_a_proxy_that_runs_what_it_acked_is_in_sync_and_its_dump_was_read_at_the_announced_address() -> None:
    monitor, connection, dumps = _setup()
    ack_all(connection)
    assert connection.snapshot is not None
    dumps.answer = config_dump(connection.snapshot, node_id="ingress-1")

    document = _check(monitor)

    assert (document.state, document.live) == ("InSync", "checked")
    assert dumps.asked == ["127.0.0.1:15000"]
    assert monitor.drifted() == {"ingress-1": False}


def test_an_unanswered_push_is_pending_then_drift_after_three_checks_and_re_pushed_once() -> None:
    monitor, connection, _ = _setup()
    push_all(connection)

    states = [_check(monitor).state for _ in range(4)]

    assert states == ["Pending", "Pending", "Drifted", "Drifted"]
    assert connection.take_resend() is True  # one re-push for that drift, not one per check
    assert connection.take_resend() is False
    assert "persists after a re-push" in _check(monitor).message


def test_a_stale_static_cluster_is_drift_re_pushed_once_and_reported_as_persisting() -> None:
    monitor, connection, dumps = _setup()
    ack_all(connection)
    dumps.answer = _stale(connection)

    first = _check(monitor)
    second = _check(monitor)

    assert first.state == "Drifted"
    assert [(item.type, item.kind) for item in first.items] == [("CDS", "static")]
    assert "restart the proxy with a bootstrap from `reconciler bootstrap`" in first.message
    assert first.repushed_at is not None
    assert connection.take_resend() is True
    assert connection.take_resend() is False
    assert "persists after a re-push" in second.message
    assert monitor.drifted() == {"ingress-1": True}


def test_drift_that_a_re_push_ends_is_reported_healed() -> None:
    monitor, connection, dumps = _setup()
    ack_all(connection)
    dumps.answer = _stale(connection)
    _check(monitor)
    assert connection.snapshot is not None
    dumps.answer = config_dump(connection.snapshot, node_id="ingress-1")

    assert _check(monitor).state == "Healed"
    assert monitor.drifted() == {"ingress-1": False}


def test_without_self_heal_drift_is_reported_and_nothing_is_pushed() -> None:
    monitor, connection, dumps = _setup(self_heal=False)
    ack_all(connection)
    dumps.answer = _stale(connection)

    document = _check(monitor)

    assert document.state == "Drifted"
    assert document.repushed_at is None
    assert connection.take_resend() is False


@pytest.mark.parametrize(
    ("answer", "live"),
    [
        (XdsError("GET http://127.0.0.1:15000/config_dump: no answer within 5 s"), "unreachable: GET"),
        ({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                       "bootstrap": {"node": {"id": "someone-else"}}}]}, "not read: 127.0.0.1:15000 answers as node"),
    ],
)  # fmt: skip
def test_an_admin_api_that_cannot_be_read_or_answers_for_another_node_leaves_the_acks_to_judge(
    answer: Any, live: str
) -> None:
    monitor, connection, dumps = _setup()
    ack_all(connection)
    dumps.answer = answer

    document = _check(monitor)

    assert document.state == "InSync"
    assert document.live.startswith(live)
    assert document.live.endswith("(ACKs only)")


def test_a_proxy_that_announces_no_admin_address_is_judged_by_its_acks_alone() -> None:
    monitor, connection, dumps = _setup(proxy=ProxyIdentity(node_id="ingress-1", role=ProxyRole.GATEWAY))
    ack_all(connection)

    document = _check(monitor)

    assert (document.state, document.live) == ("InSync", "not read: no admin address announced (ACKs only)")
    assert dumps.asked == []
