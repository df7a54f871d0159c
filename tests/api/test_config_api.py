"""``/api/v1/config/manifests``: the served config (a rollout step's weights, not the commit's), connected proxies."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from translate_support import FIXTURES, load

from reconciler.api.config import config_routes
from reconciler.diff.manifests import manifest_files
from reconciler.loader import load_files
from reconciler.model.config import MeshConfig
from reconciler.rollout.routes import weights_of, with_weights
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

_TEXT = (FIXTURES / "weighted-80-20.yaml").read_text(encoding="utf-8")


def get(path: str, *, served: MeshConfig | None, proxies: list[ProxyIdentity]) -> tuple[int, Any]:
    async def inspect(_: str) -> None:
        return None

    async def main() -> tuple[int, Any]:
        app = web.Application()
        app.add_routes(
            config_routes(
                served=lambda: None if served is None else (served, None), connected=lambda: proxies, inspect=inspect
            )
        )
        async with TestClient(TestServer(app)) as client:
            response = await client.get(path)
            return response.status, await response.json()

    return asyncio.run(main())


def _weights(config: MeshConfig) -> list[int | None]:
    [vs] = config.virtual_services
    return [destination.weight for destination in vs.spec.http[0].route]


def test_the_manifests_of_a_rollout_step_carry_the_weights_served_not_the_commits() -> None:
    commit = load(_TEXT)
    step = with_weights(
        commit,
        weights_of(
            load(_TEXT.replace("weight: 80", "weight: 55").replace("weight: 20", "weight: 45")), {"default/reviews"}
        ),
    )
    sidecars = [ProxyIdentity(node_id=f"s{i}", labels={"app": "ratings"}, role=ProxyRole.SIDECAR) for i in range(3)]
    gateway = ProxyIdentity(node_id="g", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY)

    status, answer = get("/api/v1/config/manifests", served=step, proxies=[gateway, *sidecars])

    assert status == 200
    reloaded = load_files(manifest_files(answer["manifests"]))
    assert reloaded.ok
    assert (_weights(commit), _weights(reloaded.config)) == ([80, 20, 0], [55, 45, 0])
    assert [(group["role"], group["labels"], group["count"]) for group in answer["proxies"]] == [
        ("sidecar", {"app": "ratings"}, 3),
        ("gateway", {"istio": "ingressgateway"}, 1),
    ]
    assert answer["unlistedProxies"] == 0


def test_past_256_groups_the_rest_of_the_connected_proxies_are_counted_not_listed() -> None:
    proxies = [ProxyIdentity(node_id=f"p{i}", labels={"pod": str(i)}) for i in range(258)]

    _, answer = get("/api/v1/config/manifests", served=load(_TEXT), proxies=proxies)

    assert (len(answer["proxies"]), answer["unlistedProxies"]) == (256, 2)


def test_before_anything_is_served_both_config_endpoints_answer_404() -> None:
    for path in ("/api/v1/config", "/api/v1/config/manifests"):
        assert get(path, served=None, proxies=[]) == (404, {"error": "nothing is served yet"})
