"""Restart: the SQLite last-good store lets a new engine serve before its source answers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from memsource import GATEWAY, EngineFactory, MemorySource, mesh_files, watch_status_while_saving

from reconciler.engine.status import Reason
from reconciler.xds.cache import SnapshotCache

Run = Callable[..., Any]


def versions(cache: SnapshotCache) -> dict[str, Any]:
    """The connected gateway's snapshot version and per-type versions."""
    connection = cache.connect(GATEWAY, on_change=lambda: None)
    snapshot = connection.snapshot
    assert snapshot is not None
    return {"snapshot": snapshot.version, **{url: rs.version for url, rs in snapshot.sets.items()}}


def test_a_restarted_engine_serves_the_stored_revision_with_the_same_versions_before_git_answers(
    make_engine: EngineFactory, run: Run
) -> None:
    before = MemorySource()
    first_cache = SnapshotCache()
    first = make_engine(before, first_cache)
    good = before.commit(mesh_files(v1=80, v2=20), "canary")
    run(first.reconcile(trigger="test"))
    served_before = versions(first_cache)

    unreachable = MemorySource()
    unreachable.fail_with("fatal: could not read from remote repository")
    cache = SnapshotCache()
    engine = make_engine(unreachable, cache)

    assert engine.restore() is True

    assert unreachable.polls == 0
    assert versions(cache) == served_before
    status = engine.status.to_json()
    assert status["reason"] == Reason.RESTORED
    assert status["served"]["sha"] == good.sha
    assert status["ready"] is True

    assert run(engine.reconcile(trigger="start")).ok is False
    assert engine.status.reason is Reason.FETCH_FAILED
    assert versions(cache) == served_before


def test_the_restored_revision_is_adopted_without_a_new_push_when_the_head_did_not_move(
    make_engine: EngineFactory, run: Run
) -> None:
    source = MemorySource()
    files = mesh_files(v1=80, v2=20)
    first = make_engine(source, SnapshotCache())
    source.commit(files, "canary")
    run(first.reconcile(trigger="test"))

    same_head = MemorySource()
    head = same_head.commit(files, "canary")
    cache = SnapshotCache()
    engine = make_engine(same_head, cache)
    engine.restore()
    generation = engine.status.generation

    assert run(engine.reconcile(trigger="start")).ok is True

    assert engine.status.reason is Reason.UP_TO_DATE
    assert engine.status.generation == generation
    assert engine.status.served is not None
    assert engine.status.served.sha == head.sha
    assert engine.status.last_error is None


def test_a_reader_never_sees_the_error_cleared_while_the_reason_still_says_fetch_failed(
    make_engine: EngineFactory, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = mesh_files(v1=80, v2=20)
    source = MemorySource()
    source.commit(files, "canary")
    run(make_engine(source, SnapshotCache()).reconcile(trigger="test"))
    same_head = MemorySource()
    same_head.commit(files, "canary")
    same_head.fail_with()
    engine = make_engine(same_head, SnapshotCache())
    engine.restore()
    run(engine.reconcile(trigger="start"))
    same_head.recover()
    seen_while_saving = watch_status_while_saving(monkeypatch, engine)

    assert run(engine.reconcile(trigger="retry")).ok is True

    assert [(s["reason"], (s["lastError"] or {}).get("reason")) for s in seen_while_saving] == [
        ("FetchFailed", "FetchFailed")
    ]
    assert engine.status.reason is Reason.UP_TO_DATE
    assert engine.status.last_error is None


def test_a_refused_revision_is_never_what_a_restart_serves(make_engine: EngineFactory, run: Run) -> None:
    source = MemorySource()
    good = source.commit(mesh_files(v1=80, v2=20), "canary")
    run(make_engine(source, SnapshotCache()).reconcile(trigger="test"))
    source.commit(mesh_files(subset_v2="v3"), "typo")
    run(make_engine(source, SnapshotCache()).reconcile(trigger="test"))

    engine = make_engine(MemorySource(), SnapshotCache())

    assert engine.restore() is True
    assert engine.status.served is not None
    assert engine.status.served.sha == good.sha


def test_an_empty_state_store_restores_nothing(make_engine: EngineFactory) -> None:
    engine = make_engine(MemorySource(), SnapshotCache())

    assert engine.restore() is False
    assert engine.status.served is None
    assert engine.status.to_json()["ready"] is False


def test_an_unreadable_state_store_is_reported_as_state_failed(make_engine: EngineFactory, state_dir: Path) -> None:
    engine = make_engine(MemorySource(), SnapshotCache())
    with sqlite3.connect(state_dir / "state.sqlite3") as db:
        db.execute("DROP TABLE last_good")

    assert engine.restore() is False

    status = engine.status.to_json()
    assert status["reason"] == Reason.STATE_FAILED
    assert status["lastError"]["reason"] == "StateFailed"
