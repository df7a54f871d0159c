"""HTTPS for the HTTP API: the server's TLS context from a certificate chain and key (PEM files)."""

from __future__ import annotations

import ssl
from pathlib import Path

from reconciler.errors import UsageError

__all__ = ["server_tls_context"]


def server_tls_context(*, cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The context to serve HTTPS with, ``None`` for plain HTTP (neither given); UsageError naming the bad file."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("--api-tls-cert and --api-tls-key go together: give both, or neither for plain HTTP")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as error:
        # The message names the files, never their content.
        raise UsageError(f"cannot load the API's TLS certificate {cert} and key {key}: {error}") from error
    return context
