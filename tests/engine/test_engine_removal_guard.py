"""The removal guard in a reconcile pass: a revision that takes away all or most routing is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memsource import GATEWAY, EngineFactory, MemorySource, mesh_files
from mesh_yaml import service_entry

from reconciler.engine.guard import RemovalGuard
from reconciler.engine.reconcile import Engine
from reconciler.engine.status import Reason
from reconciler.xds.cache import SnapshotCache

Run = Callable[..., Any]


def with_services(count: int) -> dict[str, bytes]:
    """The starter mesh (4 resources) plus ``count`` ServiceEntries, one file each."""
    return {**mesh_files(), **{f"svc-{i}.yaml": service_entry(f"svc-{i}").encode() for i in range(count)}}


def serving(
    make_engine: EngineFactory, source: MemorySource, run: Run, files: dict[str, bytes], **guard: Any
) -> Engine:
    """An engine (gateway connected, guard set from ``guard``) that has applied ``files``."""
    cache = SnapshotCache()
    cache.connect(GATEWAY, on_change=lambda: None)
    engine = make_engine(source, cache, removal_guard=RemovalGuard(**guard))
    source.commit(files, "the served config")
    assert run(engine.reconcile(trigger="test")).ok is True
    return engine


def test_a_revision_without_any_istio_resource_is_refused_and_the_last_good_keeps_serving(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = serving(make_engine, source, run, mesh_files())
    served = engine.status.to_json()["served"]

    emptied = source.commit({}, "mesh: only the README is left")
    refused = run(engine.reconcile(trigger="test")).ok
    still_refused = run(engine.reconcile(trigger="poll")).ok

    status = engine.status.to_json()
    assert (refused, still_refused) == (False, False)
    assert status["reason"] == Reason.REMOVAL_REFUSED
    assert status["served"] == served
    assert status["lastError"]["sha"] == emptied.sha
    assert "would remove all 4 served resources" in status["message"]
    assert "mesh/reconciler-allow-removal" in status["message"]


def test_a_revision_removing_more_than_half_of_the_served_resources_is_refused_with_the_numbers(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = serving(make_engine, source, run, with_services(10))

    source.commit(with_services(1), "a bad merge")
    assert run(engine.reconcile(trigger="test")).ok is False

    assert engine.status.reason == Reason.REMOVAL_REFUSED
    assert "would remove 9 of 14 served resources (64%) > 50%" in engine.status.message


def test_a_revision_removing_exactly_the_allowed_share_is_applied(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = serving(make_engine, source, run, with_services(4))

    source.commit(mesh_files(), "retire four of eight resources")
    assert run(engine.reconcile(trigger="test")).ok is True

    assert engine.status.reason == Reason.APPLIED


def test_the_marker_file_lets_a_revision_remove_everything(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = serving(make_engine, source, run, with_services(10))

    teardown = source.commit({}, "tear the mesh down", allow_removal=True)
    assert run(engine.reconcile(trigger="test")).ok is True

    assert engine.status.reason == Reason.APPLIED
    assert engine.status.served is not None
    assert engine.status.served.sha == teardown.sha


def test_a_refused_revision_is_applied_once_the_marker_is_committed_with_it(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = serving(make_engine, source, run, with_services(10))
    source.commit(mesh_files(), "drop the services")
    assert run(engine.reconcile(trigger="test")).ok is False

    source.commit(mesh_files(), "drop the services, on purpose", allow_removal=True)
    assert run(engine.reconcile(trigger="test")).ok is True

    assert engine.status.reason == Reason.APPLIED
    assert engine.status.last_error is None


def test_the_daemon_flags_let_a_large_removal_or_an_empty_revision_through(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = serving(make_engine, source, run, with_services(10), max_removal_percent=100, allow_empty=True)

    source.commit(mesh_files(), "drop the services")
    shrunk = run(engine.reconcile(trigger="test")).ok
    source.commit({}, "and everything else")
    emptied = run(engine.reconcile(trigger="test")).ok

    assert (shrunk, emptied) == (True, True)


def test_the_share_is_measured_against_what_is_served_so_the_first_revision_is_not_subject_to_it(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = serving(make_engine, source, run, with_services(2), max_removal_percent=0)

    source.commit(with_services(1), "one service fewer")
    assert run(engine.reconcile(trigger="test")).ok is False

    assert "would remove 1 of 6 served resources (17%) > 0%" in engine.status.message


def test_an_empty_first_revision_is_refused_too(source: MemorySource, make_engine: EngineFactory, run: Run) -> None:
    engine = make_engine(source, SnapshotCache())
    source.commit({}, "an empty repository")

    assert run(engine.reconcile(trigger="test")).ok is False

    assert engine.status.reason == Reason.REMOVAL_REFUSED
    assert engine.status.served is None
    assert "the revision has no Istio resources" in engine.status.message
