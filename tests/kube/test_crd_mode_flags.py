"""``--sink`` and ``--inventory``: which sinks a daemon runs, and the settings CRD mode starts with."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import run as run_cli
from reconciler.cli.exitcode import ExitCode
from reconciler.cli.main import build_parser, main
from reconciler.engine.settings import KubeSettings, SourceSettings, XdsSettings
from reconciler.kube.lease import default_namespace


def _settings(tmp_path: Path, *flags: str) -> tuple[KubeSettings, XdsSettings]:
    args = build_parser().parse_args(["serve", str(tmp_path), *flags])
    settings = run_cli._settings(args, source=SourceSettings(), state_dir=tmp_path / "s", webhook_secret=None)
    return settings.kube, settings.xds


def test_the_kubernetes_sink_alone_applies_to_the_cluster_and_serves_no_ads(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("{}")
    kube, xds = _settings(tmp_path, "--kubeconfig", str(config), "--sink", "kubernetes", "--inventory", "ops/inv")
    assert (kube.apply, kube.enabled, xds.serve) == (True, False, False)
    assert (kube.inventory_namespace, kube.inventory_name) == ("ops", "inv")


def test_without_inventory_the_inventory_is_reconciler_inventory_in_the_pods_own_namespace(tmp_path: Path) -> None:
    kube, _ = _settings(tmp_path, "--in-cluster", "--sink", "kubernetes")
    assert (kube.inventory_namespace, kube.inventory_name) == (None, "reconciler-inventory")
    # The daemon resolves None as the Lease's namespace: the service account's namespace file, else default.
    account = tmp_path / "namespace"
    account.write_text("mesh-system\n")
    assert default_namespace(account) == "mesh-system"
    assert default_namespace(tmp_path / "no-such-file") == "default"


def test_both_sinks_apply_and_serve_ads_with_the_clusters_endpoints(tmp_path: Path) -> None:
    kube, xds = _settings(tmp_path, "--in-cluster", "--sink", "kubernetes", "--sink", "xds")
    assert (kube.apply, kube.enabled, xds.serve) == (True, True, True)


def test_xds_is_the_default_sink(tmp_path: Path) -> None:
    kube, xds = _settings(tmp_path)
    assert (kube.apply, xds.serve) == (False, True)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--sink", "kubernetes"], "--kubeconfig FILE or --in-cluster"),
        (["--in-cluster", "--sink", "kubernetes", "--inventory", "no-slash"], "NAMESPACE/NAME"),
    ],
)
def test_crd_mode_flags_that_cannot_work_stop_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], says: str
) -> None:
    assert main(["serve", str(tmp_path), "--state-dir", str(tmp_path / "s"), *flags]) == ExitCode.USAGE
    assert says in capsys.readouterr().err
