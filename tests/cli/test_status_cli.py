"""``reconciler status``: rendering and the exit code, over status documents the engine really writes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from memsource import GATEWAY, EngineFactory, MemorySource, ack_all, line_of, mesh_files, push_all

from reconciler.api.document import OriginDocument, StatusDocument
from reconciler.cli.exitcode import ExitCode
from reconciler.cli.main import main
from reconciler.cli.status import WaitOutcome, is_healthy, render_status, wait_outcome
from reconciler.engine.reconcile import Engine
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.translate.snapshot import CLUSTER, ROUTE
from reconciler.xds.cache import ProxyConnection, SnapshotCache

Run = Callable[..., Any]
GRACE = 30.0


def document(engine: Engine, cache: SnapshotCache) -> StatusDocument:
    """What GET /api/v1/status returns, as ``reconciler status`` reads it."""
    body = StatusDocument.of(engine.status.document(), cache.statuses()).to_json()
    return StatusDocument.from_json(json.loads(json.dumps(body)))


@pytest.fixture
def serving(make_engine: EngineFactory, run: Run) -> tuple[Engine, SnapshotCache, ProxyConnection, MemorySource]:
    """An engine serving a canary to one connected gateway that has not answered yet."""
    source = MemorySource()
    # The engine's test clock starts at this instant; the proxy connects then, before anything is served.
    cache = SnapshotCache(clock=lambda: datetime(2025, 6, 1, 12, 0, tzinfo=UTC).timestamp())
    connection = cache.connect(GATEWAY, on_change=lambda: None)
    engine = make_engine(source, cache)
    source.commit(mesh_files(v1=80, v2=20), "reviews: canary 20% to v2")
    run(engine.reconcile(trigger="test"))
    return engine, cache, connection, source


def now_after(status: StatusDocument, seconds: float) -> datetime:
    assert status.engine.served_since is not None
    return status.engine.served_since + timedelta(seconds=seconds)


def table(text: str, *header: str) -> list[list[str]]:
    """The cells of each row of the table whose header starts with the ``header`` columns; cells are 3+ spaces apart."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.split()[: len(header)] == list(header))
    rows = []
    for line in lines[start:]:
        if not line:
            break
        rows.append([cell for cell in line.split("   ") if cell.strip()])
    return [[cell.strip() for cell in row] for row in rows]


def test_a_synced_proxy_shows_synced_for_every_type_and_the_daemon_is_healthy(serving: Any) -> None:
    engine, cache, connection, _ = serving
    ack_all(connection)

    status = document(engine, cache)
    now = now_after(status, 5)
    text = render_status(status, now=now)

    connected = status.proxies[0].connected_since
    assert status.engine.served is not None
    assert f"SERVED   {status.engine.served.sha[:12]}  reviews: canary 20% to v2" in text
    # Nothing is out of sync, so the proxy table ends the output (the end-to-end tests read its last line).
    header, row = text.splitlines()[-2:]
    assert header.split() == ["NAME", "CDS", "LDS", "EDS", "RDS", "VERSION", "DRIFT", "CONNECTED", "LABELS"]
    assert row.split() == [
        "ingress-1",
        "SYNCED",
        "SYNCED",
        "SYNCED",
        "SYNCED",
        status.proxies[0].acked_snapshot_version[:12],
        "-",  # no drift check has run
        f"{int((now - connected).total_seconds())}s",
        "istio=ingressgateway",
    ]
    assert is_healthy(status, now=now, grace_seconds=GRACE) is True


def test_labels_are_shown_sorted_as_key_value_pairs_and_none_when_a_proxy_has_no_labels(serving: Any) -> None:
    engine, cache, connection, _ = serving
    ack_all(connection)
    cache.connect(
        ProxyIdentity(node_id="reviews-v1", labels={"version": "v1", "app": "reviews"}, role=ProxyRole.SIDECAR),
        on_change=lambda: None,
    )
    cache.connect(ProxyIdentity(node_id="bare", labels={}, role=ProxyRole.SIDECAR), on_change=lambda: None)

    status = document(engine, cache)
    rows = table(render_status(status, now=now_after(status, 1)), "NAME", "CDS")

    assert {row[0]: row[-1] for row in rows[1:]} == {
        "bare": "<none>",
        "ingress-1": "istio=ingressgateway",
        "reviews-v1": "app=reviews,version=v1",
    }


def test_a_type_sent_but_not_yet_acked_is_listed_below_with_the_sent_and_the_acked_version(
    serving: Any, run: Run
) -> None:
    engine, cache, connection, source = serving
    ack_all(connection)
    acked_routes = connection.snapshot.version_of(ROUTE)
    source.commit(mesh_files(v1=50, v2=50), "reviews: 50/50")
    run(engine.reconcile(trigger="test"))
    sent_routes = connection.snapshot.version_of(ROUTE)
    assert sent_routes != acked_routes, "a weight change must change the routes"
    connection.record_push(ROUTE, sent_routes)

    status = document(engine, cache)
    text = render_status(status, now=now_after(status, 1))

    assert table(text, "NAME", "CDS")[1][:5] == ["ingress-1", "SYNCED", "SYNCED", "SYNCED", "STALE"]
    assert table(text, "NAME", "TYPE") == [
        ["NAME", "TYPE", "STATE", "SENT", "ACKED", "NACK"],
        ["ingress-1", "RDS", "STALE", sent_routes[:12], acked_routes[:12]],
    ]


def test_a_proxy_still_stale_after_the_grace_period_is_unhealthy(serving: Any) -> None:
    engine, cache, connection, _ = serving
    push_all(connection)

    status = document(engine, cache)

    assert "STALE" in render_status(status, now=now_after(status, 1))
    assert is_healthy(status, now=now_after(status, 1), grace_seconds=GRACE) is True
    assert is_healthy(status, now=now_after(status, GRACE + 1), grace_seconds=GRACE) is False


def test_a_proxy_synced_on_an_older_generation_is_unhealthy_after_the_grace_period(serving: Any, run: Run) -> None:
    engine, cache, connection, source = serving
    ack_all(connection)
    source.commit(mesh_files(v1=50, v2=50), "reviews: 50/50")
    run(engine.reconcile(trigger="test"))

    status = document(engine, cache)

    assert status.engine.synced is False
    assert status.proxies[0].acked_generation < status.engine.generation
    assert "SYNCED   no, 1 of 1 proxies have not ACKed the served revision yet" in render_status(
        status, now=now_after(status, 1)
    )
    assert is_healthy(status, now=now_after(status, GRACE + 1), grace_seconds=GRACE) is False


def test_a_nacked_proxy_is_unhealthy_and_its_rejection_is_printed(serving: Any) -> None:
    engine, cache, connection, _ = serving
    ack_all(connection)
    acked_clusters = connection.snapshot.version_of(CLUSTER)
    connection.record_push(CLUSTER, "v-rejected")
    connection.record_nack(
        CLUSTER, version="v-rejected", message="Proto constraint validation failed\n  field: connect_timeout"
    )

    status = document(engine, cache)
    text = render_status(status, now=now_after(status, 1))

    assert table(text, "NAME", "CDS")[1][:5] == ["ingress-1", "NACKED", "SYNCED", "SYNCED", "SYNCED"]
    # Envoy's multi-line message is folded so the row stays one line.
    assert table(text, "NAME", "TYPE")[1:] == [
        [
            "ingress-1",
            "CDS",
            "NACKED",
            "v-rejected",
            acked_clusters[:12],
            "Proto constraint validation failed field: connect_timeout",
        ]
    ]
    assert is_healthy(status, now=now_after(status, 1), grace_seconds=GRACE) is False


def test_a_refused_head_is_unhealthy_and_each_finding_is_shown_with_file_and_line(serving: Any, run: Run) -> None:
    engine, cache, connection, source = serving
    ack_all(connection)
    bad_files = mesh_files(v1=80, v2=20, subset_v2="v3")
    bad = source.commit(bad_files, "typo")
    run(engine.reconcile(trigger="test"))

    status = document(engine, cache)
    text = render_status(status, now=now_after(status, 1))

    line = line_of(bad_files["virtualservice.yaml"], "subset: v3")
    assert f"ERROR    ValidationFailed at {bad.sha[:12]}:" in text
    assert f"mesh/virtualservice.yaml:{line}: IST0101" in text
    assert f"HEAD     {bad.sha[:12]}" in text
    assert is_healthy(status, now=now_after(status, 1), grace_seconds=GRACE) is False


def test_a_daemon_serving_nothing_is_unhealthy_and_says_no_proxies_are_connected(
    make_engine: EngineFactory,
) -> None:
    cache = SnapshotCache()
    engine = make_engine(MemorySource(), cache)

    status = document(engine, cache)

    assert "No proxies connected." in render_status(status, now=datetime.now(UTC))
    assert is_healthy(status, now=datetime.now(UTC), grace_seconds=GRACE) is False


@contextmanager
def status_server(body: dict[str, Any] | Callable[[], dict[str, Any]]) -> Iterator[str]:
    """A throwaway HTTP server answering GET /api/v1/status with ``body`` (or what ``body()`` returns then)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body() if callable(body) else body).encode()
            self.send_response(200 if self.path == "/api/v1/status" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_status_command_exits_0_when_synced_and_1_when_a_proxy_nacked(
    serving: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, cache, connection, _ = serving
    ack_all(connection)
    with status_server(document(engine, cache).to_json()) as url:
        assert main(["status", "--server", url]) == 0
    assert "ingress-1" in capsys.readouterr().out

    connection.record_push(CLUSTER, "v-rejected")
    connection.record_nack(CLUSTER, version="v-old", message="rejected")
    capsys.readouterr()  # the engine's log of the NACK
    with status_server(document(engine, cache).to_json()) as url:
        assert main(["status", "--server", url, "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["proxies"][0]["types"]["CDS"]["state"] == "NACKED"


def test_the_status_command_exits_3_not_1_naming_the_address_when_the_daemon_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with status_server({}) as url:
        pass  # closed again: nothing listens there now

    assert main(["status", "--server", url]) == ExitCode.UNREACHABLE == 3
    assert f"cannot reach the daemon at {url}" in capsys.readouterr().err


def test_warnings_about_the_served_config_are_counted_and_shown_without_making_it_unhealthy(
    make_engine: EngineFactory, run: Run
) -> None:
    source, cache = MemorySource(), SnapshotCache()
    connection = cache.connect(GATEWAY, on_change=lambda: None)
    engine = make_engine(source, cache)
    files = mesh_files(v1=100, v2=0)
    files["virtualservice.yaml"] = files["virtualservice.yaml"].replace(b"    timeout: 5s\n", b"    corsPolicy: {}\n")
    source.commit(files, "reviews: cors")
    run(engine.reconcile(trigger="test"))
    ack_all(connection)

    status = document(engine, cache)
    text = render_status(status, now=now_after(status, 1))

    line = line_of(files["virtualservice.yaml"], "corsPolicy")
    assert "WARNINGS 1 about the served config" in text
    assert f"mesh/virtualservice.yaml:{line}: RC0201 unsupported: spec.http[1].corsPolicy" in text
    assert is_healthy(status, now=now_after(status, 1), grace_seconds=GRACE) is True


def test_control_characters_from_a_proxy_or_a_commit_cannot_repaint_or_split_the_status_table(
    make_engine: EngineFactory, run: Run
) -> None:
    source = MemorySource()
    cache = SnapshotCache()
    hostile = ProxyIdentity(node_id="evil\x1b[2J\x1b[Hnode\nfake-row", labels={"app": "x\ry"}, role=ProxyRole.GATEWAY)
    cache.connect(hostile, on_change=lambda: None)
    engine = make_engine(source, cache)
    source.commit(mesh_files(), "subject \x1b]0;pwned\x07 with a bell")
    run(engine.reconcile(trigger="test"))

    out = render_status(document(engine, cache), now=datetime.now(UTC))

    assert not any(char in out for char in "\x1b\r\x07")
    table = out[out.index("NAME") :].splitlines()
    assert len(table) == 2  # the header and one row: the newline in the node id did not add one
    assert table[1].startswith("evil\\u001b[2J\\u001b[Hnode\\nfake-row   ")
    assert "subject \\u001b]0;pwned\\u0007 with a bell" in out


def answers_in_turn(*bodies: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Each call answers the next body; the last one from then on (a daemon whose state moves on)."""
    queue = list(bodies)
    return lambda: queue.pop(0) if len(queue) > 1 else queue[0]


def test_status_wait_returns_0_once_the_commit_is_served_and_every_proxy_acked_it(
    serving: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, cache, connection, source = serving
    sha = source.head_sha
    assert sha is not None
    before_ack = document(engine, cache).to_json()
    ack_all(connection)
    after_ack = document(engine, cache).to_json()
    assert wait_outcome(StatusDocument.from_json(before_ack), sha) is WaitOutcome.PENDING  # served, not yet ACKed

    with status_server(answers_in_turn(before_ack, before_ack, after_ack)) as url:
        assert main(["status", "--server", url, "--wait", sha[:7], "--timeout", "30s"]) == ExitCode.OK

    assert f"{sha[:7]}: served, every proxy ACKed it" in capsys.readouterr().out


def test_under_the_kubernetes_sink_alone_status_wait_waits_for_the_api_server_to_accept_the_commit(
    serving: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, cache, _, source = serving
    sha = source.head_sha
    assert sha is not None
    # What a --sink kubernetes daemon answers: no proxy, synced once the API server accepted the commit.
    pending = {**document(engine, cache).to_json(), "proxies": [], "syncedBy": ["apiServer"], "synced": False}
    accepted = {**pending, "synced": True, "syncedAt": pending["servedSince"]}
    assert wait_outcome(StatusDocument.from_json(pending), sha) is WaitOutcome.PENDING
    now = now_after(StatusDocument.from_json(accepted), 2)
    assert "SYNCED   no, the API server has not accepted the served revision yet" in render_status(
        StatusDocument.from_json(pending), now=now
    )
    assert "SYNCED   yes, the API server accepted it 2s ago" in render_status(
        StatusDocument.from_json(accepted), now=now
    )

    with status_server(answers_in_turn(pending, pending, accepted)) as url:
        assert main(["status", "--server", url, "--wait", sha[:7], "--timeout", "30s"]) == ExitCode.OK

    assert f"{sha[:7]}: served, the API server accepted it" in capsys.readouterr().out


def test_status_wait_returns_1_with_the_findings_when_the_commit_is_refused(
    serving: Any, run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, cache, connection, source = serving
    ack_all(connection)
    bad_files = mesh_files(v1=80, v2=20, subset_v2="v3")
    bad = source.commit(bad_files, "typo")
    run(engine.reconcile(trigger="test"))

    with status_server(document(engine, cache).to_json()) as url:
        assert main(["status", "--server", url, "--wait", bad.sha, "--timeout", "30s"]) == ExitCode.FAILED

    out = capsys.readouterr().out
    assert f"{bad.sha}: refused (ValidationFailed)" in out
    assert f"mesh/virtualservice.yaml:{line_of(bad_files['virtualservice.yaml'], 'subset: v3')}: IST0101" in out


def test_status_wait_returns_1_when_the_commit_is_not_served_before_the_timeout(
    serving: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, cache, _, _ = serving

    with status_server(document(engine, cache).to_json()) as url:
        assert main(["status", "--server", url, "--wait", "0123456789ab", "--timeout", "1s"]) == ExitCode.FAILED

    assert "0123456789ab: not served after 1s; the daemon says Applied" in capsys.readouterr().out


def test_status_wait_returns_3_when_the_daemon_never_answers_before_the_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with status_server({}) as url:
        pass  # closed again: nothing listens there now

    assert main(["status", "--server", url, "--wait", "0123456", "--timeout", "1s"]) == ExitCode.UNREACHABLE
    assert f"cannot reach the daemon at {url}" in capsys.readouterr().err


def test_a_commit_that_changes_no_config_is_served_once_it_is_the_synced_head(serving: Any, run: Run) -> None:
    engine, cache, connection, source = serving
    ack_all(connection)
    served = document(engine, cache)
    readme_only = source.commit(mesh_files(v1=80, v2=20), "docs: README")  # same config, a new commit
    run(engine.reconcile(trigger="test"))

    assert wait_outcome(served, readme_only.sha) is WaitOutcome.PENDING
    assert wait_outcome(document(engine, cache), readme_only.sha) is WaitOutcome.SERVED


@pytest.mark.parametrize(
    ("change", "step", "label"),
    [
        ("rollout-step", "step 2 (50%)", "INTENDED rollout step 2 (50%), at "),
        ("rollback", "rolled back: default/reviews", "INTENDED rolled back: default/reviews, at "),
        ("commit", None, None),
    ],
)
def test_weights_a_rollout_serves_on_purpose_are_labelled_intended_and_a_plain_commit_is_not(
    serving: Any, change: str, step: str | None, label: str | None
) -> None:
    engine, cache, connection, _ = serving
    ack_all(connection)
    status = document(engine, cache)
    assert status.engine.served is not None
    origin = OriginDocument(change=change, sha=status.engine.served.sha, step=step)

    text = render_status(replace(status, engine=replace(status.engine, origin=origin)), now=now_after(status, 5))

    intended = [line for line in text.splitlines() if line.startswith("INTENDED")]
    if label is None:
        assert intended == []
    else:
        assert intended == [f"{label}{status.engine.served.sha[:12]}: weights differ from git's on purpose (not drift)"]
