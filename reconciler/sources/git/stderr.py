"""What git's stderr says went wrong: one failure class per kind, or a corrupt clone.

Lowercased fragments of git's stderr, per failure. Lines starting "remote:" are the
server talking about *its* repository and never count as local corruption.
"""

from __future__ import annotations

import re

from git.exc import GitCommandError

from reconciler.errors import AuthError, BranchNotFoundError, HostKeyError, SourceError, StateDirNotWritableError

__all__ = ["classify", "explain", "looks_corrupt", "stderr_of"]

# ssh's own words (OpenSSH): the host it could not verify, and, for a changed key, the key it was sent.
_UNKNOWN_HOST_KEY = re.compile(r"no \S+ host key is known for (\S+) and you have requested strict checking", re.I)
_CHANGED_HOST_KEY = re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED")
_SENT_FINGERPRINT = re.compile(r"key sent by the remote host is\s+(SHA256:[A-Za-z0-9+/=]+)")
_OFFENDING_HOST = re.compile(r"Host key for (\S+) has changed")

_AUTH_MARKERS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "permission denied (publickey",
    "host key verification failed",
    "http basic: access denied",
    "invalid username or password",
    "returned error: 401",
    "returned error: 403",
)
_BRANCH_MARKERS = ("couldn't find remote ref",)
_CORRUPT_MARKERS = (
    "not a git repository",
    "bad object",
    "is corrupt",
    "corrupt loose object",
    "unable to read",
    "bad config",
    "object file",
    "packfile",
    # A lock left by a fetch that was killed mid-way blocks every later fetch; a
    # fresh clone is the dependable way out (this process is the only writer).
    "cannot lock ref",
    ".lock': file exists",
)
# Local lines saying the state dir cannot be written (full disk, read-only mount, wrong
# owner). Checked before the corruption markers: "unable to write loose object file: No
# space left on device" names an object file, yet a fresh clone would fail the same way.
_STORAGE_MARKERS = (
    "no space left on device",
    "disk quota exceeded",
    "read-only file system",
    "permission denied",
    "insufficient permission",
)


def stderr_of(error: GitCommandError) -> str:
    """The text git wrote to stderr, without gitpython's decoration."""
    # gitpython decorates stderr as "\n  stderr: '<text>'".
    text = str(error.stderr or "")
    prefix = "\n  stderr: '"
    if text.startswith(prefix) and text.endswith("'"):
        text = text[len(prefix) : -1]
    return text.strip()


def _local_lines(stderr: str) -> list[str]:
    """git's own stderr lines, lowercased, without the server's "remote:" lines."""
    lowered = (line.lower() for line in stderr.splitlines())
    return [line for line in lowered if not line.lstrip().startswith("remote:")]


def classify(stderr: str) -> type[SourceError] | None:
    """The named failure git's stderr (or an OSError's text) shows, ``None`` when it is a plain failure."""
    lowered = stderr.lower()
    if "host key verification failed" in lowered:
        return HostKeyError
    if any(marker in lowered for marker in _AUTH_MARKERS):
        return AuthError
    if any(marker in lowered for marker in _BRANCH_MARKERS):
        return BranchNotFoundError
    if any(marker in line for line in _local_lines(stderr) for marker in _STORAGE_MARKERS):
        return StateDirNotWritableError
    return None


def looks_corrupt(stderr: str) -> bool:
    """Whether git's stderr says the local clone is damaged (a fresh clone is the way out)."""
    return any(marker in line for line in _local_lines(stderr) for marker in _CORRUPT_MARKERS)


def explain(stderr: str) -> str:
    """``stderr`` in a sentence where git's or ssh's own words bury the point (ssh's host key banner)."""
    unknown = _UNKNOWN_HOST_KEY.search(stderr)
    if unknown:
        return (
            f"Host key verification failed: the SSH host key of {unknown.group(1)} is not in the known_hosts file "
            "(--git-known-hosts); add it (ssh-keyscan the host and check the fingerprint with its admins)"
        )
    if _CHANGED_HOST_KEY.search(stderr):
        host = _OFFENDING_HOST.search(stderr)
        sent = _SENT_FINGERPRINT.search(stderr)
        return (
            f"Host key verification failed: the SSH host key of {host.group(1) if host else 'the remote'} differs "
            f"from the one in the known_hosts file (--git-known-hosts); it sent {sent.group(1) if sent else 'another'}"
            " (a reinstalled server, or someone in between): refused"
        )
    return stderr
