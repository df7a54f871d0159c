"""``reconciler rollout``: the CLI against the daemon's real HTTP routes over a real RolloutController."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from memsource import EngineFactory, MemorySource, ack_all
from prometheus_client import CollectorRegistry
from rollout_walk import first_step_acked
from waiting import wait_for

from reconciler.api.document import RolloutDocument, StatusDocument
from reconciler.api.rollouts import rollout_routes
from reconciler.api.status import status_routes
from reconciler.cli.exitcode import ExitCode
from reconciler.cli.main import main
from reconciler.cli.rollout import watch_exit
from reconciler.cli.status import render_status
from reconciler.engine.rollouts import RolloutController
from reconciler.xds.cache import ProxyConnection, SnapshotCache

Run = Callable[..., Any]


@dataclass
class Daemon:
    url: str
    controller: RolloutController
    gateway: ProxyConnection

    def cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--server", self.url])
        out, err = capsys.readouterr()
        return code, out, err


@contextmanager
def serving(controller: RolloutController, cache: SnapshotCache, status: Any) -> Iterator[str]:
    """The daemon's status and rollout routes on a free port, on an event loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> web.AppRunner:
        app = web.Application()
        app.add_routes(
            status_routes(
                status=status, proxies=cache.statuses, registry=CollectorRegistry(), rollouts=controller.documents
            )
        )
        app.add_routes(rollout_routes(command=controller.command))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


@pytest.fixture
def daemon(source: MemorySource, make_engine: EngineFactory, run: Run) -> Iterator[Daemon]:
    """A rollout of reviews 100/0 → 0/100 in steps 10, 50, its first step served and ACKed; nothing judged yet."""
    walk = first_step_acked(source, make_engine, run)
    with serving(walk.controller, walk.cache, walk.engine.status.document) as url:
        yield Daemon(url, walk.controller, walk.gateway)


def test_list_shows_each_rollout_as_a_row_and_its_json_reads_back_into_the_documents(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = daemon.cli(capsys, "rollout", "list")
    header, row = out.splitlines()[-2:]

    assert code == ExitCode.OK
    assert header.split() == ["NAMESPACE", "NAME", "PHASE", "STEP", "SERVED", "GOAL", "CANARY", "STABLE", "DECIDED"]
    assert [cell.strip() for cell in row.split("   ") if cell.strip()][:6] == [
        "default",
        "reviews",
        "Progressing",
        "1/3",
        "v1 90, v2 10",
        "v2 100",
    ]

    code, out, _ = daemon.cli(capsys, "rollout", "list", "-o", "json")
    assert code == ExitCode.OK
    assert tuple(RolloutDocument.from_json(r) for r in json.loads(out)["rollouts"]) == daemon.controller.documents()


def test_status_shows_weights_per_destination_the_time_left_and_the_last_decision(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = daemon.cli(capsys, "rollout", "status", "reviews")

    assert code == ExitCode.OK
    assert "PHASE      Progressing" in out
    assert "STEP       1 of 3" in out
    assert "acknowledged 0s ago; next look in 9m; decided within 9m" in out
    assert "DECISION   0s ago: every proxy ACKed step 0: the analysis window opens" in out
    rows = [line.split() for line in out.splitlines() if "reviews.example.com:" in line]
    assert rows == [
        ["default/reviews#0", "reviews.example.com:v2", "100", "100", "-", "-"],
        ["default/reviews#1", "reviews.example.com:v1", "90", "0", "-", "-"],
        ["reviews.example.com:v2", "10", "100", "-", "-"],
    ]

    code, out, _ = daemon.cli(capsys, "rollout", "status", "default/reviews", "-o", "json")
    assert (code, (RolloutDocument.from_json(json.loads(out)),)) == (ExitCode.OK, daemon.controller.documents())


def test_the_commands_steer_the_rollout_and_one_that_does_not_apply_exits_1_with_the_daemon_s_reason(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = daemon.cli(capsys, "rollout", "pause", "reviews")
    # The last line: the daemon's log, in this process, shares stdout with the command.
    assert (code, out.splitlines()[-1]) == (ExitCode.OK, "default/reviews: Paused, step 1 of 3: paused by a user")
    code, _, err = daemon.cli(capsys, "rollout", "pause", "reviews", "-n", "default")
    assert code == ExitCode.FAILED
    assert "cannot pause the rollout under RolloutPolicy default/reviews: it is already paused" in err
    assert daemon.cli(capsys, "rollout", "resume", "reviews")[0] == ExitCode.OK
    assert daemon.cli(capsys, "rollout", "promote", "reviews")[0] == ExitCode.OK

    code, out, _ = daemon.cli(capsys, "rollout", "promote", "reviews", "--full", "-o", "json")

    assert code == ExitCode.OK
    # The daemon's log of the decision, in this process, comes first on stdout.
    promoted = RolloutDocument.from_json(json.loads(out[out.index("{\n") :]))
    assert (promoted.step, promoted.served) == (2, promoted.goal)
    code, _, err = daemon.cli(capsys, "rollout", "abort", "ratings")
    assert (code, err.strip()) == (ExitCode.FAILED, "reconciler: no rollout under RolloutPolicy default/ratings")


def test_status_watch_exits_0_when_the_rollout_succeeds(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    before = daemon.gateway.snapshot
    daemon.cli(capsys, "rollout", "promote", "reviews", "--full")
    # The push is translated off the daemon's loop: the gateway ACKs git's weights once it has them.
    wait_for("the promoted weights at the gateway", lambda: daemon.gateway.snapshot is not before, interval=0.01)
    ack_all(daemon.gateway)

    code, out, _ = daemon.cli(capsys, "rollout", "status", "reviews", "--watch", "--timeout", "1m")

    assert code == ExitCode.OK
    assert "Succeeded" in out


def test_status_watch_exits_1_when_the_rollout_is_aborted_and_status_alone_too(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.cli(capsys, "rollout", "abort", "reviews")

    assert daemon.cli(capsys, "rollout", "status", "reviews", "--watch", "--timeout", "1m")[0] == ExitCode.FAILED
    assert daemon.cli(capsys, "rollout", "status", "reviews")[0] == ExitCode.FAILED


def test_status_watch_exits_1_when_the_timeout_passes_while_the_rollout_still_walks(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = daemon.cli(capsys, "rollout", "status", "reviews", "--watch", "--timeout", "1s", "-o", "json")

    assert code == ExitCode.FAILED
    assert "default/reviews is still Progressing after 1s" in err
    # Not a terminal: one JSON document per change, each a rollout document.
    assert [RolloutDocument.from_json(json.loads(line)).phase for line in out.splitlines()] == ["Progressing"]


def test_status_watch_of_a_name_without_a_rollout_exits_1_after_the_grace_not_the_timeout(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = daemon.cli(capsys, "rollout", "status", "ratings", "--watch", "--timeout", "1h", "--grace", "1s")

    assert code == ExitCode.FAILED
    assert "waiting up to 1s for a rollout under RolloutPolicy default/ratings" in err
    assert err.strip().endswith("reconciler: no rollout under RolloutPolicy default/ratings (waited 1s)")


def test_every_phase_has_its_watch_outcome() -> None:
    assert {phase: watch_exit(phase) for phase in ("Succeeded", "RolledBack", "Aborted", "Reverted")} == {
        "Succeeded": ExitCode.OK,
        "RolledBack": ExitCode.FAILED,
        "Aborted": ExitCode.FAILED,
        "Reverted": ExitCode.FAILED,
    }
    assert {watch_exit(phase) for phase in ("Progressing", "Paused", "Stalled", "Superseded")} == {None}


def test_the_rollout_commands_exit_3_when_no_daemon_answers(capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://127.0.0.1:9"  # discard: nothing listens

    for argv in (["list"], ["status", "reviews"], ["status", "reviews", "--watch"], ["abort", "reviews"]):
        assert main(["rollout", *argv, "--server", url]) == ExitCode.UNREACHABLE
        assert f"cannot reach the daemon at {url}" in capsys.readouterr().err


def test_a_name_with_its_namespace_and_n_together_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollout", "pause", "default/reviews", "-n", "default"]) == ExitCode.USAGE
    assert "names its namespace already" in capsys.readouterr().err


def test_reconciler_status_shows_the_walking_rollouts_in_a_short_block(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = daemon.cli(capsys, "status", "-o", "json")
    status = StatusDocument.from_json(json.loads(out))

    text = render_status(status, now=datetime.now(UTC))

    lines = text.splitlines()
    start = lines.index("ROLLOUTS 1 walking (reconciler rollout status NAME shows one)")
    assert lines[start + 1].split() == ["POLICY", "PHASE", "STEP", "SERVED", "GOAL"]
    assert lines[start + 2].split() == ["default/reviews", "Progressing", "1/3", "v1", "90,", "v2", "10", "v2", "100"]
