"""The git edge: keep a local clone of one branch and turn new commits into Revisions.

:class:`GitSource` owns a bare clone at ``state_dir/repo``. Each :meth:`GitSource.poll`
fetches the one branch and, when its head moved *and* the config directory's tree
changed, reads the config files straight from the commit's tree (a bare clone has no
working tree to get out of sync). Every gitpython or OS failure leaves as a
:class:`~reconciler.errors.SourceError` whose ``reason`` is one of
:class:`GitFailure`; the last good clone is never removed because a fetch failed.

Calls block on the network and on git subprocesses: the engine runs them with
``asyncio.to_thread``. A lock serialises them, so a webhook-triggered poll and a
timer-triggered poll cannot race inside the same repository. :meth:`GitSource.abort`
(shutdown) is the one call that does not take the lock: it ends a running fetch or
clone from another thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import git
import structlog
from git.exc import GitCommandError, GitError, InvalidGitRepositoryError, NoSuchPathError, ODBError
from git.objects import Blob, Commit, Tree

from reconciler.errors import SourceError, UsageError
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits, SkippedFile, SkipReason, plan_reads
from reconciler.model.text import excerpt
from reconciler.sources.revision import ALLOW_REMOVAL_FILE, Revision, is_config_file

__all__ = ["GitFailure", "GitSource", "redact_url"]

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

#: git's ``mode`` for a regular file (either permission); a symlinked config file is skipped with a warning.
_REGULAR_FILE_MODES = frozenset({0o100644, 0o100755})

# Lowercased fragments of git's stderr, per failure. Lines starting "remote:" are the
# server talking about *its* repository and never count as local corruption.
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
# Our own leftovers from an interrupted (re-)clone; safe to delete when starting a new one.
_TMP_PREFIXES = ("repo.clone-", "repo.old-")
_STDERR_LIMIT = 600
# How often a running network command checks for abort() and its deadline.
_WAIT_SLICE_SECONDS = 0.1
# SIGTERM lets git remove its lock files; SIGKILL follows if it has not exited by then.
_KILL_GRACE_SECONDS = 5.0
# Defaults for git's own stall detection on http(s): a transfer slower than 1000 bytes/s
# for 30 s ends with an error long before the overall timeout. The daemon's environment wins.
_HTTP_LOW_SPEED_DEFAULTS = {"GIT_HTTP_LOW_SPEED_LIMIT": "1000", "GIT_HTTP_LOW_SPEED_TIME": "30"}


class GitFailure(StrEnum):
    """The ``reason`` carried by every :class:`SourceError` the git source raises."""

    #: The fetch failed (network, server, timeout); the existing clone is kept.
    FETCH_FAILED = "FetchFailed"
    #: The remote refused the credentials, or there were none to give.
    AUTH_FAILED = "AuthFailed"
    #: The remote has no such branch.
    BRANCH_NOT_FOUND = "BranchNotFound"
    #: There is no usable clone and making one failed.
    CLONE_FAILED = "CloneFailed"
    #: The config path is not a directory at the fetched commit.
    PATH_NOT_FOUND = "PathNotFound"
    #: Reading the config out of the clone failed.
    READ_FAILED = "ReadFailed"
    #: The state dir cannot be written (disk full, read-only, permissions); never a reason to re-clone.
    STATE_DIR_NOT_WRITABLE = "StateDirNotWritable"
    #: :meth:`GitSource.abort` was called (shutdown); the clone is kept as it was.
    ABORTED = "Aborted"


class _CorruptClone(Exception):
    """Internal: the local clone cannot be used and must be replaced by a fresh one."""


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


def _normalise_path(path: str) -> str:
    pure = PurePosixPath(path.strip().replace("\\", "/"))
    parts = [part for part in pure.parts if part not in {"/", "."}]
    if ".." in parts:
        raise UsageError(f"config path {path!r} must stay inside the repository (no '..')")
    return "/".join(parts)


def _validate_branch(branch: str) -> str:
    # A leading '-' would be read as an option by git; the rest mirrors git's own
    # check-ref-format rules closely enough to reject typos early.
    bad = (
        not branch
        or branch.startswith(("-", "/", "refs/"))
        or branch.endswith(("/", ".lock", "."))
        or ".." in branch
        or "@{" in branch
        or any(ch.isspace() or ch in "~^:?*[\\" for ch in branch)
    )
    if bad:
        raise UsageError(f"invalid branch name {branch!r}")
    return branch


def _validate_url(url: str) -> str:
    if not url or url.startswith("-"):
        raise UsageError(f"invalid git URL {url!r}")
    if url.lower().startswith("ext::"):
        # ext:: runs an arbitrary command; git refuses it by default and so do we.
        raise UsageError("git 'ext::' URLs are not allowed")
    return url


def _stderr_of(error: GitCommandError) -> str:
    # gitpython decorates stderr as "\n  stderr: '<text>'"; recover the text git wrote.
    text = str(error.stderr or "")
    prefix = "\n  stderr: '"
    if text.startswith(prefix) and text.endswith("'"):
        text = text[len(prefix) : -1]
    return text.strip()


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    """Send ``signum`` to the process group ``process`` leads (started with ``process_group=0``)."""
    with contextlib.suppress(ProcessLookupError):  # already gone, with all of its helpers
        os.killpg(process.pid, signum)


def _local_lines(stderr: str) -> list[str]:
    """git's own stderr lines, lowercased, without the server's "remote:" lines."""
    lowered = (line.lower() for line in stderr.splitlines())
    return [line for line in lowered if not line.lstrip().startswith("remote:")]


def _classify(stderr: str) -> GitFailure | None:
    """The named failure git's stderr (or an OSError's text) shows, ``None`` when it is a plain failure."""
    lowered = stderr.lower()
    if any(marker in lowered for marker in _AUTH_MARKERS):
        return GitFailure.AUTH_FAILED
    if any(marker in lowered for marker in _BRANCH_MARKERS):
        return GitFailure.BRANCH_NOT_FOUND
    if any(marker in line for line in _local_lines(stderr) for marker in _STORAGE_MARKERS):
        return GitFailure.STATE_DIR_NOT_WRITABLE
    return None


def _looks_corrupt(stderr: str) -> bool:
    return any(marker in line for line in _local_lines(stderr) for marker in _CORRUPT_MARKERS)


def _walk(tree: Tree, prefix: str = "") -> Iterator[tuple[str, Blob]]:
    """Every blob under ``tree`` (files, symlinks) with its ``/``-joined path, skipping hidden dirs."""
    for blob in tree.blobs:
        yield f"{prefix}{blob.name}", blob
    for subtree in tree.trees:
        # Pruned here, not just filtered later, so a big hidden dir (.github, vendored
        # docs) is never read at all.
        if not subtree.name.startswith("."):
            yield from _walk(subtree, f"{prefix}{subtree.name}/")


class GitSource:
    """One branch of one git remote, as a stream of config :class:`Revision` values.

    ``path`` is the config directory inside the repository (``""`` for the root).
    ``timeout_seconds`` bounds each git network operation so a hung server cannot
    wedge the engine's worker thread; :meth:`abort` ends one at once. Config files are
    read within ``limits``; symlinks and files over them are left out of the revision.
    """

    def __init__(
        self,
        *,
        url: str,
        branch: str = "main",
        path: str = "",
        state_dir: Path,
        timeout_seconds: float = 120.0,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        self._url = _validate_url(url)
        self._branch = _validate_branch(branch)
        self._path = _normalise_path(path)
        self._state_dir = Path(state_dir)
        self._repo_dir = self._state_dir / "repo"
        self._timeout = timeout_seconds
        self._limits = limits
        self._lock = threading.Lock()
        # Set once by abort() and never cleared: the daemon is shutting down.
        self._aborted = threading.Event()
        self._repo: git.Repo | None = None
        self._head_sha: str | None = None
        # What poll() last looked at: commits are deduplicated by SHA, and commits
        # that leave the config directory untouched by its tree id.
        self._seen_sha: str | None = None
        self._seen_tree: str | None = None
        self._log_context = {"url": redact_url(url), "branch": branch, "path": self._path or "."}

    # -- public -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The remote URL with credentials redacted (safe to log and display)."""
        return redact_url(self._url)

    @property
    def branch(self) -> str:
        """The branch followed."""
        return self._branch

    @property
    def path(self) -> str:
        """The config directory inside the repository, ``""`` for the root."""
        return self._path

    @property
    def repo_dir(self) -> Path:
        """Where the local bare clone lives."""
        return self._repo_dir

    @property
    def head_sha(self) -> str | None:
        """The branch head as of the last successful fetch, ``None`` before one."""
        return self._head_sha

    def fetch(self) -> str:
        """Clone if needed, fetch the branch and return its head SHA.

        Raises :class:`SourceError` with reason ``CloneFailed`` (no usable clone and the
        first clone failed), ``FetchFailed``, ``AuthFailed``, ``BranchNotFound``,
        ``StateDirNotWritable`` or ``Aborted``. The existing clone is left in place on every failure.
        """
        with self._lock:
            return self._fetch_locked()

    def poll(self) -> Revision | None:
        """Fetch; return the head's Revision if the head moved and the config changed.

        Returns ``None`` when the head is the one already returned, or when the new
        commits did not touch the config directory. The first successful poll after
        construction always returns the head revision.
        """
        with self._lock:
            sha = self._fetch_locked()
            self._raise_if_aborted()
            if sha == self._seen_sha:
                return None
            tree_id = self._with_reclone(lambda repo: self._config_tree(repo, sha).hexsha)
            if tree_id == self._seen_tree:
                self._log.info("git.commit_skipped", sha=sha[:12], reason="ConfigUnchanged")
                self._seen_sha = sha
                return None
            revision = self._with_reclone(lambda repo: self._read(repo, sha))
            # An abort() that came while reading still wins: whoever aborted is shutting down.
            self._raise_if_aborted()
            self._seen_sha = sha
            self._seen_tree = revision.config_tree
            self._log.info(
                "git.revision",
                sha=revision.short_sha,
                files=len(revision.files),
                author=revision.author,
                subject=excerpt(revision.message.splitlines()[0]) if revision.message else "",
            )
            return revision

    def read(self, sha: str | None = None) -> Revision:
        """The Revision at ``sha`` (default: the fetched head) from the local clone, no fetch.

        Does not affect what :meth:`poll` considers new.
        """
        with self._lock:
            repo = self._open()
            if repo is None:
                raise SourceError(
                    f"no local clone of {self.url} yet; poll or fetch first", reason=GitFailure.READ_FAILED
                )
            wanted = sha or self._head_sha or self._ref_sha(repo)
            if wanted is None:
                raise SourceError(f"branch {self._branch!r} has not been fetched yet", reason=GitFailure.READ_FAILED)
            # Resolve first: an unknown SHA is the caller's mistake, and must not be
            # mistaken for a corrupt clone (which would trigger a re-clone).
            target = self._resolve_commit(repo, wanted)
            if target is None:
                raise SourceError(
                    f"commit {wanted!r} is not in the local clone of {self.url}", reason=GitFailure.READ_FAILED
                )
            return self._with_reclone(lambda current: self._read(current, target))

    def abort(self) -> None:
        """End a :meth:`poll` or :meth:`fetch` running in another thread; it raises ``Aborted``.

        Its git fetch or clone gets SIGTERM (git removes its lock files) within a fraction of
        a second, SIGKILL if it has not exited 5 s later. The clone on disk is kept as it was,
        never replaced. Final: every later poll or fetch raises ``Aborted`` at once, so one
        that was about to start when the daemon began shutting down cannot hang either.
        Safe from any thread, at any time; :meth:`read` of the local clone still works.
        """
        # Only an Event: the poll's own thread sees it and signals git (and logs), so this
        # stays cheap and safe from wherever shutdown runs.
        self._aborted.set()

    def close(self) -> None:
        """Stop gitpython's helper processes; the clone on disk stays for the next run."""
        with self._lock:
            self._close_repo()

    def __enter__(self) -> GitSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- fetching -----------------------------------------------------------------

    @property
    def _log(self) -> Any:
        # Bound per call, not once in __init__: a logger bound before the daemon
        # configures structlog would keep the default configuration forever.
        return log.bind(**self._log_context)

    @property
    def _ref(self) -> str:
        return f"refs/remotes/origin/{self._branch}"

    @property
    def _refspec(self) -> str:
        # '+' accepts non-fast-forward updates: a force-push must not wedge the daemon.
        return f"+refs/heads/{self._branch}:{self._ref}"

    def _fetch_locked(self) -> str:
        self._raise_if_aborted()
        repo = self._open()
        if repo is None:
            repo = self._clone()
            before = None
        else:
            before = self._ref_sha(repo)
            try:
                self._git_fetch(repo)
                if self._ref_sha(repo) is None:
                    # The fetch said it succeeded yet the ref does not resolve.
                    raise _CorruptClone(f"{self._ref} does not resolve after fetch")
            except _CorruptClone as corrupt:
                self._log.warning("git.clone_corrupt", reason="CorruptClone", error=str(corrupt))
                repo = self._clone()
        sha = self._ref_sha(repo)
        if sha is None:
            raise SourceError(
                f"{self._ref} does not resolve in a fresh clone of {self.url}", reason=GitFailure.CLONE_FAILED
            )
        previous = before or self._head_sha
        if previous is not None and previous != sha and not self._is_ancestor(repo, previous, sha):
            # Like Flux: the remote is the source of truth, so follow it, but say so
            # loudly: whoever force-pushed may have dropped commits by accident.
            self._log.warning("git.history_rewritten", reason="HistoryRewritten", old=previous[:12], new=sha[:12])
        if sha != self._head_sha:
            self._log.debug("git.fetched", sha=sha[:12])
        self._head_sha = sha
        return sha

    def _git_fetch(self, repo: git.Repo) -> None:
        """``git fetch`` the branch; raise SourceError, or _CorruptClone when the clone is bad."""
        try:
            self._run_network(repo, "fetch", "--no-tags", "origin", self._refspec)
        except GitCommandError as error:
            stderr = _stderr_of(error)
            failure = _classify(stderr)
            if failure is None and _looks_corrupt(stderr):
                raise _CorruptClone(stderr) from error
            raise self._error("git fetch", stderr, failure or GitFailure.FETCH_FAILED) from error
        except (GitError, OSError) as error:
            raise self._error("git fetch", str(error), _classify(str(error)) or GitFailure.FETCH_FAILED) from error

    def _raise_if_aborted(self) -> None:
        if self._aborted.is_set():
            raise SourceError(f"git source {self.url} was aborted (shutting down)", reason=GitFailure.ABORTED)

    def _run_network(self, repo: git.Repo, *args: str) -> None:
        """Run ``git args...`` in ``repo``, bounded by the timeout and cut short by :meth:`abort`.

        Not gitpython's ``kill_after_timeout``: that cannot be triggered from another
        thread, and it SIGKILLs, which leaves git's lock files behind. Raises
        GitCommandError like gitpython (stderr is git's, or the timeout's message), and
        SourceError ``Aborted`` when :meth:`abort` ended the command.
        """
        self._raise_if_aborted()
        command = [str(git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"), *args]
        # As gitpython builds it: English messages (the markers above match them), plus
        # the repository's settings from _configure.
        env = {**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **repo.git.environment()}
        process = subprocess.Popen(
            command,
            cwd=repo.git_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Its own process group, so a signal also reaches git's helpers (git-remote-http, ssh).
            process_group=0,
        )
        deadline = time.monotonic() + self._timeout
        signalled_at: float | None = None
        aborted = timed_out = killed = False
        try:
            while True:
                try:
                    _, stderr = process.communicate(timeout=_WAIT_SLICE_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if signalled_at is None and (self._aborted.is_set() or now >= deadline):
                    aborted = self._aborted.is_set()
                    timed_out = not aborted
                    _signal_group(process, signal.SIGTERM)
                    signalled_at = now
                elif signalled_at is not None and not killed and now - signalled_at >= _KILL_GRACE_SECONDS:
                    _signal_group(process, signal.SIGKILL)
                    killed = True
        finally:
            if process.returncode is None:  # only when an exception interrupted the wait
                _signal_group(process, signal.SIGKILL)
                process.wait()
                for stream in (process.stdout, process.stderr):
                    if stream is not None:
                        stream.close()
        if aborted:
            self._log.info("git.aborted", command=args[0])
            raise SourceError(
                f"git {args[0]} of {self.url} (branch {self._branch!r}) was aborted (shutting down)",
                reason=GitFailure.ABORTED,
            )
        if timed_out:
            message = f'Timeout: the command "git {" ".join(args)}" did not complete in {self._timeout:g} secs.'
            raise GitCommandError(command, process.returncode, message)
        if process.returncode != 0:
            raise GitCommandError(command, process.returncode, stderr.decode("utf-8", errors="replace").strip())

    def _clone(self) -> git.Repo:
        """Clone into a temporary dir and move it into place only once it is complete.

        A half-written clone therefore never sits at ``repo_dir``, and an existing
        (corrupt) one is only swapped out after its replacement fetched successfully.
        """
        self._close_repo()
        try:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            self._remove_leftovers()
            staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIXES[0], dir=self._state_dir))
        except OSError as error:
            failure = _classify(str(error)) or GitFailure.CLONE_FAILED
            raise self._error("preparing the clone", str(error), failure) from error
        self._log.info("git.cloning", dest=str(self._repo_dir))
        try:
            with git.Repo.init(staging, bare=True) as fresh:
                self._configure(fresh)
                try:
                    self._run_network(fresh, "fetch", "--no-tags", "origin", self._refspec)
                except GitCommandError as error:
                    stderr = _stderr_of(error)
                    raise self._error("git clone", stderr, _classify(stderr) or GitFailure.CLONE_FAILED) from error
            self._install(staging)
        except SourceError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        except (GitError, OSError) as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise self._error("git clone", str(error), _classify(str(error)) or GitFailure.CLONE_FAILED) from error
        repo = self._open()
        if repo is None:  # pragma: no cover - we just moved a valid clone into place
            raise SourceError(f"clone of {self.url} vanished after cloning", reason=GitFailure.CLONE_FAILED)
        self._log.info("git.cloned", dest=str(self._repo_dir))
        return repo

    def _install(self, staging: Path) -> None:
        if not self._repo_dir.exists():
            os.replace(staging, self._repo_dir)
            return
        # Two renames, not rmtree-then-rename: if the second rename failed we would
        # otherwise have no clone at all.
        retired = self._state_dir / f"{_TMP_PREFIXES[1]}{uuid.uuid4().hex}"
        os.replace(self._repo_dir, retired)
        try:
            os.replace(staging, self._repo_dir)
        except OSError:
            os.replace(retired, self._repo_dir)
            raise
        shutil.rmtree(retired, ignore_errors=True)

    def _remove_leftovers(self) -> None:
        for entry in self._state_dir.iterdir():
            if entry.name.startswith(_TMP_PREFIXES) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    def _open(self) -> git.Repo | None:
        """The clone at ``repo_dir``; ``None`` if there is none or it is unusable.

        Raises SourceError (not ``None``: a fresh clone would not help) when the clone
        is fine but its config cannot be written.
        """
        if self._repo is not None:
            return self._repo
        if not self._repo_dir.exists():
            return None
        repo: git.Repo | None = None
        try:
            repo = git.Repo(self._repo_dir)
            if not repo.bare:
                raise InvalidGitRepositoryError(f"{self._repo_dir} is not a bare repository")
            self._configure(repo)
        except SourceError:
            if repo is not None:
                repo.close()
            raise
        except (InvalidGitRepositoryError, NoSuchPathError, GitError, OSError, ValueError) as error:
            if repo is not None:
                repo.close()
            # Unusable: report it as absent so the caller clones afresh. The directory
            # stays until a new clone has succeeded and replaces it.
            self._log.warning("git.clone_corrupt", reason="CorruptClone", error=f"{type(error).__name__}: {error}")
            return None
        self._repo = repo
        return repo

    def _configure(self, repo: git.Repo) -> None:
        """Set the environment git runs with and the remote URL.

        Raises GitCommandError when the config cannot be read (a corrupt clone) and
        SourceError ``StateDirNotWritable`` when it cannot be written.
        """
        # Never wait for a password prompt: a daemon has nobody to type it.
        repo.git.update_environment(
            GIT_TERMINAL_PROMPT="0",
            GCM_INTERACTIVE="never",
            **{name: os.environ.get(name, default) for name, default in _HTTP_LOW_SPEED_DEFAULTS.items()},
        )
        try:
            current = str(repo.git.config("--get", "remote.origin.url"))
        except GitCommandError as error:
            if error.status != 1:  # 1: not set; anything else: git cannot read the config
                raise
            current = None
        # Written only when it differs (the URL may have changed since the clone was
        # made): a write on every open fails on a full disk and blocks even reading.
        if current != self._url:
            try:
                repo.git.config("remote.origin.url", self._url)
            except GitCommandError as error:
                # Nothing but the write failed: the clone is not corrupt, and a re-clone would fail too.
                detail = _stderr_of(error) or str(error)
                raise self._error("git config", detail, GitFailure.STATE_DIR_NOT_WRITABLE) from error

    def _close_repo(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def _ref_sha(self, repo: git.Repo) -> str | None:
        return self._resolve_commit(repo, self._ref)

    def _resolve_commit(self, repo: git.Repo, rev: str) -> str | None:
        if rev.startswith("-"):
            return None  # never let a caller-supplied revision be read as an option
        try:
            return str(repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")).strip() or None
        except GitCommandError:
            return None

    def _is_ancestor(self, repo: git.Repo, old: str, new: str) -> bool:
        try:
            repo.git.merge_base("--is-ancestor", old, new)
        except GitCommandError:
            # Exit 1 means "not an ancestor"; anything else means the old commit is gone
            # (gc'd after a rewrite), so ancestry cannot be shown either.
            return False
        return True

    def _error(self, operation: str, detail: str, failure: GitFailure) -> SourceError:
        detail = detail.replace(self._url, self.url)
        password = urlsplit(self._url).password if "://" in self._url else None
        if password:
            detail = detail.replace(password, "***")
        if len(detail) > _STDERR_LIMIT:
            detail = detail[:_STDERR_LIMIT] + "…"
        event = "git.clone_failed" if operation in {"git clone", "preparing the clone"} else "git.fetch_failed"
        self._log.warning(event, reason=str(failure), operation=operation, error=detail)
        return SourceError(
            f"{operation} of {self.url} (branch {self._branch!r}) failed: {detail or 'no detail from git'}",
            reason=failure,
        )

    # -- reading ------------------------------------------------------------------

    def _with_reclone(self, action: Callable[[git.Repo], _T]) -> _T:
        """Run ``action`` on the clone; if the clone turns out corrupt, re-clone and retry once."""
        repo = self._open() or self._clone()
        try:
            return action(repo)
        except SourceError:
            raise
        except (GitError, ODBError, ValueError, OSError) as error:
            self._log.warning("git.clone_corrupt", reason="CorruptClone", error=f"{type(error).__name__}: {error}")
        repo = self._clone()
        try:
            return action(repo)
        except SourceError:
            raise
        except (GitError, ODBError, ValueError, OSError) as error:
            raise SourceError(
                f"reading the config from the clone of {self.url} failed: {error}",
                reason=GitFailure.READ_FAILED,
            ) from error

    def _commit(self, repo: git.Repo, sha: str) -> Commit:
        return repo.commit(sha)

    def _config_tree(self, repo: git.Repo, sha: str) -> Tree:
        commit = self._commit(repo, sha)
        if not self._path:
            return commit.tree
        try:
            found = commit.tree / self._path
        except KeyError:
            found = None
        if not isinstance(found, Tree):
            raise SourceError(
                f"config path {self._path!r} is not a directory at commit {sha[:12]} "
                f"of branch {self._branch!r} in {self.url}",
                reason=GitFailure.PATH_NOT_FOUND,
            )
        return found

    def _read(self, repo: git.Repo, sha: str) -> Revision:
        tree = self._config_tree(repo, sha)
        commit = self._commit(repo, sha)
        blobs: dict[str, Blob] = {}
        skipped: list[SkippedFile] = []
        for relative, blob in _walk(tree):
            if not is_config_file(relative):
                continue
            if blob.mode in _REGULAR_FILE_MODES:
                blobs[relative] = blob
            else:
                # A symlink's target may lie outside the config path or the repository: never followed, but said.
                self._log.warning("git.config_file_skipped", sha=sha[:12], file=relative, reason="Symlink")
                skipped.append(SkippedFile(relative, SkipReason.SYMLINK))
        # Sizes come from the object headers: a file over the limit is never read into memory.
        readable, too_large = plan_reads({path: blob.size for path, blob in blobs.items()}, self._limits)
        skipped.extend(too_large)
        files = {path: blobs[path].data_stream.read() for path in readable}
        message = commit.message
        if isinstance(message, bytes):
            message = message.decode("utf-8", errors="replace")
        author = f"{commit.author.name} <{commit.author.email}>"
        return Revision(
            sha=commit.hexsha,
            files=files,
            config_tree=tree.hexsha,
            message=message.strip(),
            author=author,
            committed_at=commit.committed_datetime,
            skipped=tuple(skipped),
            allow_removal=any(blob.name == ALLOW_REMOVAL_FILE for blob in tree.blobs),
        )
