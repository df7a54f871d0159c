"""The state store is a cache: a broken, foreign or old store never stops the daemon or serves the wrong config."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from memsource import EngineFactory, MemorySource, mesh_files
from structlog.testing import capture_logs

from reconciler.engine.reconcile import Engine
from reconciler.engine.state import SourceIdentity, SqliteStateStore, StoredRevision
from reconciler.engine.status import EngineStatus, Reason
from reconciler.errors import StateError
from reconciler.sources.local import LocalDirSource
from reconciler.sources.revision import Revision, content_hash
from reconciler.xds.cache import SnapshotCache

Run = Callable[..., Any]

SOURCE = SourceIdentity.of(repo="mem://mesh", branch="main", path="mesh")

#: The table as the first release created it: no source columns.
OLD_SCHEMA = """
CREATE TABLE last_good (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sha TEXT NOT NULL,
    config_tree TEXT NOT NULL,
    message TEXT NOT NULL,
    author TEXT NOT NULL,
    committed_at TEXT,
    files TEXT NOT NULL
);
"""


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def a_revision(*, message: str = "canary", author: str = "Test Author <author@example.test>") -> Revision:
    files = mesh_files()
    return Revision(
        sha="a" * 40,
        files=files,
        config_tree=content_hash(files),
        message=message,
        author=author,
        committed_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


def unopenable_state_dir(tmp_path: Path) -> Path:
    """A state dir that cannot be created: its parent is a regular file (works as root, unlike chmod)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    return blocker / "state"


# -- a broken store --------------------------------------------------------------------


def test_a_file_that_is_not_a_database_is_moved_aside_and_a_fresh_store_is_created(tmp_path: Path) -> None:
    garbage = b"this is not an SQLite database, just bytes left on the volume\n" * 20
    (tmp_path / "state.sqlite3").write_bytes(garbage)

    with capture_logs() as logs:
        store = SqliteStateStore(tmp_path)

    [moved] = [path for path in tmp_path.iterdir() if path.name.startswith("state.sqlite3.corrupt-")]
    assert re.fullmatch(r"state\.sqlite3\.corrupt-\d{8}T\d{6}Z", moved.name)
    assert moved.read_bytes() == garbage
    [logged] = events(logs, "state.corrupt_store_moved_aside")
    assert logged["log_level"] == "warning"
    assert logged["moved_to"] == str(moved)
    assert store.load_last_good() is None
    store.save_last_good(a_revision(), source=SOURCE)
    stored = store.load_last_good()
    assert stored is not None
    assert stored.revision.sha == "a" * 40


def test_a_second_corrupt_store_in_the_same_second_does_not_overwrite_the_first(tmp_path: Path) -> None:
    for content in (b"first garbage" * 100, b"second garbage" * 100):
        (tmp_path / "state.sqlite3").write_bytes(content)
        SqliteStateStore(tmp_path)

    kept = sorted(path.read_bytes() for path in tmp_path.iterdir() if ".corrupt-" in path.name)
    assert kept == [b"first garbage" * 100, b"second garbage" * 100]


def test_a_store_that_became_garbage_while_running_fails_one_save_and_recovers_on_the_next(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path)
    (tmp_path / "state.sqlite3").write_bytes(b"overwritten by something else" * 100)

    with pytest.raises(StateError, match="not a database"):
        store.save_last_good(a_revision(), source=SOURCE)
    store.save_last_good(a_revision(), source=SOURCE)

    assert [path for path in tmp_path.iterdir() if ".corrupt-" in path.name]
    stored = SqliteStateStore(tmp_path).load_last_good()
    assert stored is not None
    assert stored.source == SOURCE


def test_an_engine_over_a_garbage_store_serves_from_the_source_and_a_restart_restores_it(
    make_engine: EngineFactory, state_dir: Path, run: Run
) -> None:
    state_dir.mkdir()
    (state_dir / "state.sqlite3").write_bytes(b"\x00garbage" * 512)
    source = MemorySource()
    good = source.commit(mesh_files(), "canary")
    engine = make_engine(source, SnapshotCache())

    assert engine.restore() is False
    assert run(engine.reconcile(trigger="start")).ok is True

    restarted = make_engine(MemorySource(), SnapshotCache())
    assert restarted.restore() is True
    assert restarted.status.served is not None
    assert restarted.status.served.sha == good.sha


def test_a_store_that_cannot_be_opened_is_constructed_and_fails_every_load_and_save_with_state_error(
    tmp_path: Path,
) -> None:
    with capture_logs() as logs:
        store = SqliteStateStore(unopenable_state_dir(tmp_path))

    assert events(logs, "state.store_unavailable")
    with pytest.raises(StateError, match="cannot open state store"):
        store.load_last_good()
    with pytest.raises(StateError, match="cannot open state store"):
        store.save_last_good(a_revision(), source=SOURCE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_a_read_only_state_dir_fails_loads_and_saves_with_state_error(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    state_dir.chmod(0o555)
    try:
        store = SqliteStateStore(state_dir)
        with pytest.raises(StateError):
            store.load_last_good()
        with pytest.raises(StateError):
            store.save_last_good(a_revision(), source=SOURCE)
    finally:
        state_dir.chmod(0o755)


def test_a_store_that_could_not_be_opened_works_once_its_directory_can_be_created(tmp_path: Path) -> None:
    state_dir = unopenable_state_dir(tmp_path)
    store = SqliteStateStore(state_dir)
    state_dir.parent.unlink()  # e.g. the volume got mounted after the daemon started

    store.save_last_good(a_revision(), source=SOURCE)

    stored = SqliteStateStore(state_dir).load_last_good()
    assert stored is not None
    assert stored.revision.sha == "a" * 40


def test_an_engine_whose_store_cannot_be_opened_reports_state_failed_then_serves_from_the_source(
    tmp_path: Path, run: Run
) -> None:
    source = MemorySource()
    good = source.commit(mesh_files(), "canary")
    engine = Engine(
        source=source,
        cache=SnapshotCache(),
        store=SqliteStateStore(unopenable_state_dir(tmp_path)),
        status=EngineStatus(repo="mem://mesh", branch="main", path="mesh"),
        clock=lambda: datetime(2025, 6, 1, tzinfo=UTC),
        file_prefix="mesh/",
    )

    assert engine.restore() is False
    assert engine.status.reason is Reason.STATE_FAILED

    with capture_logs() as logs:
        assert run(engine.reconcile(trigger="start")).ok is True

    assert engine.status.reason is Reason.APPLIED
    assert engine.status.served is not None
    assert engine.status.served.sha == good.sha
    assert events(logs, "engine.state_save_failed")


@pytest.mark.parametrize(
    ("column", "value"),
    [("committed_at", "not a timestamp"), ("files", "{not json"), ("files", '["a list, not a map"]')],
)
def test_a_stored_row_that_cannot_be_decoded_raises_state_error_and_restore_reports_state_failed(
    make_engine: EngineFactory, state_dir: Path, run: Run, column: str, value: str
) -> None:
    source = MemorySource()
    source.commit(mesh_files(), "canary")
    run(make_engine(source, SnapshotCache()).reconcile(trigger="test"))
    with sqlite3.connect(state_dir / "state.sqlite3") as db:
        db.execute(f"UPDATE last_good SET {column} = ?", (value,))

    with pytest.raises(StateError, match="cannot decode"):
        SqliteStateStore(state_dir).load_last_good()
    engine = make_engine(MemorySource(), SnapshotCache())
    assert engine.restore() is False
    assert engine.status.reason is Reason.STATE_FAILED


# -- text that is not UTF-8 --------------------------------------------------------------


def test_text_with_undecodable_bytes_is_saved_with_the_bytes_escaped(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path)
    path = os.fsdecode(b"/srv/caf\xe9")  # how Python hands over a non-UTF-8 file name: with a surrogate
    revision = a_revision(message=f"working tree {path}", author="lone \ud800 surrogate")

    store.save_last_good(revision, source=SOURCE)

    stored = store.load_last_good()
    assert stored is not None
    assert stored.revision.message == "working tree /srv/caf\\xe9"
    assert stored.revision.author == "lone \\xed\\xa0\\x80 surrogate"
    assert dict(stored.revision.files) == dict(revision.files)


def test_a_working_tree_under_a_non_utf8_path_is_saved_and_restored(tmp_path: Path, run: Run) -> None:
    root = tmp_path / os.fsdecode(b"caf\xe9") / "mesh"
    root.mkdir(parents=True)
    for name, content in mesh_files().items():
        (root / name).write_bytes(content)
    state_dir = tmp_path / "state"

    def engine_over(source: LocalDirSource | MemorySource) -> Engine:
        return Engine(
            source=source,
            cache=SnapshotCache(),
            store=SqliteStateStore(state_dir),
            status=EngineStatus(repo=str(root.parent), branch="main", path="mesh"),
            clock=lambda: datetime(2025, 6, 1, tzinfo=UTC),
            file_prefix="mesh/",
        )

    engine = engine_over(LocalDirSource(root))
    with capture_logs() as logs:
        assert run(engine.reconcile(trigger="start")).ok is True
    assert not events(logs, "engine.state_save_failed")

    restarted = engine_over(MemorySource())
    assert restarted.restore() is True
    assert restarted.status.served is not None
    assert restarted.status.served.message == f"working tree {tmp_path}/caf\\xe9/mesh"


class _BuggyStore:
    """A store whose save fails with something other than StateError (a bug)."""

    def save_last_good(self, revision: Revision, *, source: SourceIdentity) -> None:
        raise UnicodeEncodeError("utf-8", "\udce9", 0, 1, "surrogates not allowed")

    def load_last_good(self) -> StoredRevision | None:
        return None

    def forget_last_good(self) -> None:
        raise AssertionError("nothing is rejected in this test")


def test_a_store_bug_while_saving_is_logged_and_the_new_revision_keeps_serving(run: Run) -> None:
    source = MemorySource()
    good = source.commit(mesh_files(), "canary")
    engine = Engine(
        source=source,
        cache=SnapshotCache(),
        store=_BuggyStore(),
        status=EngineStatus(repo="mem://mesh", branch="main", path="mesh"),
        clock=lambda: datetime(2025, 6, 1, tzinfo=UTC),
        file_prefix="mesh/",
    )

    with capture_logs() as logs:
        assert run(engine.reconcile(trigger="start")).ok is True

    assert engine.status.reason is Reason.APPLIED
    assert engine.status.served is not None
    assert engine.status.served.sha == good.sha
    [failed] = events(logs, "engine.state_save_failed")
    assert isinstance(failed["exc_info"], UnicodeEncodeError)


# -- the source a revision came from ---------------------------------------------------------


@pytest.mark.parametrize(
    "changed",
    [
        {"repo": "https://git.example.com/other/mesh.git"},
        {"branch": "release"},
        {"path": "istio/prod"},
    ],
)
def test_a_revision_stored_for_another_source_is_not_restored(
    make_engine: EngineFactory, run: Run, changed: dict[str, str]
) -> None:
    source = MemorySource()
    stored = source.commit(mesh_files(), "canary")
    run(make_engine(source, SnapshotCache()).reconcile(trigger="test"))

    with capture_logs() as logs:
        engine = make_engine(MemorySource(), SnapshotCache(), **changed)
        assert engine.restore() is False

    status = engine.status.to_json()
    assert status["ready"] is False
    assert status["served"] is None
    assert status["reason"] == Reason.PROGRESSING
    assert f"not serving stored revision {stored.short_sha}" in status["message"]
    [skipped] = events(logs, "engine.restore_skipped")
    assert skipped["reason"] == "SourceChanged"
    assert "mem://mesh" in skipped["stored"]


def test_the_same_source_spelled_differently_or_with_a_rotated_token_is_restored(
    make_engine: EngineFactory, run: Run
) -> None:
    source = MemorySource()
    source.commit(mesh_files(), "canary")
    first = make_engine(source, SnapshotCache(), repo="https://old-token@git.example.com/mesh.git", path="mesh")
    run(first.reconcile(trigger="test"))

    engine = make_engine(
        MemorySource(), SnapshotCache(), repo="https://new-token@git.example.com/mesh.git", path="./mesh/"
    )

    assert engine.restore() is True


def test_the_store_keeps_no_credentials_of_the_repository_url(
    make_engine: EngineFactory, state_dir: Path, run: Run
) -> None:
    source = MemorySource()
    source.commit(mesh_files(), "canary")
    run(
        make_engine(source, SnapshotCache(), repo="https://user:s3cret@git.example.com/mesh.git").reconcile(trigger="t")
    )

    assert b"s3cret" not in (state_dir / "state.sqlite3").read_bytes()


def test_a_store_written_before_sources_were_recorded_is_migrated_and_its_revision_not_restored(
    make_engine: EngineFactory, state_dir: Path, run: Run
) -> None:
    state_dir.mkdir()
    files = mesh_files()
    with sqlite3.connect(state_dir / "state.sqlite3") as db:
        db.executescript(OLD_SCHEMA)
        db.execute(
            "INSERT INTO last_good VALUES (1, ?, ?, 'old', 'someone', NULL, ?)",
            ("b" * 40, content_hash(files), json.dumps({name: text.decode() for name, text in files.items()})),
        )

    source = MemorySource()
    good = source.commit(files, "canary")

    with capture_logs() as logs:
        engine = make_engine(source, SnapshotCache())
        assert engine.restore() is False

    [skipped] = events(logs, "engine.restore_skipped")
    assert skipped["reason"] == "SourceUnknown"
    assert "unknown source" in engine.status.message
    stored = SqliteStateStore(state_dir).load_last_good()
    assert stored is not None
    assert (stored.revision.sha, stored.source) == ("b" * 40, None)
    assert run(engine.reconcile(trigger="start")).ok is True
    restarted = make_engine(MemorySource(), SnapshotCache())
    assert restarted.restore() is True
    assert restarted.status.served is not None
    assert restarted.status.served.sha == good.sha
