"""The embedded state store: the last good revision survives restarts.

On start the daemon serves the stored revision at once, before git is reachable,
with the same content-hash versions, so connected proxies see no change. SQLite
(stdlib) gives atomic writes without a server; Kubernetes deployments point
``--state-dir`` at a volume.

The store is a cache: the daemon must run without it. Constructing a store never
raises; a file that is not a database is moved aside and replaced by a fresh one,
and a store that still cannot be opened makes every load and save raise
:class:`StateError` (the engine then serves from git alone). Each revision is saved
with the source it came from (:class:`SourceIdentity`), so a restart with another
``--repo``/``--branch``/``--path`` does not serve the old source's config.

Rollouts are kept too (:class:`RolloutStore`): each rollout's state and the weights it serves, tied
to its commit's config tree, and every decision it recorded. A restart resumes the rollout of the
tree it serves (``engine.rollouts``). Retention: the last :data:`ROLLOUTS_KEPT` rollouts, with
their decisions; older ones are deleted as new ones start.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from reconciler.engine.faults import FaultPoint, reached
from reconciler.errors import StateError
from reconciler.rollout.codec import (
    record_from_json,
    record_to_json,
    state_from_json,
    state_to_json,
    weights_from_json,
    weights_to_json,
)
from reconciler.rollout.decide import Record, RolloutState
from reconciler.rollout.plan import WeightTable
from reconciler.sources.git import redact_url
from reconciler.sources.revision import Revision

__all__ = [
    "ROLLOUTS_KEPT",
    "RolloutStore",
    "SourceIdentity",
    "SqliteStateStore",
    "StateStore",
    "StoredDecision",
    "StoredRevision",
    "StoredRollout",
]

log = structlog.get_logger("reconciler.state")

_FILE_NAME = "state.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS last_good (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sha TEXT NOT NULL,
    config_tree TEXT NOT NULL,
    message TEXT NOT NULL,
    author TEXT NOT NULL,
    committed_at TEXT,
    files TEXT NOT NULL,
    source_repo TEXT,
    source_branch TEXT,
    source_path TEXT
);
CREATE TABLE IF NOT EXISTS rollouts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    policy TEXT NOT NULL,
    sha TEXT NOT NULL,
    config_tree TEXT NOT NULL,
    phase TEXT NOT NULL,
    step INTEGER NOT NULL,
    state TEXT NOT NULL,
    weights TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout TEXT NOT NULL,
    time REAL NOT NULL,
    phase TEXT NOT NULL,
    action TEXT NOT NULL,
    step INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    acked_at REAL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rollout_decisions_by_rollout ON rollout_decisions (rollout, seq);
"""

#: Rollouts kept (with their decisions); the oldest beyond are deleted when a new one is saved.
ROLLOUTS_KEPT = 100

#: Added after the first release; a store written before has none of them (NULL: source unknown).
_SOURCE_COLUMNS = ("source_repo", "source_branch", "source_path")

#: SQLite's primary result codes for "this file is not (or no longer) a usable database".
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT})

#: Files SQLite keeps next to the database; a stale one must not be replayed into a fresh database.
_SIDE_FILE_SUFFIXES = ("-journal", "-wal", "-shm")


def _storable(text: str) -> str:
    """``text`` as valid UTF-8: undecodable bytes (surrogates, e.g. from a non-UTF-8 path) become ``\\xNN``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")


def _normal_path(path: str) -> str:
    parts = path.strip().replace("\\", "/").split("/")
    return "/".join(part for part in parts if part not in {"", "."})


@dataclass(frozen=True, slots=True)
class SourceIdentity:
    """Where a revision came from: repository, branch and config path. Build it with :meth:`of`."""

    repo: str
    branch: str
    path: str

    @classmethod
    def of(cls, *, repo: str, branch: str, path: str) -> SourceIdentity:
        """Normalised: credentials left out of the URL (a rotated token names the same repository,
        and the store keeps no secret), ``mesh/`` equal to ``mesh``, text as it is stored."""
        return cls(repo=_storable(redact_url(repo)), branch=_storable(branch), path=_storable(_normal_path(path)))

    def describe(self) -> str:
        return f"{self.repo} branch {self.branch!r} path {self.path or '.'!r}"


@dataclass(frozen=True, slots=True)
class StoredRevision:
    """The stored last good revision and its source (``None``: saved before the store recorded sources)."""

    revision: Revision
    source: SourceIdentity | None


@dataclass(frozen=True, slots=True)
class StoredRollout:
    """A rollout as stored: its state, the weights it serves, and the commit (and config tree) it walks."""

    key: str
    """Unique per rollout: a new walk (a new goal) is a new rollout."""
    policy: str
    sha: str
    config_tree: str
    state: RolloutState
    weights: WeightTable


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """One recorded decision of a rollout, the generation that served its weights, and the ACK it judged."""

    record: Record
    generation: int
    acked_at: float | None


class RolloutStore(Protocol):
    """Where rollouts outlive the process. Every method raises only :class:`StateError`."""

    def save_rollout(self, rollout: StoredRollout, *, decision: StoredDecision | None = None) -> None:
        """Insert or update ``rollout`` (by key), appending ``decision`` to its decisions."""
        ...

    def load_rollouts(self) -> tuple[StoredRollout, ...]:
        """Each policy's latest rollout per config tree."""
        ...

    def load_decisions(self, key: str, *, last: int) -> tuple[StoredDecision, ...]:
        """The rollout's ``last`` decisions, oldest first."""
        ...


class StateStore(Protocol):
    """Where the engine keeps what must outlive the process. Every method raises only :class:`StateError`."""

    def save_last_good(self, revision: Revision, *, source: SourceIdentity) -> None: ...

    def load_last_good(self) -> StoredRevision | None: ...

    def forget_last_good(self) -> None: ...


class _CorruptStore(Exception):
    """Internal: the file is not a usable SQLite database."""


def _is_corrupt(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _CORRUPT_CODES  # extended codes keep the primary in the low byte


class SqliteStateStore:
    """:class:`StateStore` in one SQLite file under the state directory."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / _FILE_NAME
        # Opened (schema created, checked) and not failed since; otherwise the next call opens again,
        # so a store that failed (volume mounted late, a file dropped on it) recovers without a restart.
        self._ready = False
        with contextlib.suppress(StateError):  # already logged; load and save report it again
            self._ensure_ready()

    def _connect(self) -> sqlite3.Connection:
        # One short-lived connection per call: the store is touched once per applied revision.
        return sqlite3.connect(self._path, timeout=10)

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        try:
            try:
                self._create_schema()
            except _CorruptStore as corrupt:
                self._move_aside(str(corrupt))
                self._create_schema()
        except (OSError, sqlite3.Error, _CorruptStore) as error:
            log.error("state.store_unavailable", path=str(self._path), error=str(error))
            raise StateError(f"cannot open state store {self._path}: {error}") from error
        self._ready = True

    def _create_schema(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with contextlib.closing(self._connect()) as db, db:
                db.executescript(_SCHEMA)
                columns = {row[1] for row in db.execute("PRAGMA table_info(last_good)")}
                for column in _SOURCE_COLUMNS:
                    if column not in columns:
                        db.execute(f"ALTER TABLE last_good ADD COLUMN {column} TEXT")
                # Cheap for one row; finds damage the schema statements did not touch.
                verdict = db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as error:
            if _is_corrupt(error):
                raise _CorruptStore(str(error)) from error
            raise
        if verdict is None or verdict[0] != "ok":
            raise _CorruptStore(f"integrity check failed: {verdict[0] if verdict else 'no answer'}")

    def _move_aside(self, why: str) -> None:
        """Keep the unusable file for a post-mortem, out of the way of a fresh database."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self._path.with_name(f"{_FILE_NAME}.corrupt-{stamp}")
        counter = 0
        while target.exists():
            counter += 1
            target = self._path.with_name(f"{_FILE_NAME}.corrupt-{stamp}-{counter}")
        self._path.replace(target)
        for suffix in _SIDE_FILE_SUFFIXES:
            side = self._path.with_name(_FILE_NAME + suffix)
            if side.exists():
                side.replace(target.with_name(target.name + suffix))
        log.warning("state.corrupt_store_moved_aside", path=str(self._path), moved_to=str(target), error=why)

    def save_last_good(self, revision: Revision, *, source: SourceIdentity) -> None:
        self._ensure_ready()
        try:
            files = json.dumps(
                {path: content.decode("utf-8", "surrogateescape") for path, content in revision.files.items()}
            )
            committed = revision.committed_at.isoformat() if revision.committed_at else None
            row = (
                *(_storable(text) for text in (revision.sha, revision.config_tree, revision.message, revision.author)),
                committed,
                files,
                source.repo,  # already storable: SourceIdentity.of made it so
                source.branch,
                source.path,
            )
            with contextlib.closing(self._connect()) as db, db:
                db.execute(
                    "INSERT OR REPLACE INTO last_good (id, sha, config_tree, message, author, committed_at, files,"
                    " source_repo, source_branch, source_path) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                reached(FaultPoint.MID_STATE_SAVE, sha=revision.sha)  # written, not committed
        except (sqlite3.Error, ValueError) as error:
            self._ready = False
            raise StateError(f"cannot save revision {revision.short_sha} to {self._path}: {error}") from error

    def forget_last_good(self) -> None:
        """Drop the stored revision: a proxy rejected it, so a restart must not serve it as good."""
        self._ensure_ready()
        try:
            with contextlib.closing(self._connect()) as db, db:
                db.execute("DELETE FROM last_good")
        except sqlite3.Error as error:
            self._ready = False
            raise StateError(f"cannot clear the revision stored in {self._path}: {error}") from error

    def load_last_good(self) -> StoredRevision | None:
        self._ensure_ready()
        try:
            with contextlib.closing(self._connect()) as db, db:
                row = db.execute(
                    "SELECT sha, config_tree, message, author, committed_at, files,"
                    " source_repo, source_branch, source_path FROM last_good WHERE id = 1"
                ).fetchone()
        except sqlite3.Error as error:
            self._ready = False
            raise StateError(f"cannot read state store {self._path}: {error}") from error
        if row is None:
            return None
        sha, config_tree, message, author, committed_at, files, repo, branch, path = row
        try:
            revision = Revision(
                sha=sha,
                config_tree=config_tree,
                message=message,
                author=author,
                committed_at=datetime.fromisoformat(committed_at) if committed_at else None,
                files={name: text.encode("utf-8", "surrogateescape") for name, text in json.loads(files).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            # A row this code did not write (or a damaged one); the next save replaces it.
            raise StateError(f"cannot decode the revision stored in {self._path}: {error!r}") from error
        known = repo is not None and branch is not None and path is not None
        return StoredRevision(
            revision=revision, source=SourceIdentity(repo=repo, branch=branch, path=path) if known else None
        )

    def save_rollout(self, rollout: StoredRollout, *, decision: StoredDecision | None = None) -> None:
        self._ensure_ready()
        row = (
            rollout.key,
            _storable(rollout.policy),
            rollout.sha,
            rollout.config_tree,
            rollout.state.phase.value,
            rollout.state.step,
            json.dumps(state_to_json(rollout.state)),
            json.dumps(weights_to_json(rollout.weights)),
        )
        try:
            with contextlib.closing(self._connect()) as db, db:
                db.execute(
                    "INSERT INTO rollouts (id, policy, sha, config_tree, phase, step, state, weights)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET sha = excluded.sha,"
                    " config_tree = excluded.config_tree, phase = excluded.phase, step = excluded.step,"
                    " state = excluded.state, weights = excluded.weights",
                    row,
                )
                if decision is not None:
                    record = decision.record
                    db.execute(
                        "INSERT INTO rollout_decisions (rollout, time, phase, action, step, generation, acked_at,"
                        " record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            rollout.key,
                            record.time,
                            record.phase.value,
                            record.action.value,
                            record.step,
                            decision.generation,
                            decision.acked_at,
                            json.dumps(record_to_json(record)),
                        ),
                    )
                _prune(db)
        except (sqlite3.Error, ValueError) as error:
            self._ready = False
            raise StateError(f"cannot save rollout {rollout.policy} to {self._path}: {error}") from error

    def load_rollouts(self) -> tuple[StoredRollout, ...]:
        rows = self._read(
            "SELECT id, policy, sha, config_tree, state, weights FROM rollouts"
            " WHERE seq IN (SELECT MAX(seq) FROM rollouts GROUP BY policy, config_tree) ORDER BY seq",
            (),
        )
        try:
            return tuple(
                StoredRollout(
                    key=key,
                    policy=policy,
                    sha=sha,
                    config_tree=tree,
                    state=state_from_json(json.loads(state)),
                    weights=weights_from_json(json.loads(weights)),
                )
                for key, policy, sha, tree, state, weights in rows
            )
        except ValueError as error:  # JSONDecodeError too
            raise StateError(f"cannot decode the rollouts stored in {self._path}: {error}") from error

    def load_decisions(self, key: str, *, last: int) -> tuple[StoredDecision, ...]:
        rows = self._read(
            "SELECT generation, acked_at, record FROM rollout_decisions WHERE rollout = ? ORDER BY seq DESC LIMIT ?",
            (key, last),
        )
        try:
            return tuple(
                StoredDecision(record=record_from_json(json.loads(record)), generation=generation, acked_at=acked_at)
                for generation, acked_at, record in reversed(rows)
            )
        except ValueError as error:
            raise StateError(f"cannot decode the decisions stored in {self._path}: {error}") from error

    def _read(self, query: str, parameters: tuple[object, ...]) -> list[tuple[Any, ...]]:
        self._ensure_ready()
        try:
            with contextlib.closing(self._connect()) as db, db:
                return db.execute(query, parameters).fetchall()
        except sqlite3.Error as error:
            self._ready = False
            raise StateError(f"cannot read state store {self._path}: {error}") from error


def _prune(db: sqlite3.Connection) -> None:
    """Keep the last :data:`ROLLOUTS_KEPT` rollouts and their decisions."""
    deleted = db.execute(
        "DELETE FROM rollouts WHERE seq NOT IN (SELECT seq FROM rollouts ORDER BY seq DESC LIMIT ?)", (ROLLOUTS_KEPT,)
    ).rowcount
    if deleted:
        db.execute("DELETE FROM rollout_decisions WHERE rollout NOT IN (SELECT id FROM rollouts)")
