"""Steady traffic through a gateway in a background thread, tallied, for tests that break things meanwhile."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from reconciler.harness.traffic import send_requests

__all__ = ["Traffic", "acked_versions"]


class Traffic(threading.Thread):
    """Requests through the gateway in bursts until stopped; tallies everything that came back."""

    def __init__(self, port: int, *, authority: str, bursts: int = 6000) -> None:
        super().__init__(name="e2e-traffic", daemon=True)
        self._port = port
        self._bursts = bursts
        self._authority = authority
        self._stop_requested = threading.Event()
        self.by_status: Counter[int] = Counter()
        self.by_version: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.local_replies: Counter[str] = Counter()

    def run(self) -> None:
        # Bounded: by default at most ~10 minutes of bursts even if nobody stops it (test timeouts are far shorter).
        for _ in range(self._bursts):
            if self._stop_requested.is_set():
                return
            result = send_requests(port=self._port, count=50, authority=self._authority, workers=2, deadline=10)
            self.by_status.update(result.by_status)
            self.by_version.update(result.by_version)
            self.errors.update(result.errors)
            self.local_replies.update(result.local_replies)

    def stop(self) -> None:
        self._stop_requested.set()
        self.join(timeout=30)

    def wait_for(self, responses: int) -> None:
        """Until at least ``responses`` came back in all (or the thread ended)."""
        while self.responses < responses and self.is_alive():
            self.join(timeout=0.1)

    @property
    def responses(self) -> int:
        return sum(self.by_status.values())

    def share(self, version: str) -> float:
        return 100.0 * self.by_version[version] / self.responses


def acked_versions(status: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    """What ``node_id`` has ACKed: its snapshot version and each type's version; None if not (yet) synced."""
    proxy = next((p for p in status["proxies"] if p["nodeId"] == node_id), None)
    if proxy is None or any(t["state"] != "SYNCED" for t in proxy["types"].values()):
        return None
    return {"snapshot": proxy["ackedSnapshotVersion"], **{name: t["acked"] for name, t in proxy["types"].items()}}
