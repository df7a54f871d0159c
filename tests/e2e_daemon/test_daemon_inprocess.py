"""``run_daemon`` in a worker thread (how tools and benchmarks embed it), over a plain directory."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import TEMPLATE, with_weights
from daemon_thread import daemon_thread
from waiting import wait_for

from reconciler.engine.settings import ApiSettings, Settings, SourceSettings, StateSettings, XdsSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_run_daemon_serves_a_directory_from_a_worker_thread_and_stops_when_cancelled(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh"
    mesh.mkdir()
    for path in TEMPLATE.glob("*.yaml"):
        (mesh / path.name).write_text(path.read_text())
    settings = Settings(
        state=StateSettings(dir=tmp_path / "state"),
        source=SourceSettings(repo_dir=mesh, poll_interval=60.0),
        xds=XdsSettings(address="127.0.0.1:0"),
        api=ApiSettings(address="127.0.0.1:0"),
    )

    with daemon_thread(settings) as (xds_port, http_port):
        api = f"http://127.0.0.1:{http_port}"
        assert xds_port > 0
        first = wait_for("the directory served", lambda: get(f"{api}/api/v1/status")["served"])

        vs = mesh / "virtualservice.yaml"
        vs.write_text(with_weights(vs.read_text(), v1=50, v2=50))
        request = urllib.request.Request(f"{api}/api/v1/sync", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 202

        status = wait_for(
            "the edit served",
            lambda: (s := get(f"{api}/api/v1/status"))["served"]["sha"] != first["sha"] and s,
        )
        # the template's RolloutPolicy governs reviews: a weight change is served as a rollout's first step
        assert status["reason"] == "RolloutStep"
        assert status["generation"] == 2


def test_a_token_in_the_repo_url_never_shows_in_status(tmp_path: Path) -> None:
    token = "ghp_s3cretT0ken"
    settings = Settings(
        state=StateSettings(dir=tmp_path / "state"),
        # port 9: refused at once
        source=SourceSettings(repo=f"http://reconciler:{token}@127.0.0.1:9/mesh.git", poll_interval=60.0),
        xds=XdsSettings(address="127.0.0.1:0"),
        api=ApiSettings(address="127.0.0.1:0"),
    )

    with daemon_thread(settings) as (_, http_port):
        status = wait_for(
            "the first fetch to fail",
            lambda: (s := get(f"http://127.0.0.1:{http_port}/api/v1/status"))["lastError"] and s,
        )

    assert status["repo"] == "http://reconciler:***@127.0.0.1:9/mesh.git"
    assert token not in json.dumps(status)
