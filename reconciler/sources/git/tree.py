"""Config files out of one commit's tree: the one rule for the daemon's clone and ``reconciler diff``.

Files under the config path that :func:`~reconciler.model.source.is_config_file` accepts,
hidden directories never walked, symlinks never followed (reported as skipped), sizes
checked from the object headers before anything is read (:func:`~reconciler.model.limits.plan_reads`).
A :class:`BlobCache` kept between reads makes a new commit cost the directories and files it changed:
git names them by their content, so one met before is neither listed, sized nor read again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import git
from git.exc import BadName, GitError, InvalidGitRepositoryError, NoSuchPathError
from git.objects import Blob, Commit, Tree

from reconciler.errors import PathNotFoundError, UsageError
from reconciler.loader.files import ConfigFiles
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits, SkippedFile, SkipReason, plan_reads
from reconciler.model.source import is_config_file

__all__ = ["BlobCache", "config_tree", "read_config_tree", "read_revision"]

#: git's ``mode`` for a regular file (either permission); a symlinked config file is skipped with a warning.
_REGULAR_FILE_MODES = frozenset({0o100644, 0o100755})


@dataclass(frozen=True, slots=True)
class _Walked:
    """A tree's blobs by path relative to it (hidden directories left out), and the ids of its subtrees walked."""

    blobs: tuple[tuple[str, Blob], ...]
    subtrees: tuple[str, ...]


class BlobCache:
    """What the last read took, by object id: the config blobs' contents and each directory's listing.

    git names trees and blobs by their content, so a directory or file with the same id is the same
    as before: a new commit costs git requests for the directories and files it changed only. Each
    read keeps only what it used. Not thread-safe: its owner serialises reads (the git source holds its lock).
    """

    def __init__(self) -> None:
        self._contents: dict[str, bytes] = {}
        self._trees: dict[str, _Walked] = {}

    def walk(self, tree: Tree) -> tuple[tuple[str, Blob], ...]:
        """Every blob under ``tree`` (files, symlinks) with its ``/``-joined path, skipping hidden dirs."""
        kept: dict[str, _Walked] = {}
        blobs = self._walk(tree, kept).blobs
        self._trees = kept
        return blobs

    def _walk(self, tree: Tree, kept: dict[str, _Walked]) -> _Walked:
        walked = self._trees.get(tree.hexsha)
        if walked is None:
            blobs = [(blob.name, blob) for blob in tree.blobs]
            # Pruned here, not just filtered later, so a big hidden dir (.github, vendored docs) is never read at all.
            subtrees = [subtree for subtree in tree.trees if not subtree.name.startswith(".")]
            for subtree in subtrees:
                blobs.extend((f"{subtree.name}/{path}", blob) for path, blob in self._walk(subtree, kept).blobs)
            walked = _Walked(tuple(blobs), tuple(subtree.hexsha for subtree in subtrees))
        else:
            self._keep_subtrees(walked, kept)
        kept[tree.hexsha] = walked
        return walked

    def _keep_subtrees(self, walked: _Walked, kept: dict[str, _Walked]) -> None:
        # A directory found unchanged keeps its subdirectories too: the next commit may change it but not them.
        for subtree in walked.subtrees:
            found = self._trees.get(subtree)
            if found is not None and subtree not in kept:
                kept[subtree] = found
                self._keep_subtrees(found, kept)

    def size(self, blob: Blob) -> int:
        """The blob's size: from what was read before, else from its object header (one request to git)."""
        known = self._contents.get(blob.hexsha)
        return len(known) if known is not None else int(blob.size)

    def read(self, blobs: Mapping[str, Blob]) -> dict[str, bytes]:
        """Each blob's content by path: read from git only when not known; the cache then holds exactly these."""
        kept: dict[str, bytes] = {}
        contents: dict[str, bytes] = {}
        for path, blob in blobs.items():
            content = self._contents.get(blob.hexsha)
            contents[path] = kept[blob.hexsha] = content if content is not None else blob.data_stream.read()
        self._contents = kept
        return contents


def config_tree(commit: Commit, path: str) -> Tree | None:
    """The directory ``path`` (``""``: the root) of ``commit``, or None when it is not a directory there."""
    if not path:
        return commit.tree
    try:
        found = commit.tree / path
    except KeyError:
        return None
    return found if isinstance(found, Tree) else None


def read_config_tree(
    tree: Tree, *, limits: InputLimits = DEFAULT_LIMITS, cache: BlobCache | None = None
) -> ConfigFiles:
    """The config files under ``tree`` by ``/``-separated path relative to it, and those left unread.

    ``cache``: blobs a previous read took are not read again (pass the same one to every read).
    """
    cache = cache if cache is not None else BlobCache()
    blobs: dict[str, Blob] = {}
    skipped: list[SkippedFile] = []
    for relative, blob in cache.walk(tree):
        if not is_config_file(relative):
            continue
        if blob.mode in _REGULAR_FILE_MODES:
            blobs[relative] = blob
        else:
            # A symlink's target may lie outside the config path or the repository: never followed, but said.
            skipped.append(SkippedFile(relative, SkipReason.SYMLINK))
    # Sizes come from the object headers: a file over the limit is never read into memory.
    readable, too_large = plan_reads({path: cache.size(blob) for path, blob in blobs.items()}, limits)
    skipped.extend(too_large)
    return ConfigFiles(files=cache.read({path: blobs[path] for path in readable}), skipped=tuple(skipped))


def read_revision(
    repo_dir: Path, revision: str, *, path: str = "", limits: InputLimits = DEFAULT_LIMITS
) -> tuple[str, ConfigFiles]:
    """The commit ``revision`` names (any of git's spellings) in the repository at ``repo_dir``, and its config files.

    Raises UsageError for a directory that is not in a git repository or a revision git
    cannot resolve, PathNotFoundError when ``path`` is not a directory at that commit.
    """
    if revision.startswith("-"):
        raise UsageError(f"revision {revision!r} must not start with '-'")
    try:
        repo = git.Repo(repo_dir, search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError) as error:
        raise UsageError(f"{repo_dir} is not in a git repository") from error
    with repo:
        try:
            commit = repo.commit(revision)
        except (BadName, GitError, ValueError) as error:
            raise UsageError(f"unknown revision {revision!r} in {repo.working_dir}") from error
        tree = config_tree(commit, path)
        if tree is None:
            raise PathNotFoundError(f"{path!r} is not a directory at {revision} ({commit.hexsha[:12]})")
        return commit.hexsha, read_config_tree(tree, limits=limits)
