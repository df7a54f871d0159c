"""``reconciler bootstrap``: YAML on stdout, exit codes, and the checked-in example staying current."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.cli.main import main

DEPLOY_EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "gateway" / "envoy-bootstrap.yaml"
# Must match the command in the header of deploy/gateway/envoy-bootstrap.yaml.
DEPLOY_ARGS = [
    "bootstrap",
    "--node-id",
    "istio-ingressgateway",
    "--xds-address",
    "reconciler.mesh-system.svc:18000",
    "--label",
    "istio=ingressgateway",
    "--role",
    "gateway",
    "--namespace",
    "mesh-gateways",
    "--xds-ca",
    "/etc/xds-tls/ca.crt",
    "--xds-client-cert",
    "/etc/xds-tls/tls.crt",
    "--xds-client-key",
    "/etc/xds-tls/tls.key",
]


def test_bootstrap_command_prints_yaml_for_the_given_proxy_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "bootstrap",
            "--node-id",
            "gw-1",
            "--xds-address",
            "127.0.0.1:18000",
            "--admin-address",
            "127.0.0.1:9901",
            "--label",
            "istio=ingressgateway",
            "--label",
            "app=edge",
            "--role",
            "gateway",
            "--namespace",
            "edge",
        ]
    )

    out = capsys.readouterr().out
    assert code == 0
    bootstrap = yaml.safe_load(out)
    assert bootstrap["node"]["id"] == "gw-1"
    assert bootstrap["node"]["metadata"] == {
        "LABELS": {"istio": "ingressgateway", "app": "edge"},
        "NAMESPACE": "edge",
        "OUTBOUND_PORT": "15001",
        "ROLE": "gateway",
        "ADMIN_ADDRESS": "127.0.0.1:9901",
    }
    assert bootstrap["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    xds_endpoint = bootstrap["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
    assert xds_endpoint["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] == 18000


def test_bootstrap_command_accepts_bracketed_ipv6_addresses(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bootstrap", "--node-id", "gw-1", "--xds-address", "[::1]:18000"])

    cluster = yaml.safe_load(capsys.readouterr().out)["static_resources"]["clusters"][0]
    assert code == 0
    assert cluster["type"] == "STATIC"
    assert cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "socket_address": {"address": "::1", "port_value": 18000}
    }


@pytest.mark.parametrize(
    ("flag", "value", "complaint"),
    [
        ("--label", "istio", "is not KEY=VALUE"),
        ("--label", "=ingressgateway", "is not KEY=VALUE"),
        ("--xds-address", "127.0.0.1", "is not HOST:PORT"),
        ("--xds-address", "127.0.0.1:http", "is not HOST:PORT"),
        ("--xds-address", "127.0.0.1:0", "out of range"),
        ("--xds-address", "::1:18000", "in brackets"),
        ("--admin-address", "localhost:99999", "out of range"),
        ("--outbound-port", "0", "is not a port"),
        ("--xds-reconnect-base", "0", "reconnect base interval 0.0 s is out of range"),
        ("--xds-reconnect-max", "0.1", "below the base interval 0.25 s"),
    ],
)
def test_bootstrap_command_exits_2_and_says_what_is_wrong_with_bad_input(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, complaint: str
) -> None:
    args = ["bootstrap", "--node-id", "gw-1", "--xds-address", "127.0.0.1:18000", flag, value]

    code = main(args)

    captured = capsys.readouterr()
    assert code == 2
    assert complaint in captured.err
    assert captured.out == ""


def test_bootstrap_command_sets_envoys_ads_reconnect_backoff_from_its_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bootstrap", "--node-id", "gw-1", "--xds-address", "127.0.0.1:18000"]

    code = main([*args, "--xds-reconnect-base", "0.5", "--xds-reconnect-max", "10"])

    [service] = yaml.safe_load(capsys.readouterr().out)["dynamic_resources"]["ads_config"]["grpc_services"]
    assert code == 0
    assert service["envoy_grpc"]["retry_policy"] == {"retry_back_off": {"base_interval": "0.5s", "max_interval": "10s"}}


def test_bootstrap_command_exits_2_for_conflicting_repeated_labels(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bootstrap", "--node-id", "g", "--xds-address", "h:1", "--label", "a=1", "--label", "a=2"])

    assert code == 2
    assert "given twice" in capsys.readouterr().err


def test_bootstrap_command_exits_2_without_the_required_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bootstrap", "--node-id", "gw-1"])

    assert exited.value.code == 2
    assert "--xds-address" in capsys.readouterr().err


def test_bootstrap_help_explains_the_command_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bootstrap", "--help"])

    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "example:" in out
    assert "reconciler bootstrap --node-id" in out


def test_checked_in_example_bootstrap_is_what_the_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(DEPLOY_ARGS) == 0

    generated = yaml.safe_load(capsys.readouterr().out)
    assert yaml.safe_load(DEPLOY_EXAMPLE.read_text(encoding="utf-8")) == generated


@pytest.mark.envoy
def test_checked_in_example_bootstrap_passes_envoy_validate_mode(envoy_binary: Path, tmp_path: Path) -> None:
    from reconciler.envoy import validate_config

    # Envoy's validate mode reads the TLS files: the Secret's mount becomes certificates made here.
    assert main(["certs", "--out", str(tmp_path), "--client", "gw"]) == 0
    text = DEPLOY_EXAMPLE.read_text(encoding="utf-8")
    for mounted, made in {"ca.crt": "ca.crt", "tls.crt": "gw.crt", "tls.key": "gw.key"}.items():
        assert f"/etc/xds-tls/{mounted}" in text
        text = text.replace(f"/etc/xds-tls/{mounted}", str(tmp_path / made))
    validate_config(yaml.safe_load(text), envoy_binary=envoy_binary)


def test_bootstrap_with_delta_asks_envoy_for_incremental_xds(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bootstrap", "--node-id", "gw-1", "--xds-address", "127.0.0.1:18000", "--delta"])

    dynamic = yaml.safe_load(capsys.readouterr().out)["dynamic_resources"]
    assert code == 0
    assert dynamic["ads_config"]["api_type"] == "DELTA_GRPC"
    assert dynamic["ads_config"]["transport_api_version"] == "V3"
    assert dynamic["cds_config"] == {"ads": {}, "resource_api_version": "V3"}
    assert dynamic["lds_config"] == {"ads": {}, "resource_api_version": "V3"}
