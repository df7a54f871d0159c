"""``run --leader-elect`` and its durations: checked before the daemon starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.engine.settings import LeaderSettings


def run(tmp_path: Path, *flags: str) -> int:
    return main(["run", "--repo", str(tmp_path / "repo"), "--state-dir", str(tmp_path / "s"), *flags])


def test_leader_election_without_a_cluster_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "--leader-elect") == 2
    assert "--leader-elect needs a cluster" in capsys.readouterr().err


def test_a_renew_deadline_not_under_the_lease_duration_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    flags = ("--kubeconfig", str(kubeconfig), "--leader-elect", "--leader-elect-lease-duration", "5s")
    assert run(tmp_path, *flags, "--leader-elect-renew-deadline", "5s") == 2
    assert "retry period < renew deadline < lease duration" in capsys.readouterr().err


def test_the_help_shows_client_gos_defaults_from_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = LeaderSettings()
    assert (defaults.lease_duration, defaults.renew_deadline, defaults.retry_period) == (15.0, 10.0, 2.0)
    for flag, value in (("lease-duration", "15s"), ("renew-deadline", "10s"), ("retry-period", "2s")):
        assert f"--leader-elect-{flag} DURATION" in text
        assert f"(default {value})" in text
