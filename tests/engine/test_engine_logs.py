"""What the engine's log lines record: a refused commit's findings, and when each revision reached every proxy."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from memsource import GATEWAY, EngineFactory, MemorySource, line_of, mesh_files
from structlog.testing import capture_logs

from reconciler.xds.cache import SnapshotCache

Run = Callable[..., Any]


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def test_a_refused_commit_logs_every_error_finding_with_file_line_and_code(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = make_engine(source, SnapshotCache())
    source.commit(mesh_files(), "good")
    run(engine.reconcile(trigger="test"))
    files = mesh_files(subset_v2="v3")
    files["broken.yaml"] = b"kind: VirtualService\n  bad: [\n"
    bad = source.commit(files, "typo in subset, and a broken file")

    with capture_logs() as logs:
        run(engine.reconcile(trigger="test"))

    [failed] = events(logs, "engine.pass_failed")
    assert failed["sha"] == bad.sha
    assert failed["reason"] == "ValidationFailed"
    located = sorted(entry.split(" ", 2)[:2] for entry in failed["findings"])
    assert located == [
        ["mesh/broken.yaml:2", "RC0001"],
        [f"mesh/virtualservice.yaml:{line_of(files['virtualservice.yaml'], 'subset: v3')}", "IST0101"],
    ]
    assert all(entry.split(" ", 2)[2] for entry in failed["findings"]), "each entry ends with the finding's message"


def test_a_commit_with_very_many_errors_logs_the_first_twenty_and_counts_the_rest(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = make_engine(source, SnapshotCache())
    files = mesh_files()
    files.update({f"broken-{number:02}.yaml": b"kind: VirtualService\n  bad: [\n" for number in range(25)})
    source.commit(files, "25 broken files")

    with capture_logs() as logs:
        run(engine.reconcile(trigger="test"))

    [failed] = events(logs, "engine.pass_failed")
    assert len(failed["findings"]) == 21
    assert all(re.match(r"mesh/broken-\d\d\.yaml:2 RC0001 \S", entry) for entry in failed["findings"][:20])
    assert failed["findings"][20] == "+5 more"


def test_a_fetch_failure_logs_an_empty_findings_list(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = make_engine(source, SnapshotCache())
    source.fail_with("could not read from remote repository")

    with capture_logs() as logs:
        run(engine.reconcile(trigger="test"))

    [failed] = events(logs, "engine.pass_failed")
    assert (failed["reason"], failed["findings"]) == ("FetchFailed", [])


def test_each_revision_logs_its_sha_when_every_proxy_has_acked_it(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    cache = SnapshotCache()
    connection = cache.connect(GATEWAY, on_change=lambda: None)
    engine = make_engine(source, cache)
    revisions = []

    with capture_logs() as logs:
        for v1, v2 in ((80, 20), (50, 50)):
            revisions.append(source.commit(mesh_files(v1=v1, v2=v2), f"reviews: {v1}/{v2}"))
            run(engine.reconcile(trigger="test"))
            assert connection.snapshot is not None
            connection.record_snapshot_acked(connection.snapshot.version)

    assert [(entry["sha"], entry["generation"]) for entry in events(logs, "engine.synced")] == [
        (revisions[0].short_sha, 1),
        (revisions[1].short_sha, 2),
    ]


def test_each_pass_that_applies_a_commit_logs_where_its_time_went_at_debug_level(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = make_engine(source, SnapshotCache())
    commit = source.commit(mesh_files(), "good")

    with capture_logs() as logs:
        run(engine.reconcile(trigger="test"))

    [timings] = events(logs, "engine.pass_timings")
    assert timings["log_level"] == "debug"
    assert timings["sha"] == commit.sha[:12]
    phases = {key: value for key, value in timings.items() if key.endswith("_ms")}
    assert list(phases) == ["fetch_ms", "validate_ms", "translate_ms", "publish_ms"]
    assert all(isinstance(value, float) and value >= 0 for value in phases.values())
