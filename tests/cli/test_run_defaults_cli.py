"""``reconciler run``, ``serve`` and ``status`` default to what the daemon's settings say, written once."""

from __future__ import annotations

from pathlib import Path

import pytest

import reconciler.cli.run as run_cli
from reconciler.cli.exitcode import ExitCode
from reconciler.cli.main import build_parser, main
from reconciler.cli.run import parse_interval
from reconciler.engine.settings import (
    DIRECTORY_POLL_INTERVAL,
    ApiSettings,
    SafetySettings,
    Settings,
    SourceSettings,
    XdsSettings,
)
from reconciler.engine.source_factory import make_source
from reconciler.sources.local import LocalDirSource


def test_the_run_flags_default_to_the_daemon_settings_defaults() -> None:
    args = build_parser().parse_args(["run", "--repo", "https://git.example/mesh.git"])
    source = SourceSettings()

    assert (args.branch, args.path, args.namespace) == (source.branch, source.path, source.namespace)
    assert parse_interval(args.poll_interval) == source.poll_interval
    assert parse_interval(args.git_timeout) == source.git_timeout == 120
    assert (args.max_file_size, args.max_revision_size) == (source.limits.file_bytes, source.limits.revision_bytes)
    assert (args.xds_address, args.rollback_on_nack) == (XdsSettings().address, XdsSettings().rollback_on_nack)
    assert args.http_address == ApiSettings().address
    guard = SafetySettings().removal_guard
    assert (args.max_removal_percent, args.allow_empty) == (guard.max_removal_percent, guard.allow_empty)


def test_serve_polls_a_directory_more_often_than_run_polls_a_remote() -> None:
    args = build_parser().parse_args(["serve", "mesh"])

    assert parse_interval(args.poll_interval) == DIRECTORY_POLL_INTERVAL < SourceSettings().poll_interval


def test_status_asks_the_daemon_where_it_listens_by_default() -> None:
    args = build_parser().parse_args(["status"])

    assert args.server == f"http://{ApiSettings().address}"


def test_a_git_timeout_that_is_not_a_positive_duration_stops_start_up_with_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--repo", str(tmp_path / "r.git"), "--git-timeout", "0s", "--state-dir", str(tmp_path / "s")])

    assert code == ExitCode.USAGE
    assert "interval '0s' is not a positive duration" in capsys.readouterr().err


def test_watch_settle_reaches_the_daemons_directory_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Settings] = []
    monkeypatch.setattr(run_cli, "_start", lambda settings, args: started.append(settings) or ExitCode.OK)
    mesh = tmp_path / "mesh"
    mesh.mkdir()

    assert build_parser().parse_args(["serve", str(mesh)]).watch_settle == "0.5s"
    assert main(["serve", str(mesh), "--watch", "--watch-settle", "100ms", "--state-dir", str(tmp_path / "s")]) == 0

    (settings,) = started
    assert settings.source.watch_settle == 0.1 < SourceSettings().watch_settle
    source, _, _ = make_source(settings)
    assert isinstance(source, LocalDirSource)
    assert source.settle_seconds == 0.1
