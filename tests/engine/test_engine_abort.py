"""Engine.abort(): loading and translation stop at their next checkpoint, and that is no failure of the revision."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import structlog.testing
from memsource import GATEWAY, EngineFactory, MemorySource, mesh_files

from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.engine.status import Reason
from reconciler.errors import Cancelled
from reconciler.loader import load_files
from reconciler.translate.proxy import ProxyIdentity
from reconciler.xds.cache import SnapshotCache

Run = Callable[..., Any]


def test_a_pass_after_abort_publishes_nothing_and_records_no_error(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    cache = SnapshotCache()
    cache.connect(GATEWAY, on_change=lambda: None)
    engine = make_engine(source, cache)
    source.commit(mesh_files(v1=100, v2=0), "reviews on v1")
    assert run(engine.reconcile(trigger="test")).ok is True
    served = engine.status.to_json()["served"]
    generation = engine.status.generation

    source.commit(mesh_files(v1=50, v2=50), "half to v2")
    engine.abort()
    with structlog.testing.capture_logs() as logs:
        applied = run(engine.reconcile(trigger="test")).ok

    assert applied is False
    assert engine.status.to_json()["served"] == served
    assert engine.status.generation == generation
    assert engine.status.last_error is None
    assert engine.status.reason is not Reason.TRANSLATION_FAILED
    assert [entry["event"] for entry in logs if entry["event"].startswith("engine.pass")] == ["engine.pass_aborted"]


def test_translating_for_many_proxies_stops_at_the_checkpoint_between_proxies() -> None:
    config = load_files(mesh_files()).config
    calls = 0

    def checkpoint() -> None:  # lets two proxies through
        nonlocal calls
        calls += 1
        if calls > 2:
            raise Cancelled("stop")

    snapshots = ConfigSnapshots(config=config, checkpoint=checkpoint)
    proxies = [ProxyIdentity(node_id=f"sidecar-{i}", labels={"app": f"a{i}"}) for i in range(5)]

    with pytest.raises(Cancelled):
        snapshots.translate_all(proxies)

    assert len(snapshots.untranslated(proxies)) == 3
