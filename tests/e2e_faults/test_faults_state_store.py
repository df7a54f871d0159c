"""The state store locked, corrupt, or on a full disk while the daemon serves a real Envoy under traffic.

The store is a cache (``engine/state.py``): a save that fails is logged (``engine.state_save_failed``
with SQLite's or the OS's words) and serving goes on; the daemon neither exits nor restarts, and the
store recovers by itself once the fault is gone (the next save stores the revision, so a restart
restores it). The full disk is a real one: a 4 MiB tmpfs mounted for the test (root only; skipped
otherwise) holding the whole state directory, the git clone included.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import HOST, Daemon, Mesh
from small_disk import fill, small_tmpfs
from steady_traffic import Traffic
from waiting import wait_for

from reconciler.harness.envoy import EnvoyProcess

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]


def save_failures(daemon: Daemon) -> list[dict[str, Any]]:
    entries = []
    for line in daemon.log_since_start().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "engine.state_save_failed":
                entries.append(entry)
    return entries


def assert_no_request_failed(traffic: Traffic) -> None:
    assert traffic.responses > 0
    assert traffic.errors == {}
    assert traffic.local_replies == {}
    assert set(traffic.by_status) == {200}


def restart_restores(daemon: Daemon, sha: str) -> None:
    """kill -9 and start again: the stored revision is ``sha`` (served before git is even asked)."""
    daemon.kill9()
    daemon.start()
    restored = [line for line in daemon.log_since_start().splitlines() if '"engine.restored"' in line]
    assert restored, daemon.log_tail()
    assert json.loads(restored[0])["sha"] == sha[:12]


def test_a_locked_store_fails_the_save_with_sqlites_words_and_serving_goes_on_until_the_lock_is_gone(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess]
) -> None:
    daemon, _ = served
    holder = sqlite3.connect(daemon.state_dir / "state.sqlite3", isolation_level=None)
    traffic = Traffic(mesh.gateway_port, authority=HOST)
    traffic.start()
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process owns the database file
        locked = mesh.push_weights(80, 20)
        daemon.sync()
        daemon.wait_synced(locked, proxies=1)  # served and ACKed: the store is not in the way
        [failure] = wait_for("the save to give up on the lock", lambda: save_failures(daemon), timeout=60)
        assert failure["sha"] == locked[:12]
        assert "database is locked" in failure["error"]
        assert daemon.running
        holder.execute("ROLLBACK")

        unlocked = mesh.push_weights(50, 50)
        daemon.sync()
        daemon.wait_synced(unlocked, proxies=1)
        traffic.wait_for(traffic.responses + 200)
    finally:
        holder.close()
        traffic.stop()

    assert_no_request_failed(traffic)
    wait_for("the unlocked save", lambda: _stored_sha(daemon) == unlocked)
    restart_restores(daemon, unlocked)


def _stored_sha(daemon: Daemon) -> str | None:
    with contextlib.closing(sqlite3.connect(daemon.state_dir / "state.sqlite3", timeout=1)) as db:
        row = db.execute("SELECT sha FROM last_good").fetchone()
    return str(row[0]) if row else None


def test_a_store_corrupted_while_running_fails_one_save_then_is_moved_aside_and_replaced(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess]
) -> None:
    daemon, _ = served
    store = daemon.state_dir / "state.sqlite3"
    traffic = Traffic(mesh.gateway_port, authority=HOST)
    traffic.start()
    try:
        store.write_bytes(b"\x00garbage, not a database\n" * 200)
        first = mesh.push_weights(80, 20)
        daemon.sync()
        daemon.wait_synced(first, proxies=1)
        [failure] = wait_for("the save into the corrupt store to fail", lambda: save_failures(daemon))
        # Ours, not SQLite's wording (which depends on where the garbage lands): which save failed, and where.
        assert failure["error"].startswith(f"cannot save revision {first[:12]} to {store}")

        second = mesh.push_weights(50, 50)
        daemon.sync()
        daemon.wait_synced(second, proxies=1)
        wait_for("the store to be replaced", lambda: list(daemon.state_dir.glob("state.sqlite3.corrupt-*")))
        wait_for("the save into the fresh store", lambda: _stored_sha(daemon) == second)
        traffic.wait_for(traffic.responses + 200)
    finally:
        traffic.stop()

    assert len(save_failures(daemon)) == 1
    assert_no_request_failed(traffic)
    restart_restores(daemon, second)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small-disk", size="4m") as mountpoint:
        yield mountpoint


def test_a_full_disk_under_the_state_dir_stops_fetches_and_saves_with_a_clear_error_while_serving_goes_on(
    mesh: Mesh,
    daemons: Callable[..., Daemon],
    gateway: Callable[..., EnvoyProcess],
    small_disk: Path,
) -> None:
    daemon = daemons(repo=mesh.repo.url, state_dir=small_disk / "state").start()
    gateway(daemon, mesh)
    daemon.wait_synced(mesh.initial_sha, proxies=1)
    traffic = Traffic(mesh.gateway_port, authority=HOST)
    traffic.start()
    try:
        filler = fill(small_disk)
        blocked = mesh.push_weights(80, 20)
        daemon.sync()
        status = daemon.wait_status("the fetch to fail", lambda s: s["reason"] == "FetchFailed", timeout=60)
        assert "No space left on device" in status["lastError"]["message"]
        assert status["served"]["sha"] == mesh.initial_sha
        assert status["ready"] is True
        assert daemon.running

        filler.unlink()
        daemon.sync()  # recovery needs no restart: the next pass fetches and serves it
        daemon.wait_synced(blocked, proxies=1, timeout=60)
        traffic.wait_for(traffic.responses + 200)
    finally:
        traffic.stop()

    assert_no_request_failed(traffic)
    assert traffic.by_version["v2"] > 0  # the commit made while the disk was full did arrive
    wait_for("the save once there is room", lambda: _stored_sha(daemon) == blocked)
    restart_restores(daemon, blocked)
