"""Push webhooks from GitHub and GitLab: verify the sender, then extract what was pushed.

Pure functions over bytes and headers (plus :func:`load_secret`, which reads the
secret once at start-up); the HTTP endpoint in ``reconciler.api.webhook`` wires them
to aiohttp. A webhook only *wakes* the git source early: the commit is always read
from git itself, never trusted from the payload, so a forged ``after`` SHA could at
worst cause one extra fetch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from reconciler.errors import PayloadError, SignatureError, UsageError

__all__ = [
    "GITHUB_EVENT_HEADER",
    "GITHUB_SIGNATURE_HEADER",
    "GITLAB_EVENT_HEADER",
    "GITLAB_TOKEN_HEADER",
    "MAX_JSON_DEPTH",
    "Provider",
    "PushEvent",
    "detect_provider",
    "load_secret",
    "loads_bounded",
    "parse_push_event",
    "verify_github_signature",
    "verify_gitlab_token",
]

GITHUB_SIGNATURE_HEADER = "X-Hub-Signature-256"
GITHUB_EVENT_HEADER = "X-GitHub-Event"
GITLAB_TOKEN_HEADER = "X-Gitlab-Token"
GITLAB_EVENT_HEADER = "X-Gitlab-Event"

_SIGNATURE_PREFIX = "sha256="
_BRANCH_PREFIX = "refs/heads/"

#: How deeply a webhook payload may nest (a push nests about 5 levels); Python's parser recurses per level.
MAX_JSON_DEPTH = 64
# A JSON string, escapes included: its brackets do not nest anything. Linear (no nested quantifiers).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class Provider(StrEnum):
    """Who sent the webhook; decides how it is verified and parsed."""

    GITHUB = "github"
    GITLAB = "gitlab"


@dataclass(frozen=True, slots=True)
class PushEvent:
    """A push as the git host reported it. ``after_sha`` is a hint, not trusted."""

    ref: str
    after_sha: str
    provider: Provider

    @property
    def branch(self) -> str | None:
        """The branch name for ``refs/heads/...`` refs, ``None`` for tags and others."""
        if self.ref.startswith(_BRANCH_PREFIX):
            return self.ref[len(_BRANCH_PREFIX) :]
        return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that also works on a plain ``dict``."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def _require_secret(secret: bytes) -> None:
    # An HMAC under an empty key is computable by anyone; never accept one.
    if not secret:
        raise SignatureError("no webhook secret is configured")


def verify_github_signature(body: bytes, *, header: str | None, secret: bytes) -> None:
    """Check GitHub's ``X-Hub-Signature-256: sha256=<hex>`` (HMAC-SHA256 of the raw body).

    Raises :class:`SignatureError` when the header is missing, malformed or wrong.
    """
    _require_secret(secret)
    if not header:
        raise SignatureError(f"missing {GITHUB_SIGNATURE_HEADER} header")
    header = header.strip()
    if not header.startswith(_SIGNATURE_PREFIX) or not header.isascii():
        raise SignatureError(f"malformed {GITHUB_SIGNATURE_HEADER} header (expected 'sha256=<hex>')")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    received = header[len(_SIGNATURE_PREFIX) :].lower()
    if not hmac.compare_digest(expected.encode("ascii"), received.encode("ascii")):
        raise SignatureError(f"{GITHUB_SIGNATURE_HEADER} does not match the payload")


def verify_gitlab_token(header: str | None, secret: bytes) -> None:
    """Check GitLab's ``X-Gitlab-Token`` (the shared secret itself) in constant time.

    Both sides are hashed first so that the comparison does not reveal the secret's
    length either. Raises :class:`SignatureError` when missing or wrong.
    """
    _require_secret(secret)
    if not header:
        raise SignatureError(f"missing {GITLAB_TOKEN_HEADER} header")
    received = hashlib.sha256(header.encode("utf-8", errors="surrogateescape")).digest()
    expected = hashlib.sha256(secret).digest()
    if not hmac.compare_digest(received, expected):
        raise SignatureError(f"{GITLAB_TOKEN_HEADER} does not match")


def detect_provider(headers: Mapping[str, str]) -> Provider | None:
    """GitHub or GitLab, judged by the headers each always sends; ``None`` if neither."""
    if _header(headers, GITHUB_SIGNATURE_HEADER) is not None or _header(headers, GITHUB_EVENT_HEADER):
        return Provider.GITHUB
    if _header(headers, GITLAB_TOKEN_HEADER) is not None or _header(headers, GITLAB_EVENT_HEADER):
        return Provider.GITLAB
    return None


def loads_bounded(text: str, *, max_depth: int) -> Any:
    """``json.loads(text)``, refused with :class:`PayloadError` first when arrays and objects nest deeper than
    ``max_depth``: a 100,000-deep payload would otherwise end the parse in a RecursionError.

    The depth is counted on the text with its strings left out, in time linear in its length.
    """
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > max_depth:
                raise PayloadError(f"JSON nests deeper than {max_depth} levels")
    return json.loads(text)


def _decode_json(*, headers: Mapping[str, str], body: bytes, max_depth: int) -> Mapping[str, Any]:
    content_type = (_header(headers, "Content-Type") or "").split(";")[0].strip().lower()
    try:
        if content_type == "application/x-www-form-urlencoded":
            # GitHub's "application/x-www-form-urlencoded" content type: JSON in a 'payload' field.
            fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
            document = loads_bounded(fields["payload"][0], max_depth=max_depth)
        else:
            document = loads_bounded(body.decode("utf-8"), max_depth=max_depth)
    except PayloadError:
        raise
    except (UnicodeDecodeError, ValueError, KeyError, IndexError) as error:
        raise PayloadError(f"webhook payload is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise PayloadError("webhook payload is not a JSON object")
    return document


def parse_push_event(
    *, provider: Provider | str, headers: Mapping[str, str], body: bytes, max_depth: int = MAX_JSON_DEPTH
) -> PushEvent | None:
    """The push in a verified webhook, or ``None`` for events that should not sync (ping, issues...).

    Raises :class:`~reconciler.errors.PayloadError` (reason ``BadPayload``) for a push whose body lacks
    ``ref``/``after``, or that is not JSON nesting at most ``max_depth`` levels. Verify the signature *before*
    calling this.
    """
    provider = Provider(provider)
    if provider is Provider.GITHUB:
        event = (_header(headers, GITHUB_EVENT_HEADER) or "").strip().lower()
        if event != "push":
            return None  # "ping" on hook creation, and any event the hook was widened to
    else:
        event = (_header(headers, GITLAB_EVENT_HEADER) or "").strip().lower()
        if event != "push hook":
            return None
    document = _decode_json(headers=headers, body=body, max_depth=max_depth)
    ref = document.get("ref")
    after = document.get("after")
    if not isinstance(ref, str) or not ref or not isinstance(after, str):
        raise PayloadError("push payload has no 'ref'/'after'")
    return PushEvent(ref=ref, after_sha=after, provider=provider)


def load_secret(*, file: Path | None, env_var: str | None, what: str = "webhook secret") -> bytes | None:
    """The webhook secret (or another one: ``what`` names it in errors) from ``file`` (preferred) or the
    environment variable ``env_var``.

    Surrounding whitespace is stripped: secret files written by ``echo`` or mounted
    from Kubernetes often end in a newline the sender never signed with. Returns
    ``None`` when neither is set. Raises :class:`UsageError` when ``file`` is given but
    unreadable or empty: a configured-but-broken secret must stop start-up, not
    silently disable verification.
    """
    if file is not None:
        try:
            secret = Path(file).read_bytes().strip()
        except OSError as error:
            raise UsageError(f"cannot read {what} file {file}: {error.strerror or error}") from error
        if not secret:
            raise UsageError(f"{what} file {file} is empty")
        return secret
    if env_var:
        value = os.environ.get(env_var, "").strip()
        if value:
            return value.encode("utf-8")
    return None
