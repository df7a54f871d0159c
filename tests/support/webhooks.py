"""Signed push payloads for the webhook tests (the pure verification in tests/sources, the endpoints in tests/api)."""

from __future__ import annotations

import hashlib
import hmac
import json

__all__ = ["PUSH", "SECRET", "SHA", "github_headers", "sign"]

SECRET = b"It's a Secret to Everybody"
SHA = "4f6c8a1d0b3e5f7a9c2d4e6f8a0b1c3d5e7f9a2b"
PUSH = json.dumps({"ref": "refs/heads/main", "after": SHA, "repository": {"name": "mesh"}}).encode()


def sign(body: bytes, secret: bytes = SECRET) -> str:
    """GitHub's ``X-Hub-Signature-256`` of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def github_headers(body: bytes, *, event: str = "push", secret: bytes = SECRET) -> dict[str, str]:
    """The headers GitHub sends with a signed ``event``."""
    return {
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
    }
