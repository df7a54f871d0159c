"""Remote URLs: what may be followed, and how one is shown without its credentials."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from reconciler.errors import UsageError

__all__ = ["redact_url", "validate_url"]


def redact_url(url: str) -> str:
    """``url`` safe for logs: passwords, and http(s) user names (often tokens), become ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if not parts.scheme or "@" not in parts.netloc:
        return url  # scp-like ``git@host:path`` or a local path: no secret in it
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    if has_password:
        userinfo = f"{user}:***"
    elif parts.scheme in {"http", "https"}:
        # https://<token>@github.com/... is a documented way to pass a token.
        userinfo = "***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{hostport}"))


def validate_url(url: str) -> str:
    """``url`` unchanged; UsageError for one git would read as an option or run as a command."""
    if not url or url.startswith("-"):
        raise UsageError(f"invalid git URL {url!r}")
    if url.lower().startswith("ext::"):
        # ext:: runs an arbitrary command; git refuses it by default and so do we.
        raise UsageError("git 'ext::' URLs are not allowed")
    return url
