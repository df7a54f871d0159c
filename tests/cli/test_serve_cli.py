"""``reconciler serve DIR --watch``: a saved edit is served without waiting for a poll."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_for

TEMPLATE = Path(__file__).resolve().parents[2] / "repo-template" / "mesh"

pytestmark = pytest.mark.timeout(60)


def _status(http_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v1/status", timeout=2) as response:
        body: dict[str, Any] = json.load(response)
        return body


def _wait_for(predicate: Callable[[dict[str, Any]], bool], http_port: int, *, timeout: float = 15.0) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def matched() -> bool:
        nonlocal last
        last = _status(http_port)
        return predicate(last)

    wait_for("the status to match", matched, timeout=timeout, seen=lambda: last)
    return last


@pytest.fixture
def served_dir(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[tuple[Path, int]]:
    mesh = tmp_path / "mesh"
    shutil.copytree(TEMPLATE, mesh)
    http_port = free_port()
    command = [
        sys.executable, "-m", "reconciler.cli.main", "serve", str(mesh), "--watch", "--poll-interval", "60s",
        "--state-dir", str(tmp_path / "state"),
        "--xds-address", f"127.0.0.1:{free_port()}", "--http-address", f"127.0.0.1:{http_port}",
    ]  # fmt: skip
    log = (tmp_path / "daemon.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda status: status["ready"], http_port)
        yield mesh, http_port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()
            log.close()


def test_saved_edit_is_served_before_the_next_poll(served_dir: tuple[Path, int]) -> None:
    mesh, http_port = served_dir
    first = _status(http_port)["served"]["sha"]
    virtual_service = mesh / "virtualservice.yaml"

    virtual_service.write_text(virtual_service.read_text().replace("weight: 100", "weight: 90"))

    changed = _wait_for(lambda status: status["served"]["sha"] != first, http_port)
    assert changed["lastError"] is None
    assert changed["reason"] == "Applied"


def test_saved_invalid_edit_is_refused_with_its_line_and_the_fix_clears_it(served_dir: tuple[Path, int]) -> None:
    mesh, http_port = served_dir
    good = _status(http_port)["served"]["sha"]
    virtual_service = mesh / "virtualservice.yaml"
    original = virtual_service.read_text()

    virtual_service.write_text(original.replace("subset: v1", "subset: v9"))

    refused = _wait_for(lambda status: status["lastError"] is not None, http_port)
    finding = refused["lastError"]["findings"][0]
    assert refused["lastError"]["reason"] == "ValidationFailed"
    assert finding["code"] == "IST0101"
    assert finding["file"] == "virtualservice.yaml"
    assert finding["line"] == original.splitlines().index("        subset: v1") + 1
    assert refused["served"]["sha"] == good

    virtual_service.write_text(original)

    healed = _wait_for(lambda status: status["lastError"] is None, http_port)
    assert healed["served"]["sha"] == good


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--xds-address", "127.0.0.1", "is not HOST:PORT"),
        ("--http-address", "::1:8080", "write IPv6 addresses in brackets"),
        ("--xds-address", "127.0.0.1:70000", "out of range"),
    ],
)
def test_serve_refuses_a_malformed_address_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, says: str
) -> None:
    from reconciler.cli.main import main

    assert main(["serve", str(tmp_path), flag, value]) == 2
    assert says in capsys.readouterr().err


def test_without_state_dir_a_watched_working_tree_keeps_its_state_outside_the_tree(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(TEMPLATE, repo / "mesh")
    before = sorted(path.relative_to(repo) for path in repo.rglob("*"))
    state_home, http_port = tmp_path / "state-home", free_port()
    command = [
        sys.executable, "-m", "reconciler.cli.main", "run", "--repo-dir", ".", "--path", "mesh", "--watch",
        "--xds-address", f"127.0.0.1:{free_port()}", "--http-address", f"127.0.0.1:{http_port}",
    ]  # fmt: skip
    with (tmp_path / "daemon.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=repo,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "XDG_STATE_HOME": str(state_home)},
        )
    try:
        _wait_for(lambda status: status["ready"], http_port)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0

    assert sorted(path.relative_to(repo) for path in repo.rglob("*")) == before
    assert [path.parent.parent for path in state_home.glob("reconciler/*/state.sqlite3")] == [state_home / "reconciler"]


def test_the_default_state_dir_is_one_per_source_and_stays_when_the_token_in_the_url_rotates() -> None:
    from reconciler.cli.run import default_state_dir

    environ = {"XDG_STATE_HOME": "/var/state"}
    plain = default_state_dir(source="https://old@git.example/mesh.git", branch="main", environ=environ)
    rotated = default_state_dir(source="https://new@git.example/mesh.git", branch="main", environ=environ)
    other_branch = default_state_dir(source="https://old@git.example/mesh.git", branch="dev", environ=environ)

    assert rotated == plain
    assert plain != other_branch
    assert plain.parent == Path("/var/state/reconciler")
    assert plain.name.startswith("mesh.git-")
