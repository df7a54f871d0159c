"""``--kubeconfig`` and ``--in-cluster``: checked before the daemon starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.exitcode import ExitCode
from reconciler.cli.main import main


def test_a_missing_kubeconfig_stops_start_up_with_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", str(tmp_path), "--kubeconfig", str(tmp_path / "nope"), "--state-dir", str(tmp_path / "s")])
    assert code == ExitCode.USAGE
    assert "--kubeconfig" in capsys.readouterr().err


def test_kubeconfig_and_in_cluster_exclude_each_other(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("{}")
    with pytest.raises(SystemExit) as exited:
        main(["serve", str(tmp_path), "--kubeconfig", str(config), "--in-cluster"])
    assert exited.value.code == 2
