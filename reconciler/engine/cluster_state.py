"""Rollout state in the cluster, where every replica reads it: a new leader goes on with the step.

With leader election (``--leader-elect``) a rollout must outlive its replica, not only its process:
the replica that takes the Lease after a ``kill -9`` has its own state directory and has never seen
the rollout. :class:`ClusterRolloutStore` is the :class:`~reconciler.engine.state.RolloutStore` of
that mode: the same rows as SQLite's (each rollout's state, the weights it serves, its config tree,
its decisions) as JSON in one ConfigMap beside the Lease (``<lease>-rollouts``, key
``rollouts.json``).

Why a ConfigMap: it is readable with ``kubectl get -o yaml``, needs no CRD installed, and its
1 MiB limit is far above what is kept (:data:`ROLLOUTS_KEPT` rollouts, :data:`DECISIONS_KEPT`
decisions each, trimmed to :data:`MAX_BYTES`). The Lease's annotations were the alternative: they
are renewed every two seconds by the leader, so every rollout save would race the renewals, and
annotations are capped at 256 KiB together.

Only the leader writes: a replica that lost the Lease refuses to save (:class:`StateError`), and
every write carries the ``resourceVersion`` last read or written. Reads come from memory,
filled by :meth:`ClusterRolloutStore.load` when a replica becomes the leader; writes happen on the
rollout controller's writer thread, which waits for the request made on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import structlog

from reconciler.engine.state import StoredDecision, StoredRollout
from reconciler.errors import KubeError, StateError
from reconciler.kube.lease import ObjectApi
from reconciler.rollout.codec import (
    record_from_json,
    record_to_json,
    state_from_json,
    state_to_json,
    weights_from_json,
    weights_to_json,
)

__all__ = ["DATA_KEY", "DECISIONS_KEPT", "MAX_BYTES", "ROLLOUTS_KEPT", "ClusterRolloutStore", "configmap_path"]

log = structlog.get_logger("reconciler.state")

#: The ConfigMap's one key.
DATA_KEY = "rollouts.json"
#: Rollouts kept (the newest); one per policy and config tree is what a new leader needs.
ROLLOUTS_KEPT = 20
#: Decisions kept per rollout: status shows the latest; SQLite keeps them all.
DECISIONS_KEPT = 20
#: Under the API server's 1 MiB object limit with room for metadata: oldest decisions go first, then rollouts.
MAX_BYTES = 768 * 1024


def configmap_path(namespace: str, name: str = "") -> str:
    """The ConfigMap collection of ``namespace``, or one ConfigMap in it."""
    collection = f"/api/v1/namespaces/{namespace}/configmaps"
    return f"{collection}/{name}" if name else collection


@dataclass(slots=True)
class _Entry:
    rollout: StoredRollout
    decisions: list[StoredDecision] = field(default_factory=list)


class ClusterRolloutStore:
    """A :class:`~reconciler.engine.state.RolloutStore` in the ConfigMap ``namespace/name``; :meth:`load` first."""

    def __init__(
        self,
        *,
        api: ObjectApi,
        namespace: str,
        name: str,
        loop: asyncio.AbstractEventLoop,
        leading: Callable[[], bool],
        timeout: float,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self._loop = loop
        self._leading = leading
        self._timeout = timeout
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}  # oldest first
        self._version: str | None = None  # None: not read yet, or no ConfigMap

    @property
    def where(self) -> str:
        return f"ConfigMap {self._namespace}/{self._name}"

    async def load(self) -> None:
        """Read the ConfigMap (a new leader: another replica may have moved the rollouts since this one started).

        Raises StateError when it cannot be read or decoded; the store is then empty.
        """
        with self._lock:
            self._entries, self._version = {}, None
        try:
            found = await self._api.get(configmap_path(self._namespace, self._name))
        except KubeError as error:
            if error.status == 404:
                return
            raise StateError(f"cannot read {self.where}: {error}") from error
        metadata = found.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
        data = found.get("data")
        text = data.get(DATA_KEY) if isinstance(data, Mapping) else None
        with self._lock:
            self._version = version if isinstance(version, str) else ""
            if isinstance(text, str):
                try:
                    self._entries = _decode(text)
                except (ValueError, KeyError, TypeError, AttributeError) as error:
                    raise StateError(f"cannot decode the rollouts in {self.where}: {error!r}") from error

    def load_rollouts(self) -> tuple[StoredRollout, ...]:
        with self._lock:
            latest: dict[tuple[str, str], StoredRollout] = {}
            for entry in self._entries.values():
                latest[(entry.rollout.policy, entry.rollout.config_tree)] = entry.rollout
            return tuple(latest.values())

    def load_decisions(self, key: str, *, last: int) -> tuple[StoredDecision, ...]:
        with self._lock:
            entry = self._entries.get(key)
            return tuple(entry.decisions[-last:]) if entry is not None and last > 0 else ()

    def save_rollout(self, rollout: StoredRollout, *, decision: StoredDecision | None = None) -> None:
        """Keep ``rollout`` and write the ConfigMap; blocks until written (call it off the event loop)."""
        if not self._leading():
            raise StateError(f"not the leader: {self.where} is not written")
        with self._lock:
            entry = self._entries.get(rollout.key)
            if entry is None:
                entry = self._entries[rollout.key] = _Entry(rollout)
            entry.rollout = rollout
            if decision is not None:
                entry.decisions = [*entry.decisions, decision][-DECISIONS_KEPT:]
            text = _encode(self._entries)
        written = asyncio.run_coroutine_threadsafe(self._write(text), self._loop)
        try:
            written.result(timeout=self._timeout)
        except FutureTimeout:
            written.cancel()
            raise StateError(f"cannot write {self.where}: no answer within {self._timeout:g}s") from None
        except KubeError as error:
            raise StateError(f"cannot write {self.where}: {error}") from error

    async def _write(self, text: str) -> None:
        for attempt in range(2):
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": self._name, "namespace": self._namespace},
                "data": {DATA_KEY: text},
            }
            try:
                if self._version is None:
                    written = await self._api.create(configmap_path(self._namespace), body)
                else:
                    body["metadata"]["resourceVersion"] = self._version
                    written = await self._api.replace(configmap_path(self._namespace, self._name), body)
            except KubeError as error:
                if error.status != 409 or attempt:
                    raise
                # Written since this replica read it (by a leader before it): the leader's view is the newest.
                found = await self._api.get(configmap_path(self._namespace, self._name))
                metadata = found.get("metadata")
                self._version = str(metadata.get("resourceVersion", "")) if isinstance(metadata, Mapping) else ""
                continue
            metadata = written.get("metadata")
            self._version = str(metadata.get("resourceVersion", "")) if isinstance(metadata, Mapping) else ""
            return


def _encode(entries: dict[str, _Entry]) -> str:
    """The newest :data:`ROLLOUTS_KEPT` rollouts as JSON under :data:`MAX_BYTES` (``entries`` trimmed to match)."""
    for key in list(entries)[:-ROLLOUTS_KEPT]:
        del entries[key]
    while True:
        text = json.dumps({"rollouts": [_entry_json(entry) for entry in entries.values()]}, separators=(",", ":"))
        if len(text.encode()) <= MAX_BYTES or not entries:
            return text
        oldest = next(iter(entries.values()))
        if oldest.decisions:
            oldest.decisions = oldest.decisions[len(oldest.decisions) // 2 + 1 :]
        else:
            del entries[oldest.rollout.key]


def _entry_json(entry: _Entry) -> dict[str, Any]:
    rollout = entry.rollout
    return {
        "key": rollout.key,
        "policy": rollout.policy,
        "sha": rollout.sha,
        "configTree": rollout.config_tree,
        "state": state_to_json(rollout.state),
        "weights": weights_to_json(rollout.weights),
        "decisions": [
            {"record": record_to_json(d.record), "generation": d.generation, "ackedAt": d.acked_at}
            for d in entry.decisions
        ],
    }


def _decode(text: str) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for item in json.loads(text)["rollouts"][-ROLLOUTS_KEPT:]:
        rollout = StoredRollout(
            key=str(item["key"]),
            policy=str(item["policy"]),
            sha=str(item["sha"]),
            config_tree=str(item["configTree"]),
            state=state_from_json(item["state"]),
            weights=weights_from_json(item["weights"]),
        )
        decisions = [
            StoredDecision(
                record=record_from_json(d["record"]),
                generation=int(d["generation"]),
                acked_at=float(d["ackedAt"]) if d["ackedAt"] is not None else None,
            )
            for d in item["decisions"][-DECISIONS_KEPT:]
        ]
        entries[rollout.key] = _Entry(rollout, decisions)
    return entries
