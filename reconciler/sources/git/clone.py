"""The local bare clone of one branch: made, opened, fetched, and replaced whole when it is unusable.

A clone is made in a temporary directory and moved into place only once complete, so a
half-written clone never sits at ``repo_dir``, and a corrupt one is swapped out only after
its replacement fetched. Every gitpython or OS failure leaves as a
:class:`~reconciler.errors.SourceError` subclass, except :class:`CorruptClone`, which asks
the caller for a fresh clone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import git
import structlog
from git.exc import GitCommandError, GitError, InvalidGitRepositoryError, NoSuchPathError, ODBError
from git.refs.reference import Reference

from reconciler.errors import (
    CloneError,
    FetchError,
    FetchTimeoutError,
    SourceAborted,
    SourceError,
    StateDirNotWritableError,
)
from reconciler.sources.git.credentials import NO_CREDENTIALS, GitCredentials, git_environment, split_credentials
from reconciler.sources.git.process import ProcessAborted, ProcessTimedOut, run_abortable
from reconciler.sources.git.stderr import classify, explain, looks_corrupt, stderr_of
from reconciler.sources.git.url import redact_url

__all__ = ["Clone", "CorruptClone"]

log = structlog.get_logger("reconciler.sources.git")

# Our own leftovers from an interrupted (re-)clone; safe to delete when starting a new one.
_TMP_PREFIXES = ("repo.clone-", "repo.old-")
_STDERR_LIMIT = 600
# Defaults for git's own stall detection on http(s): a transfer slower than 1000 bytes/s
# for 30 s ends with an error long before the overall timeout. The daemon's environment wins.
_HTTP_LOW_SPEED_DEFAULTS = {"GIT_HTTP_LOW_SPEED_LIMIT": "1000", "GIT_HTTP_LOW_SPEED_TIME": "30"}


class CorruptClone(Exception):
    """Internal: the local clone cannot be used and must be replaced by a fresh one."""


class Clone:
    """The bare clone of ``branch`` of ``url`` at ``state_dir/repo``.

    Credentials in ``url`` are taken out of it: the clone's config holds the URL without them, and
    git gets them, like ``credentials``, from its environment. Network commands are bounded by
    ``timeout_seconds`` and end at once when ``aborted`` is set
    (raising :class:`~reconciler.errors.SourceAborted`). Not thread-safe: the source serialises calls.
    """

    def __init__(
        self,
        *,
        url: str,
        branch: str,
        state_dir: Path,
        timeout_seconds: float,
        aborted: threading.Event,
        log_context: Mapping[str, str],
        credentials: GitCredentials = NO_CREDENTIALS,
    ) -> None:
        # Shown as given, redacted (``user:***``): status and logs name the remote the user wrote.
        self._shown = redact_url(url)
        self._url, user, password = split_credentials(url)
        self._environment = git_environment(self._url, credentials, url_user=user, url_password=password)
        # Replaced by *** in any detail git's stderr or an OS error carries.
        self._secrets = tuple(
            secret for secret in (password, user if password == "" else None, credentials.token) if secret
        )
        self._branch = branch
        self._state_dir = state_dir
        self.repo_dir = state_dir / "repo"
        self._timeout = timeout_seconds
        self._aborted = aborted
        self._log_context = dict(log_context)
        self._repo: git.Repo | None = None

    @property
    def url(self) -> str:
        """The remote URL with credentials redacted (safe to log and display)."""
        return self._shown

    @property
    def log(self) -> Any:
        # Bound per call, not once in __init__: a logger bound before the daemon
        # configures structlog would keep the default configuration forever.
        return log.bind(**self._log_context)

    @property
    def ref(self) -> str:
        return f"refs/remotes/origin/{self._branch}"

    @property
    def _refspec(self) -> str:
        # '+' accepts non-fast-forward updates: a force-push must not wedge the daemon.
        return f"+refs/heads/{self._branch}:{self.ref}"

    def raise_if_aborted(self) -> None:
        if self._aborted.is_set():
            raise SourceAborted(f"git source {self.url} was aborted (shutting down)")

    def fetch(self, repo: git.Repo) -> None:
        """``git fetch`` the branch; raise SourceError, or CorruptClone when the clone is bad."""
        try:
            self._run_network(repo, "fetch", "--no-tags", "origin", self._refspec)
        except ProcessTimedOut as error:
            raise self._error("git fetch", stderr_of(error), FetchTimeoutError) from error
        except GitCommandError as error:
            stderr = stderr_of(error)
            failure = classify(stderr)
            if failure is None and looks_corrupt(stderr):
                raise CorruptClone(stderr) from error
            raise self._error("git fetch", stderr, failure or FetchError) from error
        except (GitError, OSError) as error:
            raise self._error("git fetch", str(error), classify(str(error)) or FetchError) from error

    def _run_network(self, repo: git.Repo, *args: str) -> None:
        """Run ``git args...`` in ``repo``, bounded by the timeout and cut short by an abort.

        Raises GitCommandError like gitpython, and SourceAborted when an abort ended the command.
        """
        self.raise_if_aborted()
        command = [str(git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"), *args]
        # As gitpython builds it: English messages (the stderr markers match them), plus
        # the repository's settings from _configure.
        env = {**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **repo.git.environment()}
        try:
            run_abortable(command, cwd=repo.git_dir, env=env, timeout=self._timeout, aborted=self._aborted)
        except ProcessAborted:
            self.log.info("git.aborted", command=args[0])
            raise SourceAborted(
                f"git {args[0]} of {self.url} (branch {self._branch!r}) was aborted (shutting down)"
            ) from None

    def clone(self) -> git.Repo:
        """Clone into a temporary dir and move it into place only once it is complete.

        A half-written clone therefore never sits at ``repo_dir``, and an existing
        (corrupt) one is only swapped out after its replacement fetched successfully.
        """
        self.close()
        try:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            self._remove_leftovers()
            staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIXES[0], dir=self._state_dir))
        except OSError as error:
            failure = classify(str(error)) or CloneError
            raise self._error("preparing the clone", str(error), failure) from error
        self.log.info("git.cloning", dest=str(self.repo_dir))
        try:
            with git.Repo.init(staging, bare=True) as fresh:
                self._configure(fresh)
                try:
                    self._run_network(fresh, "fetch", "--no-tags", "origin", self._refspec)
                except ProcessTimedOut as error:
                    # Named apart from CloneFailed: the remote hung, nothing is wrong with the state dir.
                    raise self._error("git clone", stderr_of(error), FetchTimeoutError) from error
                except GitCommandError as error:
                    stderr = stderr_of(error)
                    raise self._error("git clone", stderr, classify(stderr) or CloneError) from error
            self._install(staging)
        except SourceError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        except (GitError, OSError) as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise self._error("git clone", str(error), classify(str(error)) or CloneError) from error
        repo = self.open()
        if repo is None:  # pragma: no cover - we just moved a valid clone into place
            raise CloneError(f"clone of {self.url} vanished after cloning")
        self.log.info("git.cloned", dest=str(self.repo_dir))
        return repo

    def _install(self, staging: Path) -> None:
        if not self.repo_dir.exists():
            os.replace(staging, self.repo_dir)
            return
        # Two renames, not rmtree-then-rename: if the second rename failed we would
        # otherwise have no clone at all.
        retired = self._state_dir / f"{_TMP_PREFIXES[1]}{uuid.uuid4().hex}"
        os.replace(self.repo_dir, retired)
        try:
            os.replace(staging, self.repo_dir)
        except OSError:
            os.replace(retired, self.repo_dir)
            raise
        shutil.rmtree(retired, ignore_errors=True)

    def _remove_leftovers(self) -> None:
        for entry in self._state_dir.iterdir():
            if entry.name.startswith(_TMP_PREFIXES) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    def open(self) -> git.Repo | None:
        """The clone at ``repo_dir``; ``None`` if there is none or it is unusable.

        Raises SourceError (not ``None``: a fresh clone would not help) when the clone
        is fine but its config cannot be written.
        """
        if self._repo is not None:
            return self._repo
        if not self.repo_dir.exists():
            return None
        repo: git.Repo | None = None
        try:
            repo = git.Repo(self.repo_dir)
            if not repo.bare:
                raise InvalidGitRepositoryError(f"{self.repo_dir} is not a bare repository")
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
            self.log.warning("git.clone_corrupt", reason="CorruptClone", error=f"{type(error).__name__}: {error}")
            return None
        self._repo = repo
        return repo

    def _configure(self, repo: git.Repo) -> None:
        """Set the environment git runs with and the remote URL.

        Raises GitCommandError when the config cannot be read (a corrupt clone) and
        StateDirNotWritableError when it cannot be written.
        """
        # Never wait for a password prompt: a daemon has nobody to type it.
        repo.git.update_environment(
            GIT_TERMINAL_PROMPT="0",
            GCM_INTERACTIVE="never",
            **{name: os.environ.get(name, default) for name, default in _HTTP_LOW_SPEED_DEFAULTS.items()},
            **self._environment,
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
                detail = stderr_of(error) or str(error)
                raise self._error("git config", detail, StateDirNotWritableError) from error

    def close(self) -> None:
        """Stop gitpython's helper processes for the open clone; the clone on disk stays."""
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def ref_sha(self, repo: git.Repo) -> str | None:
        """The fetched head of the branch, ``None`` when it does not resolve.

        Read by gitpython from the ref files and its long-running object reader: no git process per call.
        """
        try:
            return str(Reference(repo, self.ref, check_path=False).commit.hexsha)
        except (GitError, ODBError, ValueError, OSError):
            return None

    def resolve_commit(self, repo: git.Repo, rev: str) -> str | None:
        if rev.startswith("-"):
            return None  # never let a caller-supplied revision be read as an option
        try:
            return str(repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")).strip() or None
        except GitCommandError:
            return None

    def is_ancestor(self, repo: git.Repo, old: str, new: str) -> bool:
        with contextlib.suppress(GitError, ODBError, ValueError, OSError):
            if any(parent.hexsha == old for parent in repo.commit(new).parents):
                return True  # the usual push, one commit on top: no git process to ask
        try:
            repo.git.merge_base("--is-ancestor", old, new)
        except GitCommandError:
            # Exit 1 means "not an ancestor"; anything else means the old commit is gone
            # (gc'd after a rewrite), so ancestry cannot be shown either.
            return False
        return True

    def _error(self, operation: str, detail: str, failure: type[SourceError]) -> SourceError:
        detail = explain(detail)
        for secret in self._secrets:
            detail = detail.replace(secret, "***")
        if len(detail) > _STDERR_LIMIT:
            detail = detail[:_STDERR_LIMIT] + "…"
        event = "git.clone_failed" if operation in {"git clone", "preparing the clone"} else "git.fetch_failed"
        self.log.warning(event, reason=failure.reason, operation=operation, error=detail)
        return failure(f"{operation} of {self.url} (branch {self._branch!r}) failed: {detail or 'no detail from git'}")
