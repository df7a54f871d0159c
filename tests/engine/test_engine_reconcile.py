"""One reconcile pass at a time: an in-memory source, a real SnapshotCache, a real SQLite store."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from gitrepo import GitRemote
from memsource import GATEWAY, EngineFactory, MemorySource, ack_all, line_of, mesh_files, watch_status_while_saving

import reconciler.loader
from reconciler.engine import reconcile as reconcile_module
from reconciler.engine.reconcile import Engine
from reconciler.engine.state import SourceIdentity, SqliteStateStore
from reconciler.engine.status import EngineStatus, Reason
from reconciler.errors import PathNotFoundError, SourceAborted
from reconciler.loader import LoadResult
from reconciler.sources.git import GitSource
from reconciler.translate.proxy import ProxyIdentity
from reconciler.translate.translator import proxy_shape
from reconciler.xds.cache import ProxyConnection, SnapshotCache

Run = Callable[..., Any]


def connect(cache: SnapshotCache, proxy: ProxyIdentity = GATEWAY) -> ProxyConnection:
    """A proxy 'connected' to the cache the way an ADS stream connects it (no gRPC)."""
    return cache.connect(proxy, on_change=lambda: None)


def gateway_engine(make_engine: EngineFactory, source: MemorySource) -> tuple[Engine, SnapshotCache]:
    """An engine over ``source`` and its cache, with the gateway connected to the cache."""
    cache = SnapshotCache()
    connect(cache)
    return make_engine(source, cache), cache


def served_version(cache: SnapshotCache, node_id: str = GATEWAY.node_id) -> str | None:
    status = cache.status(node_id)
    assert status is not None
    return status.snapshot_version


def test_a_connected_proxy_of_a_shape_validation_translated_is_sent_that_snapshot(
    source: MemorySource, make_engine: EngineFactory, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[LoadResult] = []

    def recording_load(*args: Any, **kwargs: Any) -> LoadResult:
        loads.append(reconciler.loader.load_files(*args, **kwargs))
        return loads[-1]

    monkeypatch.setattr(reconcile_module, "load_files", recording_load)
    cache = SnapshotCache()
    gateway = connect(cache)
    engine = make_engine(source, cache)
    source.commit(mesh_files(), "reviews 80/20")

    assert run(engine.reconcile(trigger="test")).ok is True
    (loaded,) = loads
    assert gateway.snapshot is loaded.translations[proxy_shape(loaded.config, GATEWAY)].snapshot


def test_a_valid_revision_is_published_to_connected_proxies_and_saved_as_last_good_once_they_acked_it(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Any
) -> None:
    cache = SnapshotCache()
    gateway = connect(cache)
    engine = make_engine(source, cache)
    revision = source.commit(mesh_files(v1=100, v2=0), "reviews on v1")

    assert run(engine.reconcile(trigger="test")).ok is True
    assert SqliteStateStore(state_dir).load_last_good() is None  # not before Envoy accepted it
    ack_all(gateway)

    status = engine.status.to_json()
    assert status["reason"] == Reason.APPLIED
    assert status["headSha"] == revision.sha
    assert status["served"]["sha"] == revision.sha
    assert status["served"]["message"] == "reviews on v1"
    assert status["lastError"] is None
    assert status["ready"] is True
    assert status["generation"] == 1
    assert served_version(cache) is not None
    stored = SqliteStateStore(state_dir).load_last_good()
    assert stored is not None
    assert stored.revision.sha == revision.sha
    assert dict(stored.revision.files) == dict(revision.files)
    assert stored.source == SourceIdentity(repo="mem://mesh", branch="main", path="mesh")


def test_a_new_valid_revision_replaces_the_served_snapshot(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine, cache = gateway_engine(make_engine, source)
    source.commit(mesh_files(v1=100, v2=0), "reviews on v1")
    run(engine.reconcile(trigger="test"))
    before = served_version(cache)

    canary = source.commit(mesh_files(v1=80, v2=20), "canary 20% to v2")
    assert run(engine.reconcile(trigger="test")).ok is True

    assert engine.status.served is not None
    assert engine.status.served.sha == canary.sha
    assert engine.status.generation == 2
    assert served_version(cache) not in (None, before)


def test_an_invalid_revision_is_refused_and_the_last_good_snapshot_keeps_serving(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Any
) -> None:
    cache = SnapshotCache()
    gateway = connect(cache)
    engine = make_engine(source, cache)
    good = source.commit(mesh_files(v1=80, v2=20), "canary")
    run(engine.reconcile(trigger="test"))
    ack_all(gateway)
    good_version = served_version(cache)

    bad_files = mesh_files(v1=80, v2=20, subset_v2="v3")
    bad = source.commit(bad_files, "typo in subset")
    assert run(engine.reconcile(trigger="test")).ok is False

    status = engine.status.to_json()
    assert status["reason"] == Reason.VALIDATION_FAILED
    assert status["headSha"] == bad.sha
    assert status["served"]["sha"] == good.sha
    assert status["generation"] == 1
    assert served_version(cache) == good_version
    error = status["lastError"]
    assert error["reason"] == "ValidationFailed"
    assert error["sha"] == bad.sha
    assert "mesh/virtualservice.yaml:" in error["message"]
    assert [(f["file"], f["line"], f["code"]) for f in error["findings"]] == [
        ("mesh/virtualservice.yaml", line_of(bad_files["virtualservice.yaml"], "subset: v3"), "IST0101")
    ]
    stored = SqliteStateStore(state_dir).load_last_good()
    assert stored is not None
    assert stored.revision.sha == good.sha


def test_a_refused_head_stays_reported_while_no_new_commit_arrives(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = make_engine(source, SnapshotCache())
    source.commit(mesh_files(), "good")
    run(engine.reconcile(trigger="test"))
    bad = source.commit(mesh_files(subset_v2="v3"), "bad")
    run(engine.reconcile(trigger="test"))

    assert run(engine.reconcile(trigger="poll")).ok is False

    assert engine.status.reason is Reason.VALIDATION_FAILED
    assert engine.status.last_error is not None
    assert engine.status.last_error.sha == bad.sha


def test_a_malformed_yaml_file_is_refused_with_its_file_and_line(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = make_engine(source, SnapshotCache())
    source.commit(mesh_files(), "good")
    run(engine.reconcile(trigger="test"))

    files = mesh_files()
    files["broken.yaml"] = b"kind: VirtualService\n  bad: [\n"
    source.commit(files, "broken yaml")
    assert run(engine.reconcile(trigger="test")).ok is False

    findings = engine.status.to_json()["lastError"]["findings"]
    assert [(f["file"], f["line"]) for f in findings] == [("mesh/broken.yaml", 2)]


def test_reverting_to_the_served_config_clears_the_error_and_keeps_the_snapshot(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Any
) -> None:
    cache = SnapshotCache()
    gateway = connect(cache)
    engine = make_engine(source, cache)
    source.commit(mesh_files(v1=80, v2=20), "canary")
    run(engine.reconcile(trigger="test"))
    ack_all(gateway)
    good_version = served_version(cache)
    source.commit(mesh_files(v1=80, v2=20, subset_v2="v3"), "typo")
    run(engine.reconcile(trigger="test"))

    revert = source.commit(mesh_files(v1=80, v2=20), 'Revert "typo"')
    assert run(engine.reconcile(trigger="test")).ok is True

    status = engine.status.to_json()
    assert status["lastError"] is None
    assert status["reason"] == Reason.UP_TO_DATE
    assert status["served"]["sha"] == revert.sha
    assert status["generation"] == 1  # nothing new to push: the proxies already run this config
    assert served_version(cache) == good_version
    stored = SqliteStateStore(state_dir).load_last_good()
    assert stored is not None
    assert stored.revision.sha == revert.sha


def test_a_valid_commit_after_a_refused_one_is_applied(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = make_engine(source, SnapshotCache())
    source.commit(mesh_files(v1=100, v2=0), "v1")
    run(engine.reconcile(trigger="test"))
    source.commit(mesh_files(subset_v2="v3"), "typo")
    run(engine.reconcile(trigger="test"))

    fixed = source.commit(mesh_files(v1=50, v2=50), "fix the subset, 50/50")
    assert run(engine.reconcile(trigger="test")).ok is True

    assert engine.status.reason is Reason.APPLIED
    assert engine.status.last_error is None
    assert engine.status.served is not None
    assert engine.status.served.sha == fixed.sha


def test_a_fetch_failure_keeps_serving_and_is_reported_as_fetch_failed_until_git_answers_again(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine, cache = gateway_engine(make_engine, source)
    good = source.commit(mesh_files(), "good")
    run(engine.reconcile(trigger="test"))
    version = served_version(cache)

    source.fail_with("fatal: '/srv/git/mesh.git' does not appear to be a git repository")
    assert run(engine.reconcile(trigger="poll")).ok is False

    status = engine.status.to_json()
    assert status["reason"] == Reason.FETCH_FAILED
    assert status["lastError"]["reason"] == "FetchFailed"
    assert "does not appear to be a git repository" in status["lastError"]["message"]
    assert status["headSha"] == good.sha
    assert status["served"]["sha"] == good.sha
    assert status["ready"] is True
    assert served_version(cache) == version

    source.recover()
    assert run(engine.reconcile(trigger="poll")).ok is True
    assert engine.status.reason is Reason.UP_TO_DATE
    assert engine.status.last_error is None


def test_a_pass_cut_short_by_shutdown_is_not_reported_as_a_failure(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = make_engine(source, SnapshotCache())
    source.commit(mesh_files(), "good")
    run(engine.reconcile(trigger="test"))
    before = engine.status.to_json()

    source.fail_with("git source was aborted (shutting down)", failure=SourceAborted)
    with structlog.testing.capture_logs() as logs:
        assert run(engine.reconcile(trigger="poll")).ok is False

    after = engine.status.to_json()
    assert (after["reason"], after["lastError"]) == (before["reason"], None)
    assert [entry["event"] for entry in logs if entry["event"].startswith("engine.")] == ["engine.pass_aborted"]


def test_a_first_revision_that_is_invalid_serves_nothing_and_is_not_ready(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine, cache = gateway_engine(make_engine, source)
    source.commit(mesh_files(subset_v2="v3"), "broken from the start")

    assert run(engine.reconcile(trigger="test")).ok is False

    status = engine.status.to_json()
    assert status["ready"] is False
    assert status["served"] is None
    assert "nothing" in status["lastError"]["message"]
    assert served_version(cache) is None


def test_a_generation_is_synced_only_once_every_connected_proxy_acked_it(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    cache = SnapshotCache()
    first = connect(cache)
    second = connect(cache, ProxyIdentity(node_id="ingress-2", labels=GATEWAY.labels, role=GATEWAY.role))
    engine = make_engine(source, cache)
    source.commit(mesh_files(), "canary")
    run(engine.reconcile(trigger="test"))

    async def settle() -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    assert first.snapshot is not None
    assert second.snapshot is not None
    first.record_snapshot_acked(first.snapshot.version)
    run(settle())
    assert engine.status.synced_at is None

    second.record_snapshot_acked(second.snapshot.version)

    status = engine.status.to_json()
    assert status["synced"] is True
    assert status["syncedAt"] is not None


def test_with_no_proxy_connected_nothing_is_synced(source: MemorySource, make_engine: EngineFactory, run: Run) -> None:
    engine = make_engine(source, SnapshotCache())
    source.commit(mesh_files(), "canary")

    assert run(engine.reconcile(trigger="test")).ok is True

    status = engine.status.to_json()
    assert status["served"] is not None
    assert (status["synced"], status["syncedAt"]) == (False, None)


def test_a_proxy_joining_after_sync_unsyncs_until_it_acks_but_keeps_the_sync_time(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    cache = SnapshotCache()
    first = connect(cache)
    engine = make_engine(source, cache)
    source.commit(mesh_files(), "canary")
    run(engine.reconcile(trigger="test"))
    assert first.snapshot is not None
    first.record_snapshot_acked(first.snapshot.version)
    synced_at = engine.status.to_json()["syncedAt"]

    late = connect(cache, ProxyIdentity(node_id="ingress-2", labels=GATEWAY.labels, role=GATEWAY.role))

    assert engine.status.to_json()["synced"] is False
    assert late.snapshot is not None
    late.record_snapshot_acked(late.snapshot.version)
    status = engine.status.to_json()
    assert (status["synced"], status["syncedAt"]) == (True, synced_at)


def test_a_crash_while_applying_a_revision_is_reported_and_the_last_good_keeps_serving(
    source: MemorySource, make_engine: EngineFactory, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, cache = gateway_engine(make_engine, source)
    good = source.commit(mesh_files(v1=100, v2=0), "v1")
    run(engine.reconcile(trigger="test"))
    version = served_version(cache)

    def crash(*_: object, **__: object) -> None:
        raise RuntimeError("a bug in the loader")

    monkeypatch.setattr("reconciler.engine.reconcile.load_files", crash)
    crashing = source.commit(mesh_files(v1=50, v2=50), "50/50")

    assert run(engine.reconcile(trigger="test")).ok is False

    status = engine.status.to_json()
    assert status["reason"] == Reason.TRANSLATION_FAILED
    assert status["lastError"]["sha"] == crashing.sha
    assert "a bug in the loader" in status["lastError"]["message"]
    assert status["served"]["sha"] == good.sha
    assert served_version(cache) == version


def test_validation_runs_off_the_event_loop_and_status_shows_the_previous_head_until_the_pass_ends(
    source: MemorySource, make_engine: EngineFactory, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(source, SnapshotCache())
    first = source.commit(mesh_files(v1=100, v2=0), "v1")
    run(engine.reconcile(trigger="test"))
    real_load = reconcile_module.load_files
    entered, release = threading.Event(), threading.Event()

    def slow_load(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(timeout=10)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(reconcile_module, "load_files", slow_load)
    second = source.commit(mesh_files(v1=50, v2=50), "50/50")

    async def scenario() -> tuple[dict[str, Any], bool]:
        task = asyncio.create_task(engine.reconcile(trigger="test"))
        async with asyncio.timeout(5):  # the loop keeps running while the worker thread validates
            while not entered.is_set():
                await asyncio.sleep(0.01)
        during = engine.status.to_json()
        release.set()
        return during, (await task).ok

    during, ok = run(scenario())

    assert ok is True
    assert during["reason"] == Reason.PROGRESSING
    assert during["headSha"] == first.sha
    assert during["served"]["sha"] == first.sha
    assert engine.status.head_sha == second.sha
    assert engine.status.served is not None
    assert engine.status.served.sha == second.sha


def test_the_new_head_shows_in_status_together_with_its_outcome(
    source: MemorySource, make_engine: EngineFactory, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(source, SnapshotCache())
    source.commit(mesh_files(v1=100, v2=0), "v1")
    run(engine.reconcile(trigger="test"))
    seen_while_saving = watch_status_while_saving(monkeypatch, engine)
    second = source.commit(mesh_files(v1=50, v2=50), "50/50")

    assert run(engine.reconcile(trigger="test")).ok is True

    assert [(s["headSha"], s["served"]["sha"], s["reason"]) for s in seen_while_saving] == [
        (second.sha, second.sha, "Applied")
    ]


def test_status_lists_what_the_served_config_asks_for_but_envoy_is_not_told(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine, _ = gateway_engine(make_engine, source)
    files = mesh_files(v1=100, v2=0)
    files["virtualservice.yaml"] = files["virtualservice.yaml"].replace(
        b"  http:\n",
        b"  tcp:\n  - route:\n    - destination: {host: reviews.example.com, port: {number: 80}}\n  http:\n",
    )
    source.commit(files, "reviews: add a tcp route")

    assert run(engine.reconcile(trigger="test")).ok is True

    warnings = engine.status.to_json()["warnings"]
    not_translated = [w for w in warnings if w["code"] == "RC0202"]
    assert not_translated, warnings
    assert not_translated[0]["file"] == "mesh/virtualservice.yaml"
    assert not_translated[0]["path"].startswith("spec.tcp[0]")


@pytest.mark.parametrize("cluster_domain", [None, "cluster.local"], ids=["no cluster", "a cluster configured"])
def test_a_route_to_a_kubernetes_service_is_warned_about_only_when_no_cluster_is_configured(
    source: MemorySource, make_engine: EngineFactory, run: Run, cluster_domain: str | None
) -> None:
    cache = SnapshotCache()
    connect(cache)
    engine = make_engine(source, cache, cluster_domain=cluster_domain)
    files = mesh_files(v1=100, v2=0)
    files["virtualservice.yaml"] = files["virtualservice.yaml"].replace(
        b"  - name: default\n", b"  - name: default\n    mirror: {host: ratings, port: {number: 9080}}\n"
    )
    source.commit(files, "reviews: mirror to ratings, a Kubernetes Service")

    assert run(engine.reconcile(trigger="test")).ok is True

    missing = [w for w in engine.status.to_json()["warnings"] if "ratings.default.svc.cluster.local" in w["message"]]
    # Without a cluster the host has no endpoints anywhere; with one, the Service's arrive from the cluster.
    assert bool(missing) is (cluster_domain is None)


def test_a_clean_config_has_no_warnings_in_status(source: MemorySource, make_engine: EngineFactory, run: Run) -> None:
    engine, _ = gateway_engine(make_engine, source)
    source.commit(mesh_files(v1=100, v2=0), "reviews on v1")

    run(engine.reconcile(trigger="test"))

    assert engine.status.to_json()["warnings"] == []


def test_a_head_without_the_config_directory_is_refused_not_reported_as_a_fetch_failure(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine, cache = gateway_engine(make_engine, source)
    good = source.commit(mesh_files(), "good")
    run(engine.reconcile(trigger="test"))
    version = served_version(cache)
    source.fail_with("config path 'mesh' is not a directory at commit 0123456789ab", failure=PathNotFoundError)

    assert run(engine.reconcile(trigger="poll")).ok is False

    status = engine.status.to_json()
    assert status["reason"] == Reason.PATH_NOT_FOUND == "PathNotFound"
    assert status["lastError"]["reason"] == "PathNotFound"
    assert "is not a directory" in status["lastError"]["message"]
    assert f"still serving revision {good.sha[:12]}" in status["lastError"]["message"]
    assert status["served"]["sha"] == good.sha
    assert status["ready"] is True
    assert served_version(cache) == version


@pytest.mark.git
def test_a_commit_that_removes_the_config_directory_is_refused_with_its_sha_and_a_revert_is_served_again(
    tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    remote = GitRemote.create(tmp_path / "upstream")
    files = {f"mesh/{name}": content.decode() for name, content in mesh_files().items()}
    good = remote.commit(files, "mesh config")
    with GitSource(url=remote.url, branch="main", path="mesh", state_dir=tmp_path / "state") as git_source:
        engine = Engine(
            source=git_source,
            cache=SnapshotCache(),
            store=SqliteStateStore(tmp_path / "state"),
            status=EngineStatus(repo=remote.url, branch="main", path="mesh"),
            clock=lambda: datetime(2025, 6, 1, tzinfo=UTC),
            file_prefix="mesh/",
        )
        assert run(engine.reconcile(trigger="start")).ok is True
        removed = remote.commit(dict.fromkeys(files), "move the config elsewhere")

        assert run(engine.reconcile(trigger="poll")).ok is False

        assert engine.status.reason is Reason.PATH_NOT_FOUND
        assert engine.status.last_error is not None
        assert engine.status.last_error.sha == removed
        assert engine.status.head_sha == removed
        assert engine.status.served is not None
        assert engine.status.served.sha == good

        remote.revert(removed)
        assert run(engine.reconcile(trigger="poll")).ok is True
        assert engine.status.last_error is None


def test_a_revision_envoy_would_reject_is_refused_at_its_file_and_line_before_any_proxy_sees_it(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine, cache = gateway_engine(make_engine, source)
    good = source.commit(mesh_files(), "canary")
    run(engine.reconcile(trigger="test"))
    good_version = served_version(cache)
    files = mesh_files()
    # A line break in a header value: only Envoy's own constraints forbid it; the finding points at its rule.
    files["virtualservice.yaml"] = files["virtualservice.yaml"].replace(
        b"    timeout: 5s\n", b'    timeout: 5s\n    headers: {request: {set: {x-note: "two\\nlines"}}}\n', 1
    )
    assert files["virtualservice.yaml"] != mesh_files()["virtualservice.yaml"]
    source.commit(files, "header with a line break")

    assert run(engine.reconcile(trigger="test")).ok is False

    status = engine.status.to_json()
    assert status["reason"] == Reason.VALIDATION_FAILED
    assert status["served"]["sha"] == good.sha
    assert served_version(cache) == good_version
    assert [(f["file"], f["line"], f["code"]) for f in status["lastError"]["findings"] if f["severity"] == "error"] == [
        ("mesh/virtualservice.yaml", line_of(files["virtualservice.yaml"], "name: default"), "RC0203")
    ]
