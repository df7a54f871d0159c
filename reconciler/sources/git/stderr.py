"""What git's stderr says went wrong: one failure class per kind, or a corrupt clone.

Lowercased fragments of git's stderr, per failure. Lines starting "remote:" are the
server talking about *its* repository and never count as local corruption.
"""

from __future__ import annotations

from git.exc import GitCommandError

from reconciler.errors import AuthError, BranchNotFoundError, SourceError, StateDirNotWritableError

__all__ = ["classify", "looks_corrupt", "stderr_of"]

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
