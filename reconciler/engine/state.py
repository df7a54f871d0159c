"""The embedded state store: the last good revision survives restarts.

On start the daemon serves the stored revision at once, before git is reachable,
with the same content-hash versions, so connected proxies see no change. SQLite
(stdlib) gives atomic writes without a server; Kubernetes deployments point
``--state-dir`` at a volume.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Protocol

from reconciler.errors import StateError
from reconciler.sources.revision import Revision

__all__ = ["SqliteStateStore", "StateStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS last_good (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sha TEXT NOT NULL,
    config_tree TEXT NOT NULL,
    message TEXT NOT NULL,
    author TEXT NOT NULL,
    committed_at TEXT,
    files TEXT NOT NULL
);
"""


class StateStore(Protocol):
    """Where the engine keeps what must outlive the process."""

    def save_last_good(self, revision: Revision) -> None: ...

    def load_last_good(self) -> Revision | None: ...


class SqliteStateStore:
    """:class:`StateStore` in one SQLite file under the state directory."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "state.sqlite3"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(self._connect()) as db, db:
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise StateError(f"cannot open state store {self._path}: {error}") from error

    def _connect(self) -> sqlite3.Connection:
        # One short-lived connection per call: the store is touched once per applied revision.
        return sqlite3.connect(self._path, timeout=10)

    def save_last_good(self, revision: Revision) -> None:
        files = json.dumps(
            {path: content.decode("utf-8", "surrogateescape") for path, content in revision.files.items()}
        )
        committed = revision.committed_at.isoformat() if revision.committed_at else None
        try:
            with contextlib.closing(self._connect()) as db, db:
                db.execute(
                    "INSERT OR REPLACE INTO last_good (id, sha, config_tree, message, author, committed_at, files)"
                    " VALUES (1, ?, ?, ?, ?, ?, ?)",
                    (revision.sha, revision.config_tree, revision.message, revision.author, committed, files),
                )
        except sqlite3.Error as error:
            raise StateError(f"cannot save revision {revision.short_sha} to {self._path}: {error}") from error

    def load_last_good(self) -> Revision | None:
        try:
            with contextlib.closing(self._connect()) as db, db:
                row = db.execute(
                    "SELECT sha, config_tree, message, author, committed_at, files FROM last_good WHERE id = 1"
                ).fetchone()
        except sqlite3.Error as error:
            raise StateError(f"cannot read state store {self._path}: {error}") from error
        if row is None:
            return None
        sha, config_tree, message, author, committed_at, files = row
        return Revision(
            sha=sha,
            config_tree=config_tree,
            message=message,
            author=author,
            committed_at=datetime.fromisoformat(committed_at) if committed_at else None,
            files={path: text.encode("utf-8", "surrogateescape") for path, text in json.loads(files).items()},
        )
