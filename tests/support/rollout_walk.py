"""A RolloutController walking ``reviews`` 100/0 → 0/100, for the API and CLI tests of its commands."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memsource import GATEWAY, EngineFactory, MemorySource, ack_all, mesh_files
from rollout_yaml import policy_yaml

from reconciler.engine.reconcile import Engine
from reconciler.engine.rollouts import RolloutController
from reconciler.metrics.store import MetricsStore
from reconciler.xds.cache import ProxyConnection, SnapshotCache

__all__ = ["Walk", "first_step_acked"]


@dataclass
class Walk:
    engine: Engine
    cache: SnapshotCache
    gateway: ProxyConnection
    controller: RolloutController


def first_step_acked(source: MemorySource, make_engine: EngineFactory, run: Callable[..., Any]) -> Walk:
    """Steps 10, 50 with a 10m interval, the first step served and ACKed by one gateway: nothing judged for 10m."""
    cache = SnapshotCache()
    gateway = cache.connect(GATEWAY, on_change=lambda: None)
    engine = make_engine(source, cache)
    controller = RolloutController(engine=engine, cache=cache, metrics=MetricsStore(), clock=time.time)
    policy = policy_yaml(steps="10, 50", interval="10m")
    for v1, v2 in ((100, 0), (0, 100)):
        source.commit({**mesh_files(v1=v1, v2=v2), "policy.yaml": policy}, f"reviews {v1}/{v2}")
        assert run(engine.reconcile(trigger="test")).ok
        ack_all(gateway)
    [walking] = controller.documents()
    assert (walking.phase, walking.step) == ("Progressing", 0)
    return Walk(engine, cache, gateway, controller)
