"""The git source: one branch of one remote as a stream of config Revisions.

:class:`GitSource` keeps a :class:`~reconciler.sources.git.clone.Clone` and reads the
config files straight from a commit's tree (a bare clone has no working tree to get out
of sync). A lock serialises its calls, so a webhook-triggered poll and a timer-triggered
poll cannot race inside the same repository. :meth:`GitSource.abort` (shutdown) is the
one call that does not take the lock: it ends a running fetch or clone from another thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, TypeVar

import git
import structlog
from git.exc import GitError, ODBError
from git.objects import Commit, Tree

from reconciler.errors import CloneError, PathNotFoundError, SourceError, SourceReadError, UsageError
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits, SkipReason
from reconciler.model.text import excerpt
from reconciler.sources.git.clone import Clone, CorruptClone
from reconciler.sources.git.credentials import NO_CREDENTIALS, GitCredentials, split_credentials
from reconciler.sources.git.tree import BlobCache, config_tree, read_config_tree
from reconciler.sources.git.url import redact_url, validate_url
from reconciler.sources.revision import ALLOW_REMOVAL_FILE, Revision

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "GitSource"]

log = structlog.get_logger("reconciler.sources.git")

_T = TypeVar("_T")

#: Seconds one git fetch or clone may take (``--git-timeout``; ``SourceSettings.git_timeout`` reads it):
#: far above a healthy fetch of a config repo, short enough that a hung remote is named within minutes.
DEFAULT_TIMEOUT_SECONDS = 120.0


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


class GitSource:
    """One branch of one git remote, as a stream of config :class:`Revision` values.

    ``path`` is the config directory inside the repository (``""`` for the root).
    ``timeout_seconds`` bounds each git network operation so a hung server cannot
    wedge the engine's worker thread (``FetchTimeoutError``, retried by the next poll);
    :meth:`abort` ends one at once. Config files are
    read within ``limits``; symlinks and files over them are left out of the revision.
    """

    def __init__(
        self,
        *,
        url: str,
        branch: str = "main",
        path: str = "",
        state_dir: Path,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        limits: InputLimits = DEFAULT_LIMITS,
        credentials: GitCredentials = NO_CREDENTIALS,
    ) -> None:
        self._branch = _validate_branch(branch)
        if split_credentials(url)[1] is not None:
            # Accepted, but the token is on the daemon's command line (ps) and in its manifest.
            log.warning(
                "git.credentials_in_url",
                url=redact_url(url),
                hint="ps shows it: move the token to --git-token-file FILE (or RECONCILER_GIT_TOKEN), out of the URL",
            )
        self._path = _normalise_path(path)
        self._limits = limits
        self._lock = threading.Lock()
        # Set once by abort() and never cleared: the daemon is shutting down.
        self._aborted = threading.Event()
        self._clone = Clone(
            url=validate_url(url),
            branch=self._branch,
            state_dir=Path(state_dir),
            timeout_seconds=timeout_seconds,
            aborted=self._aborted,
            credentials=credentials,
            log_context={"url": redact_url(url), "branch": branch, "path": self._path or "."},
        )
        self._head_sha: str | None = None
        # What poll() last looked at: commits are deduplicated by SHA, and commits
        # that leave the config directory untouched by its tree id.
        self._seen_sha: str | None = None
        self._seen_tree: str | None = None
        # The trees and blobs of the last revision read, by object id: the next commit reads only what it changed.
        self._blobs = BlobCache()

    # -- public -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The remote URL with credentials redacted (safe to log and display)."""
        return self._clone.url

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
        return self._clone.repo_dir

    @property
    def head_sha(self) -> str | None:
        """The branch head as of the last successful fetch, ``None`` before one."""
        return self._head_sha

    def fetch(self) -> str:
        """Clone if needed, fetch the branch and return its head SHA.

        Raises a :class:`SourceError`: ``CloneError`` (no usable clone and the first clone
        failed), ``FetchError`` (``FetchTimeoutError``: the remote hung), ``AuthError``,
        ``BranchNotFoundError``, ``StateDirNotWritableError`` or ``SourceAborted``. The existing
        clone is left in place on every failure.
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
            self._clone.raise_if_aborted()
            if sha == self._seen_sha:
                return None
            tree_id = self._with_reclone(lambda repo: self._config_tree(repo, sha).hexsha)
            if tree_id == self._seen_tree:
                self._log.info("git.commit_skipped", sha=sha[:12], reason="ConfigUnchanged")
                self._seen_sha = sha
                return None
            revision = self._with_reclone(lambda repo: self._read(repo, sha))
            # An abort() that came while reading still wins: whoever aborted is shutting down.
            self._clone.raise_if_aborted()
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
            repo = self._clone.open()
            if repo is None:
                raise SourceReadError(f"no local clone of {self.url} yet; poll or fetch first")
            wanted = sha or self._head_sha or self._clone.ref_sha(repo)
            if wanted is None:
                raise SourceReadError(f"branch {self._branch!r} has not been fetched yet")
            # Resolve first: an unknown SHA is the caller's mistake, and must not be
            # mistaken for a corrupt clone (which would trigger a re-clone).
            target = self._clone.resolve_commit(repo, wanted)
            if target is None:
                raise SourceReadError(f"commit {wanted!r} is not in the local clone of {self.url}")
            return self._with_reclone(lambda current: self._read(current, target))

    def abort(self) -> None:
        """End a :meth:`poll` or :meth:`fetch` running in another thread; it raises ``SourceAborted``.

        Its git fetch or clone gets SIGTERM (git removes its lock files) within a fraction of
        a second, SIGKILL if it has not exited 5 s later. The clone on disk is kept as it was,
        never replaced. Final: every later poll or fetch raises ``SourceAborted`` at once, so one
        that was about to start when the daemon began shutting down cannot hang either.
        Safe from any thread, at any time; :meth:`read` of the local clone still works.
        """
        # Only an Event: the poll's own thread sees it and signals git (and logs), so this
        # stays cheap and safe from wherever shutdown runs.
        self._aborted.set()

    def watch(self, callback: Callable[[], object]) -> None:
        """A remote cannot be watched: a push webhook or the next poll brings its commits."""

    def close(self) -> None:
        """Stop gitpython's helper processes; the clone on disk stays for the next run."""
        with self._lock:
            self._clone.close()

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
        return self._clone.log

    def _fetch_locked(self) -> str:
        self._clone.raise_if_aborted()
        repo = self._clone.open()
        if repo is None:
            repo = self._clone.clone()
            before = None
        else:
            before = self._clone.ref_sha(repo)
            try:
                self._clone.fetch(repo)
                if self._clone.ref_sha(repo) is None:
                    # The fetch said it succeeded yet the ref does not resolve.
                    raise CorruptClone(f"{self._clone.ref} does not resolve after fetch")
            except CorruptClone as corrupt:
                self._log.warning("git.clone_corrupt", reason="CorruptClone", error=str(corrupt))
                repo = self._clone.clone()
        sha = self._clone.ref_sha(repo)
        if sha is None:
            raise CloneError(f"{self._clone.ref} does not resolve in a fresh clone of {self.url}")
        previous = before or self._head_sha
        if previous is not None and previous != sha and not self._clone.is_ancestor(repo, previous, sha):
            # Like Flux: the remote is the source of truth, so follow it, but say so
            # loudly: whoever force-pushed may have dropped commits by accident.
            self._log.warning("git.history_rewritten", reason="HistoryRewritten", old=previous[:12], new=sha[:12])
        if sha != self._head_sha:
            self._log.debug("git.fetched", sha=sha[:12])
        self._head_sha = sha
        return sha

    # -- reading ------------------------------------------------------------------

    def _with_reclone(self, action: Callable[[git.Repo], _T]) -> _T:
        """Run ``action`` on the clone; if the clone turns out corrupt, re-clone and retry once."""
        repo = self._clone.open() or self._clone.clone()
        try:
            return action(repo)
        except SourceError:
            raise
        except (GitError, ODBError, ValueError, OSError) as error:
            self._log.warning("git.clone_corrupt", reason="CorruptClone", error=f"{type(error).__name__}: {error}")
        repo = self._clone.clone()
        self._blobs = BlobCache()  # its git objects belong to the clone replaced
        try:
            return action(repo)
        except SourceError:
            raise
        except (GitError, ODBError, ValueError, OSError) as error:
            raise SourceReadError(f"reading the config from the clone of {self.url} failed: {error}") from error

    def _commit(self, repo: git.Repo, sha: str) -> Commit:
        return repo.commit(sha)

    def _config_tree(self, repo: git.Repo, sha: str) -> Tree:
        found = config_tree(self._commit(repo, sha), self._path)
        if found is None:
            raise PathNotFoundError(
                f"config path {self._path!r} is not a directory at commit {sha[:12]} "
                f"of branch {self._branch!r} in {self.url}"
            )
        return found

    def _read(self, repo: git.Repo, sha: str) -> Revision:
        tree = self._config_tree(repo, sha)
        commit = self._commit(repo, sha)
        read = read_config_tree(tree, limits=self._limits, cache=self._blobs)
        for skipped in read.skipped:
            if skipped.reason is SkipReason.SYMLINK:
                self._log.warning("git.config_file_skipped", sha=sha[:12], file=skipped.path, reason="Symlink")
        message = commit.message
        if isinstance(message, bytes):
            message = message.decode("utf-8", errors="replace")
        author = f"{commit.author.name} <{commit.author.email}>"
        return Revision(
            sha=commit.hexsha,
            files=read.files,
            config_tree=tree.hexsha,
            message=message.strip(),
            author=author,
            committed_at=commit.committed_datetime,
            skipped=read.skipped,
            allow_removal=any(blob.name == ALLOW_REMOVAL_FILE for blob in tree.blobs),
        )
