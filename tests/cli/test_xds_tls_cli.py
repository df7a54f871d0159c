"""The xDS TLS flags of ``run``/``serve`` and ``bootstrap``, and ``reconciler certs``' files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.cli.main import main
from reconciler.xds.identity import peer_identity_from_pem


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--xds-tls-cert", "s.crt"], "--xds-tls-cert and --xds-tls-key go together"),
        (["--xds-client-ca", "ca.crt"], "--xds-client-ca needs --xds-tls-cert"),
        (["--xds-tls-cert", "s.crt", "--xds-tls-key", "s.key", "--xds-allow-identity", "*"], "add --xds-client-ca"),
        (["--xds-address", "0.0.0.0:0"], "--xds-plaintext"),
    ],
)
def test_serve_refuses_xds_security_flags_that_do_not_fit_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code = main(
        ["serve", str(tmp_path), "--state-dir", str(tmp_path / "state"), "--http-address", "127.0.0.1:0", *flags]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_serve_refuses_to_start_with_a_certificate_file_that_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--xds-tls-cert", str(tmp_path / "missing.crt"), "--xds-tls-key", str(tmp_path / "missing.key")]
    code = main(
        ["serve", str(tmp_path), "--state-dir", str(tmp_path / "state"), "--http-address", "127.0.0.1:0", *flags]
    )
    assert code == 2
    assert "missing.crt" in capsys.readouterr().err


def test_certs_writes_a_ca_a_server_and_client_certificates_with_private_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "certs"
    assert (
        main(["certs", "--out", str(out), "--client", "gw-1", "--namespace", "edge", "--server-name", "xds.example"])
        == 0
    )
    printed = capsys.readouterr().out
    for name in ("ca", "server", "gw-1"):
        assert str(out / f"{name}.crt") in printed
        assert (out / f"{name}.key").stat().st_mode & 0o777 == 0o600
    assert peer_identity_from_pem((out / "gw-1.crt").read_bytes()).uris == ("spiffe://cluster.local/ns/edge/node/gw-1",)
    assert peer_identity_from_pem((out / "server.crt").read_bytes()).dns_names == ("xds.example",)


def test_certs_reuses_its_ca_to_add_a_proxy_later(tmp_path: Path) -> None:
    assert main(["certs", "--out", str(tmp_path), "--client", "gw-1"]) == 0
    ca, server = (tmp_path / "ca.crt").read_bytes(), (tmp_path / "server.crt").read_bytes()
    assert main(["certs", "--out", str(tmp_path), "--client", "gw-2"]) == 0
    assert (tmp_path / "ca.crt").read_bytes() == ca
    assert (tmp_path / "server.crt").read_bytes() == server  # reissued only when --server-name asks
    assert (tmp_path / "gw-2.crt").exists()


@pytest.mark.parametrize("node_id", ["../escape", "ca", ".hidden", "a/b"])
def test_certs_refuses_node_ids_that_are_not_plain_file_names(tmp_path: Path, node_id: str) -> None:
    assert main(["certs", "--out", str(tmp_path), "--client", node_id]) == 2
    assert not any(tmp_path.iterdir())


def test_bootstrap_with_xds_tls_flags_verifies_the_server_name_and_presents_the_client_certificate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["bootstrap", "--node-id", "gw-1", "--xds-address", "reconciler.mesh.svc:18000", "--xds-ca", "/etc/x/ca.crt"]
    assert main([*args, "--xds-client-cert", "/etc/x/gw.crt", "--xds-client-key", "/etc/x/gw.key"]) == 0
    (xds_cluster,) = yaml.safe_load(capsys.readouterr().out)["static_resources"]["clusters"]
    context = xds_cluster["transport_socket"]["typed_config"]
    assert context["sni"] == "reconciler.mesh.svc"
    common = context["common_tls_context"]
    assert common["alpn_protocols"] == ["h2"]
    assert common["validation_context"]["trusted_ca"] == {"filename": "/etc/x/ca.crt"}
    assert common["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "reconciler.mesh.svc"}}
    ]
    assert common["tls_certificates"] == [
        {"certificate_chain": {"filename": "/etc/x/gw.crt"}, "private_key": {"filename": "/etc/x/gw.key"}}
    ]


def test_bootstrap_to_an_ip_checks_an_ip_san_and_sends_no_sni(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootstrap", "--node-id", "gw-1", "--xds-address", "10.0.0.7:18000", "--xds-ca", "ca.crt"]) == 0
    (xds_cluster,) = yaml.safe_load(capsys.readouterr().out)["static_resources"]["clusters"]
    context = xds_cluster["transport_socket"]["typed_config"]
    assert "sni" not in context
    assert "tls_certificates" not in context["common_tls_context"]
    assert context["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "10.0.0.7"}}
    ]


@pytest.mark.parametrize(
    "flags", [["--xds-client-cert", "c.crt"], ["--xds-ca", "ca.crt", "--xds-client-cert", "c.crt"]]
)
def test_bootstrap_refuses_half_a_tls_setup(capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    assert main(["bootstrap", "--node-id", "gw-1", "--xds-address", "127.0.0.1:18000", *flags]) == 2
    assert capsys.readouterr().out == ""


def test_bootstrap_without_tls_flags_has_no_transport_socket(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootstrap", "--node-id", "gw-1", "--xds-address", "127.0.0.1:18000"]) == 0
    (xds_cluster,) = yaml.safe_load(capsys.readouterr().out)["static_resources"]["clusters"]
    assert "transport_socket" not in xds_cluster
