"""``reconciler render``: output grouping, formats, findings on stderr, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from translate_support import FIXTURES, GOLDEN

from reconciler.cli.main import main

WEIGHTED = str(FIXTURES / "weighted-80-20.yaml")


def test_render_prints_version_and_resources_grouped_by_type(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", WEIGHTED, "--node-id", "sidecar-1", "--role", "sidecar"])

    out = capsys.readouterr().out
    document = json.loads(out)
    assert code == 0
    assert list(document) == ["version", "clusters", "endpoints", "listeners", "routes"]
    assert len(document["version"]) == 16
    assert [c["name"] for c in document["clusters"]][-1] == "outbound|9080||reviews.default.svc.cluster.local"
    assert document["listeners"][0]["name"] == "0.0.0.0_15001"
    assert document["routes"][0]["virtual_hosts"][0]["name"] == "reviews.default.svc.cluster.local:9080"
    # Exactly what the golden file (the same fixture, same proxy) holds.
    assert out == (GOLDEN / "weighted-80-20.sidecar.json").read_text(encoding="utf-8")


def test_render_yaml_has_the_same_content_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    main(["render", WEIGHTED, "--node-id", "s"])
    as_json = json.loads(capsys.readouterr().out)

    code = main(["render", WEIGHTED, "--node-id", "s", "--format", "yaml"])

    assert code == 0
    assert yaml.safe_load(capsys.readouterr().out) == as_json


def test_render_labels_a_gateway_proxy_by_gateway_selector(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = str(FIXTURES / "gateway-two-ports.yaml")

    code = main(["render", fixture, "--node-id", "gw-1", "--label", "istio=ingressgateway"])

    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [listener["name"] for listener in document["listeners"]] == ["0.0.0.0_8080", "0.0.0.0_8081"]
    assert [route["name"] for route in document["routes"]] == ["http.8080", "http.8081"]


def test_render_prints_not_translated_findings_to_stderr_and_still_succeeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["render", str(FIXTURES / "not-translated.yaml"), "--node-id", "s"])

    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out)["listeners"]
    assert "WARNING RC0202 VirtualService default/database: TCP routes are not translated" in captured.err
    assert "not-translated.yaml:" in captured.err


def test_render_exits_1_and_prints_no_config_when_validation_finds_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\n"
        "spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: -1\n",
        encoding="utf-8",
    )

    code = main(["render", str(broken), "--node-id", "s"])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert f"{broken}:9: ERROR" in captured.err


@pytest.mark.parametrize(
    "arguments",
    [
        ["render", WEIGHTED],  # no --node-id
        ["render", WEIGHTED, "--node-id", "s", "--label", "no-equals-sign"],
        ["render", WEIGHTED, "--node-id", "s", "--role", "router"],
        ["render", WEIGHTED, "--node-id", "s", "--format", "xml"],
        ["render", "/does/not/exist.yaml", "--node-id", "s"],
        ["render", WEIGHTED, "--node-id", " "],
        ["render", WEIGHTED, "--node-id", "s", "--outbound-port", "70000"],
    ],
    ids=["no-node-id", "bad-label", "bad-role", "bad-format", "missing-path", "blank-node-id", "bad-port"],
)
def test_render_exits_2_on_usage_errors(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # argparse exits by itself (SystemExit 2); errors found later come back as the return value.
    try:
        code = main(arguments)
    except SystemExit as exited:
        code = exited.code  # type: ignore[assignment]

    assert code == 2
    assert capsys.readouterr().out == ""


def test_render_help_explains_the_command_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["render", "--help"])

    out = capsys.readouterr().out
    assert raised.value.code == 0
    assert "reconciler render mesh/ --node-id gw-1 --label istio=ingressgateway" in out
    assert "exit status" in out


@pytest.mark.envoy
def test_render_validate_runs_envoy_on_the_result(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", WEIGHTED, "--node-id", "s", "--validate"])

    assert code == 0
    assert "envoy --mode validate: OK" in capsys.readouterr().err
