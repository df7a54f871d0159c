"""Serving certificates near expiry: a warning once a day, an error once expired, a gauge of the expiry time.

The certificates are real and short-lived, made by ``reconciler certs``' code in the test; the clock
is the test's, so "a day later" needs no waiting.
"""

from __future__ import annotations

import shutil
import ssl
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography import x509
from daemon_thread import daemon_thread
from memsource import template_dir
from prometheus_client import CollectorRegistry

from reconciler.cli.certs import issue_certificates
from reconciler.engine.certificates import CertificateExpiry
from reconciler.engine.settings import ApiSettings, Settings, SourceSettings, StateSettings, XdsSettings
from reconciler.xds.tls import ServerTls

DAY = 86400.0
SERIES = "reconciler_tls_certificate_expiry_timestamp_seconds"


def _server_certificate(out: Path, *, days: int) -> Path:
    issue_certificates(out, days=days)
    return out / "server.crt"


def _not_after(cert: Path) -> float:
    return x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc.timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def _registered(expiry: CertificateExpiry) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(expiry)
    return registry


def test_a_certificate_expiring_within_the_window_is_warned_about_once_a_day_and_then_as_expired(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    cert = _server_certificate(tmp_path / "certs", days=1)
    not_after = _not_after(cert)
    clock = Clock(not_after - 1 * DAY)
    expiry = CertificateExpiry({"xds": cert}, warn_days=14, clock=clock)

    expiry.check()
    clock.now += 3600
    expiry.check()  # the same day: not again
    warned = _events(logs, "tls.certificate_expiring")
    clock.now = not_after + 60
    expiry.check()

    assert len(warned) == 1
    assert warned[0]["server"] == "xds"
    assert warned[0]["file"] == str(cert)
    assert warned[0]["days_left"] == 1.0
    assert warned[0]["log_level"] == "warning"
    assert "without a restart" in warned[0]["hint"]
    expired = _events(logs, "tls.certificate_expired")
    assert [entry["log_level"] for entry in expired] == ["error"]
    assert _registered(expiry).get_sample_value(SERIES, {"server": "xds"}) == not_after


def test_a_certificate_far_from_expiry_is_only_a_gauge(tmp_path: Path, logs: list[dict[str, Any]]) -> None:
    cert = _server_certificate(tmp_path / "certs", days=30)
    expiry = CertificateExpiry({"api": cert}, warn_days=14, clock=Clock(_not_after(cert) - 29 * DAY))

    expiry.check()

    assert logs == []
    assert _registered(expiry).get_sample_value(SERIES, {"server": "api"}) == _not_after(cert)


def test_a_renewed_certificate_moves_the_gauge_and_one_still_expiring_is_reported_at_once(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    cert = tmp_path / "server.crt"
    shutil.copy(_server_certificate(tmp_path / "old", days=2), cert)
    clock = Clock(_not_after(cert) - 1 * DAY)
    expiry = CertificateExpiry({"xds": cert}, warn_days=14, clock=clock)
    expiry.check()

    shutil.copy(_server_certificate(tmp_path / "renewed", days=5), cert)
    expiry.check()  # within the hour, but a different certificate

    assert [entry["days_left"] for entry in _events(logs, "tls.certificate_expiring")] == [1.0, 4.0]
    assert _registered(expiry).get_sample_value(SERIES, {"server": "xds"}) == _not_after(cert)


def test_an_unreadable_certificate_is_logged_and_left_out_of_the_gauge(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    cert = _server_certificate(tmp_path / "certs", days=1)
    expiry = CertificateExpiry({"xds": cert}, warn_days=14, clock=Clock(_not_after(cert) - DAY))
    expiry.check()
    cert.write_text("not a certificate\n")

    expiry.check()

    assert [entry["server"] for entry in _events(logs, "tls.certificate_unreadable")] == ["xds"]
    assert _registered(expiry).get_sample_value(SERIES, {"server": "xds"}) is None


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_daemon_warns_about_its_short_lived_xds_certificate_and_shows_both_expiries_in_metrics(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    short = _server_certificate(tmp_path / "xds", days=1)
    long = _server_certificate(tmp_path / "api", days=90)
    settings = Settings(
        state=StateSettings(dir=tmp_path / "state"),
        source=SourceSettings(repo_dir=template_dir(tmp_path), poll_interval=60.0),
        xds=XdsSettings(address="127.0.0.1:0", tls=ServerTls(cert_file=short, key_file=short.with_suffix(".key"))),
        api=ApiSettings(address="127.0.0.1:0", tls_cert=long, tls_key=long.with_suffix(".key")),
    )

    with daemon_thread(settings) as (_, http_port):
        context = ssl.create_default_context(cafile=tmp_path / "api" / "ca.crt")
        with urllib.request.urlopen(f"https://127.0.0.1:{http_port}/metrics", timeout=10, context=context) as answer:
            metrics = answer.read().decode()

    warned = _events(logs, "tls.certificate_expiring")
    assert [(entry["server"], entry["file"]) for entry in warned] == [("xds", str(short))]
    assert 0.9 <= warned[0]["days_left"] <= 1.0
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines() if line.startswith(SERIES)}
    assert lines == {f'{SERIES}{{server="api"}}': _not_after(long), f'{SERIES}{{server="xds"}}': _not_after(short)}
    assert timedelta(seconds=_not_after(long) - _not_after(short)) == timedelta(days=89)
