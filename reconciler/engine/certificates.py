"""The daemon's serving certificates (xDS, API) approaching expiry: a warning in the log, a gauge for alerts.

A certificate that expires takes every proxy's config stream down with it (new TLS handshakes fail),
and with ``--xds-tls-cert`` replaced on disk without a restart nobody looks at the daemon meanwhile.
:class:`CertificateExpiry` reads each certificate file's leaf at start and then every
``period`` (a replaced file is read again), and

- logs ``tls.certificate_expiring`` (warning) when one expires within ``warn_days``, and
  ``tls.certificate_expired`` (error) once it has; each at most once a day per certificate and
  expiry date, so a renewed file is reported at once, and a daemon left running keeps reminding;
- shows ``reconciler_tls_certificate_expiry_timestamp_seconds{server}`` at every scrape: the Unix
  time the leaf expires, as cert-manager's ``certmanager_certificate_expiration_timestamp_seconds``
  (alert on ``... - time() < 14 * 86400``).

A file that cannot be read is logged (``tls.certificate_unreadable``) and its series left out; the
TLS stack's own reload keeps serving the certificate it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.errors import UsageError
from reconciler.xds.tls import certificate_not_after

__all__ = ["CertificateExpiry"]

log = structlog.get_logger("reconciler.engine.certificates")

_DAY = 86400.0
#: How each server picks up a renewed certificate.
_RENEWAL = {
    "xds": "replace the file: new connections get it without a restart",
    "api": "replace the file and restart the daemon: the API reads it at start",
}


class CertificateExpiry(Collector):
    """Certificates by the server they serve (``{"xds": path, "api": path}``), watched for expiry."""

    def __init__(self, certificates: Mapping[str, Path], *, warn_days: float, clock: Callable[[], float]) -> None:
        self._certificates = dict(certificates)
        self._warn_seconds = warn_days * _DAY
        self._clock = clock
        self._expiry: dict[str, float] = {}
        # (server) -> (expiry it was reported for, when): the once-a-day rule.
        self._reported: dict[str, tuple[float, float]] = {}

    @property
    def watched(self) -> bool:
        return bool(self._certificates)

    def check(self) -> None:
        """Read every certificate again; log those expiring within the warning window (once a day each)."""
        now = self._clock()
        for server, path in self._certificates.items():
            try:
                expiry = certificate_not_after(path).timestamp()
            except UsageError as error:
                self._expiry.pop(server, None)
                log.warning("tls.certificate_unreadable", server=server, file=str(path), error=str(error))
                continue
            self._expiry[server] = expiry
            left = expiry - now
            if left > self._warn_seconds:
                continue
            reported = self._reported.get(server)
            if reported is not None and reported[0] == expiry and now - reported[1] < _DAY:
                continue
            self._reported[server] = (expiry, now)
            fields = {
                "server": server,
                "file": str(path),
                "not_after": datetime.fromtimestamp(expiry, UTC).isoformat(timespec="seconds"),
            }
            if left <= 0:
                log.error("tls.certificate_expired", **fields, hint="TLS handshakes fail: replace the file now")
            else:
                log.warning(
                    "tls.certificate_expiring",
                    **fields,
                    days_left=round(left / _DAY, 1),
                    hint=_RENEWAL.get(server, "replace the file"),
                )

    async def run(self, *, period: float) -> None:
        """:meth:`check` every ``period`` seconds until cancelled (file reads in a worker thread); the first
        check is the caller's, at start, so the log and the gauge have it before anything is served."""
        while True:
            await asyncio.sleep(period)
            await asyncio.to_thread(self.check)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "reconciler_tls_certificate_expiry_timestamp_seconds",
            "When the serving certificate (its leaf) expires, Unix time, by server (xds, api).",
            labels=["server"],
        )
        for server, expiry in sorted(self._expiry.items()):
            gauge.add_metric([server], expiry)
        yield gauge
