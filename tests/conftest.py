"""Shared fixtures: the Envoy binary, free ports, version-named upstreams and real Envoy processes
(and, from ``tests/support/engine_fixtures.py``, an Engine over an in-memory source).

Everything started through these fixtures is stopped after the test, also when it fails;
a failing test that started Envoy shows the tail of each Envoy log in its report.

    def test_canary_split(envoy, upstreams):
        v1, v2 = upstreams("v1"), upstreams("v2")
        proxy = envoy(bootstrap_dict)            # started and LIVE
        ...
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from reconciler.envoy import find_envoy
from reconciler.harness.envoy import DEFAULT_STARTUP_TIMEOUT, EnvoyProcess
from reconciler.harness.envoy import free_port as _free_port
from reconciler.harness.upstream import UpstreamServer

# Hypothesis' default 200 ms per-example deadline fails tests on a loaded CI machine, not on bugs.
settings.register_profile("reconciler", deadline=None)
# CI (.ci/run) replays the same examples every run, so a submission is judged on its own change;
# local runs keep exploring new inputs (and .hypothesis/ replays any failure they find).
settings.register_profile("ci", parent=settings.get_profile("reconciler"), derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reconciler"))

# The engine fixtures (``make_engine``, ``run``, ``source``, ``state_dir``) serve the engine tests and the
# tests of the commands that read what an engine writes (tests/cli); they live in tests/support.
pytest_plugins = ["engine_fixtures"]

_REPORT_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Remember each phase's report so fixtures can tell, at teardown, whether the test failed."""
    report = yield
    item.stash.setdefault(_REPORT_KEY, {})[report.when] = report
    return report


def _test_failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_REPORT_KEY, {})
    return any(report.failed for report in reports.values())


@pytest.fixture(scope="session")
def envoy_binary() -> Path:
    """Path of the envoy binary tests run (the venv's, else PATH); errors clearly if there is none."""
    return find_envoy()


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a free 127.0.0.1 TCP port, never the same one twice within a test.

    Prefer port 0 where the server can bind it itself (UpstreamServer, Envoy admin and
    listeners via ``EnvoyProcess.listener_ports()``): that cannot race with other workers.
    """
    handed_out: set[int] = set()

    def next_port() -> int:
        while (port := _free_port()) in handed_out:
            pass
        handed_out.add(port)
        return port

    return next_port


@pytest.fixture
def upstreams() -> Iterator[Callable[..., UpstreamServer]]:
    """Factory ``upstreams(version, *, host="127.0.0.1", port=0) -> UpstreamServer`` (started).

    Each server answers with its version (body ``v1``, header ``x-version: v1``); all are
    stopped after the test.
    """
    started: list[UpstreamServer] = []

    def start(version: str, *, host: str = "127.0.0.1", port: int = 0) -> UpstreamServer:
        server = UpstreamServer(version, host=host, port=port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def envoy(envoy_binary: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., EnvoyProcess]]:
    """Factory ``envoy(bootstrap, *, wait_live=True, startup_timeout=20.0, log_level="warn") -> EnvoyProcess``.

    Starts a real Envoy from a bootstrap dict (admin port 0 is fine and recommended) and
    returns it once LIVE (unless ``wait_live=False``). Its config and log live under the
    test's ``tmp_path``; every Envoy is stopped after the test.
    """
    started: list[EnvoyProcess] = []

    def start(
        bootstrap: Mapping[str, Any],
        *,
        wait_live: bool = True,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        log_level: str = "warn",
    ) -> EnvoyProcess:
        process = EnvoyProcess(
            bootstrap,
            envoy_binary=envoy_binary,
            workdir=tmp_path / f"envoy-{len(started)}",
            wait_live=wait_live,
            startup_timeout=startup_timeout,
            log_level=log_level,
        )
        started.append(process)
        return process.start()

    yield start
    failed = _test_failed(request)
    for process in started:
        if failed:
            # Shown under "Captured stdout teardown": usually the reason an Envoy test failed.
            print(f"--- {process.log_path} (tail) ---\n{process.log_tail()}")
        process.stop()
