"""An in-memory ConfigSource and the starter mesh, for engine tests without git or gRPC.

``MemorySource`` behaves like ``GitSource`` as the engine sees it: ``commit()`` moves the
head, ``poll()`` returns the head's Revision once (``None`` when the head did not move or
its config equals the last one returned), and ``fail_with()`` makes every poll raise a
``SourceError`` (``FetchError`` unless told) until ``recover()``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.engine.reconcile import Engine
from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.engine.state import SourceIdentity, SqliteStateStore
from reconciler.errors import BranchNotFoundError, FetchError, SourceError
from reconciler.loader import load_files
from reconciler.sources.revision import Revision, content_hash
from reconciler.translate import build_registry
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.translate.snapshot import PUSH_ORDER
from reconciler.xds.cache import ProxyConnection

GATEWAY = ProxyIdentity(node_id="ingress-1", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY)

EngineFactory = Callable[..., Engine]

TEMPLATE = Path(__file__).resolve().parents[2] / "repo-template" / "mesh"


def template_dir(root: Path) -> Path:
    """A copy of the repo template's YAML files at ``root/mesh`` (a directory a daemon can serve); its path."""
    mesh = root / "mesh"
    mesh.mkdir()
    for path in TEMPLATE.glob("*.yaml"):
        (mesh / path.name).write_text(path.read_text())
    return mesh


def mesh_files(*, v1: int = 80, v2: int = 20, subset_v2: str = "v2") -> dict[str, bytes]:
    """The repo template's files (relative to ``mesh/``) with the default route's weights set.

    Without the template's RolloutPolicy: these weights are served at once, rollout tests add their own policy.
    """
    files = {
        path.name: path.read_text() for path in sorted(TEMPLATE.glob("*.yaml")) if path.name != "rolloutpolicy.yaml"
    }
    files["virtualservice.yaml"] = (
        files["virtualservice.yaml"]
        .replace("weight: 100", f"weight: {v1}")
        .replace("subset: v2\n      weight: 0", f"subset: {subset_v2}\n      weight: {v2}")
    )
    return {name: text.encode() for name, text in files.items()}


def config_of(files: Mapping[str, bytes]) -> ConfigSnapshots:
    """A validated config that is no commit's (what a rollout step serves), from files like ``mesh_files()``."""
    result = load_files({f"mesh/{path}": content for path, content in files.items()})
    assert result.ok, [finding.format() for finding in result.findings]
    return ConfigSnapshots(config=result.config, registry=build_registry(result.config), findings=result.findings)


def stored_sha(state_dir: Path) -> str | None:
    """The sha of the last good revision stored in ``state_dir``, ``None`` when none is."""
    stored = SqliteStateStore(state_dir).load_last_good()
    return stored.revision.sha if stored is not None else None


def line_of(text: bytes, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    for number, line in enumerate(text.decode().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not found")


def push_all(connection: ProxyConnection) -> None:
    """What an ADS stream reports when it sent every type of its proxy's current snapshot."""
    snapshot = connection.snapshot
    assert snapshot is not None
    for type_url in PUSH_ORDER:
        connection.record_push(type_url, snapshot.sets[type_url].version)


def ack_all(connection: ProxyConnection) -> None:
    """...and when the proxy ACKed every one of them."""
    snapshot = connection.snapshot
    assert snapshot is not None
    push_all(connection)
    for type_url in PUSH_ORDER:
        connection.record_ack(type_url, snapshot.sets[type_url].version)
    connection.record_snapshot_acked(snapshot.version)


class MemorySource:
    """A ``ConfigSource`` over revisions built in memory."""

    def __init__(self) -> None:
        self._head: Revision | None = None
        self._seen_sha: str | None = None
        self._seen_tree: str | None = None
        self._failure: SourceError | None = None
        self._fetched: str | None = None
        self._count = 0
        self.polls = 0
        self.aborts = 0

    @property
    def head_sha(self) -> str | None:
        return self._fetched

    def commit(self, files: Mapping[str, bytes], message: str, *, allow_removal: bool = False) -> Revision:
        """``allow_removal``: the commit holds the removal guard's marker file in the config directory."""
        self._count += 1
        sha = hashlib.sha1(f"{self._count}:{message}".encode()).hexdigest()
        self._head = Revision(
            sha=sha,
            files=files,
            config_tree=content_hash({**files, "marker": b""} if allow_removal else files),
            message=message,
            author="Test Author <author@example.test>",
            committed_at=datetime(2025, 1, 1, tzinfo=UTC),
            allow_removal=allow_removal,
        )
        return self._head

    def forget(self) -> None:
        """The next poll returns the head again, as a fresh ``GitSource``'s first poll does (a restart, a re-clone)."""
        self._seen_sha = self._seen_tree = None

    def fail_with(
        self, message: str = "could not read from remote repository", failure: type[SourceError] = FetchError
    ) -> None:
        self._failure = failure(message)

    def recover(self) -> None:
        self._failure = None

    def abort(self) -> None:
        self.aborts += 1

    def watch(self, callback: Callable[[], object]) -> None:
        """Nothing to watch: tests commit and poll."""

    def close(self) -> None:
        """Nothing to release."""

    def poll(self) -> Revision | None:
        self.polls += 1
        if self._failure is not None:
            raise self._failure
        head = self._head
        if head is None:
            raise BranchNotFoundError("branch 'main' not found")
        self._fetched = head.sha
        if head.sha == self._seen_sha:
            return None
        self._seen_sha = head.sha
        if head.config_tree == self._seen_tree:
            return None
        self._seen_tree = head.config_tree
        return head


def watch_status_while_saving(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> list[dict[str, Any]]:
    """The status a reader sees each time ``engine`` saves a last-good revision (a pass awaits that)."""
    seen: list[dict[str, Any]] = []
    real_save = SqliteStateStore.save_last_good

    def watching_save(store: SqliteStateStore, revision: Revision, *, source: SourceIdentity) -> None:
        seen.append(engine.status.to_json())
        real_save(store, revision, source=source)

    monkeypatch.setattr(SqliteStateStore, "save_last_good", watching_save)
    return seen
