"""The status API over HTTP, wired as the daemon wires it: a real Engine, SnapshotCache and EngineStatus."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from reconciler.api.document import StatusDocument
from reconciler.api.status import status_routes
from reconciler.engine.reconcile import Engine
from reconciler.engine.state import SqliteStateStore
from reconciler.engine.status import EngineStatus
from reconciler.sources.local import LocalDirSource
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE
from reconciler.validate.findings import Code
from reconciler.xds.cache import SnapshotCache

TEMPLATE = Path(__file__).resolve().parents[2] / "repo-template" / "mesh"
GATEWAY = ProxyIdentity(node_id="ingress-1", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY)
CONNECTED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Api:
    """The daemon's status side: the engine that serves, the cache proxies connect to, an HTTP client."""

    engine: Engine
    cache: SnapshotCache
    client: TestClient[web.Request, web.Application]
    mesh: Path

    async def get(self, path: str) -> tuple[int, Any]:
        response = await self.client.get(path)
        return response.status, await response.json()


@asynccontextmanager
async def status_api(tmp_path: Path) -> AsyncIterator[Api]:
    """The routes ``run_daemon`` mounts, over the repo template in a directory; nothing served yet."""
    mesh = tmp_path / "mesh"
    shutil.copytree(TEMPLATE, mesh)
    cache = SnapshotCache(clock=CONNECTED_AT.timestamp)
    status = EngineStatus(repo=str(tmp_path), branch="main", path="mesh")
    engine = Engine(
        source=LocalDirSource(mesh),
        cache=cache,
        store=SqliteStateStore(tmp_path / "state"),
        status=status,
        clock=lambda: datetime.now(UTC),
        file_prefix="mesh/",
    )
    app = web.Application()
    app.add_routes(status_routes(status=status.document, proxies=cache.statuses, registry=CollectorRegistry()))
    async with TestClient(TestServer(app)) as client:
        yield Api(engine=engine, cache=cache, client=client, mesh=mesh)


def run(tmp_path: Path, scenario: Callable[[Api], Awaitable[None]]) -> None:
    """Run ``scenario(api)`` on a fresh event loop (pytest-aiohttp is not a dependency)."""

    async def main() -> None:
        async with status_api(tmp_path) as api:
            await scenario(api)

    asyncio.run(main())


def test_healthz_answers_200_before_anything_is_served(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        assert await api.get("/healthz") == (200, {"status": "ok"})

    run(tmp_path, scenario)


def test_readyz_is_503_until_a_revision_is_served_then_200_and_stays_200_when_a_commit_is_refused(
    tmp_path: Path,
) -> None:
    async def scenario(api: Api) -> None:
        code, body = await api.get("/readyz")
        assert (code, body["ready"], body["reason"]) == (503, False, "Progressing")

        assert (await api.engine.reconcile(trigger="test")).ok is True
        code, body = await api.get("/readyz")
        assert (code, body["ready"], body["reason"]) == (200, True, "Applied")

        # The last good revision keeps serving, so the daemon is still ready.
        (api.mesh / "broken.yaml").write_text("kind: VirtualService\nspec: [\n")
        assert (await api.engine.reconcile(trigger="test")).ok is False
        code, body = await api.get("/readyz")
        assert (code, body["ready"], body["reason"]) == (200, True, "ValidationFailed")

    run(tmp_path, scenario)


def test_status_shows_each_proxy_with_labels_connected_since_and_sent_acked_state_per_type(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        connection = api.cache.connect(GATEWAY, on_change=lambda: None)
        assert (await api.engine.reconcile(trigger="test")).ok is True
        snapshot = connection.snapshot
        assert snapshot is not None
        for type_url in PUSH_ORDER:
            connection.record_push(type_url, snapshot.version_of(type_url))
        # What an ADS stream reports: CDS and EDS accepted, LDS rejected, RDS not answered yet.
        connection.record_ack(CLUSTER, snapshot.version_of(CLUSTER))
        connection.record_ack(ENDPOINT, snapshot.version_of(ENDPOINT))
        connection.record_nack(LISTENER, version=snapshot.version_of(LISTENER), message="port 80 already in use")

        code, body = await api.get("/api/v1/status")

        assert code == 200
        [proxy] = body["proxies"]
        assert proxy["nodeId"] == "ingress-1"
        assert proxy["labels"] == {"istio": "ingressgateway"}
        assert proxy["connectedSince"] == "2025-06-01T12:00:00Z"
        assert proxy["types"]["CDS"] == {
            "state": "SYNCED",
            "sent": snapshot.version_of(CLUSTER),
            "acked": snapshot.version_of(CLUSTER),
            "nack": None,
        }
        assert proxy["types"]["EDS"]["state"] == "SYNCED"
        assert proxy["types"]["LDS"] == {
            "state": "NACKED",
            "sent": snapshot.version_of(LISTENER),
            "acked": None,
            "nack": {"version": snapshot.version_of(LISTENER), "message": "port 80 already in use"},
        }
        assert proxy["types"]["RDS"] == {
            "state": "STALE",
            "sent": snapshot.version_of(ROUTE),
            "acked": None,
            "nack": None,
        }
        assert body["served"]["sha"] == body["headSha"]
        # The only revision there is was NACKed: nothing every proxy accepted is served.
        assert (body["reason"], body["ready"]) == ("Rejected", False)

    run(tmp_path, scenario)


def test_the_status_api_serves_the_status_document_as_json_and_that_json_reads_back_to_the_same_document(
    tmp_path: Path,
) -> None:
    async def scenario(api: Api) -> None:
        connection = api.cache.connect(GATEWAY, on_change=lambda: None)
        vs = api.mesh / "virtualservice.yaml"
        vs.write_text(vs.read_text().replace("    timeout: 5s\n", "    corsPolicy: {}\n"))  # a warning
        assert (await api.engine.reconcile(trigger="test")).ok is True
        snapshot = connection.snapshot
        assert snapshot is not None
        for type_url in (CLUSTER, ENDPOINT, LISTENER):  # RDS not sent yet
            connection.record_push(type_url, snapshot.version_of(type_url))
        connection.record_ack(CLUSTER, snapshot.version_of(CLUSTER))
        connection.record_nack(LISTENER, version=snapshot.version_of(LISTENER), message="port 80 already in use")
        (api.mesh / "broken.yaml").write_text("kind: VirtualService\nspec: [\n")  # a last error with findings
        assert (await api.engine.reconcile(trigger="test")).ok is False

        _, body = await api.get("/api/v1/status")
        document = StatusDocument.of(api.engine.status.document(), api.cache.statuses())

        # Every part of the document is there to compare: warnings, an error's findings, a proxy.
        assert body["warnings"]
        assert body["lastError"]["findings"]
        assert body["proxies"]
        assert body == document.to_json()
        assert StatusDocument.from_json(body) == document

    run(tmp_path, scenario)


def test_status_lists_no_proxies_and_is_not_ready_before_anything_connects_or_is_served(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        code, body = await api.get("/api/v1/status")
        assert code == 200
        assert (body["proxies"], body["served"], body["ready"]) == ([], None, False)

    run(tmp_path, scenario)


def test_a_symlink_out_of_the_served_directory_is_a_warning_and_its_target_never_reaches_the_status(
    tmp_path: Path,
) -> None:
    (tmp_path / "credentials").write_text("aws_secret_access_key = wJalrXUtnFEMI-K7MDENG\n")

    async def scenario(api: Api) -> None:
        os.symlink(tmp_path / "credentials", api.mesh / "creds.yaml")

        assert (await api.engine.reconcile(trigger="test")).ok is True
        _, body = await api.get("/api/v1/status")

        assert "wJalrXUtnFEMI" not in json.dumps(body)
        assert [(w["file"], w["code"]) for w in body["warnings"] if w["file"].endswith("creds.yaml")] == [
            ("mesh/creds.yaml", Code.SYMLINK_SKIPPED.value)
        ]

    run(tmp_path, scenario)


def test_a_huge_value_is_shortened_in_status_and_readyz_stays_small(tmp_path: Path) -> None:
    host = "a" * 900_000 + ".example.com"  # a file within the 1 MiB limit, made of one host

    async def scenario(api: Api) -> None:
        assert (await api.engine.reconcile(trigger="test")).ok is True
        (api.mesh / "huge.yaml").write_text(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: huge}\n"
            f"spec:\n  hosts: [{host}]\n  http:\n  - route:\n    - destination: {{host: {host}}}\n"
        )
        assert (await api.engine.reconcile(trigger="test")).ok is False

        response = await api.client.get("/api/v1/status")
        status = await response.read()
        readyz = await (await api.client.get("/readyz")).read()

        assert json.loads(status)["reason"] == "ValidationFailed"
        assert len(status) < 20_000
        assert len(readyz) < 400

    run(tmp_path, scenario)
