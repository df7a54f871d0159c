"""Reading config files from disk, bounded: the one walker of ``reconciler validate`` and the local source.

A directory is walked recursively; a file in it is config by the daemon's own rule,
:func:`~reconciler.model.source.is_config_file` on its path relative to the directory.
A symlink is followed only when its target stays inside the directory given (a
Kubernetes ConfigMap mount is symlinks into its own ``..data``); one that leaves it is
never read. Sizes are checked before reading (:func:`~reconciler.model.limits.plan_reads`),
and a read never takes more than the per-file limit, so a file that grows meanwhile is
skipped too. What was left out is returned, for the loader to report.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import UsageError
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits, SkippedFile, SkipReason, plan_reads
from reconciler.model.source import has_config_suffix, is_config_file

__all__ = ["ConfigFiles", "read_paths", "read_tree"]


@dataclass(frozen=True, slots=True)
class ConfigFiles:
    """Config files read (path → content) and those left unread, with why."""

    files: dict[str, bytes]
    skipped: tuple[SkippedFile, ...]


@dataclass(frozen=True, slots=True)
class _Candidate:
    key: str  # the path the result and findings use
    path: Path
    root: Path  # resolved; a symlink must not lead out of it


def read_tree(root: Path, *, limits: InputLimits = DEFAULT_LIMITS) -> ConfigFiles:
    """The config files under directory ``root``, keyed by ``/``-separated path relative to it.

    Raises OSError when a file cannot be read.
    """
    return _read(_walk(root, keys_under=None), limits)


def read_paths(paths: Sequence[Path], *, limits: InputLimits = DEFAULT_LIMITS) -> ConfigFiles:
    """The config files under ``paths``, keyed by path as given (``root/relative``).

    A file named directly is read if its suffix is YAML; its own directory is the root its
    symlink must stay in. Raises UsageError for a missing or unreadable path.
    """
    candidates: list[_Candidate] = []
    for root in paths:
        if not root.exists():
            raise UsageError(f"path does not exist: {root}")
        if root.is_dir():
            candidates.extend(_walk(root, keys_under=root))
        elif has_config_suffix(root.name):
            candidates.append(_Candidate(str(root), root, root.absolute().parent.resolve()))
    try:
        return _read(candidates, limits)
    except OSError as error:
        raise UsageError(f"cannot read {error.filename}: {error.strerror}") from error


def _walk(root: Path, *, keys_under: Path | None) -> Iterable[_Candidate]:
    resolved = root.resolve()
    for directory, subdirectories, names in os.walk(root):
        # Hidden directories hold no config (is_config_file says so); pruning skips walking .git.
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
        base = Path(directory)
        for name in sorted(names):
            path = base / name
            relative = path.relative_to(root).as_posix()
            if is_config_file(relative):
                yield _Candidate(relative if keys_under is None else str(path), path, resolved)


def _read(candidates: Iterable[_Candidate], limits: InputLimits) -> ConfigFiles:
    skipped: list[SkippedFile] = []
    sizes: dict[str, int] = {}
    paths: dict[str, Path] = {}
    for candidate in candidates:
        path = candidate.path
        if path.is_symlink():
            path = path.resolve()
            if not path.is_relative_to(candidate.root):
                skipped.append(SkippedFile(candidate.key, SkipReason.SYMLINK_OUTSIDE))
                continue
        try:
            info = path.stat()
        except FileNotFoundError:
            continue  # a dangling symlink, or deleted since listed
        if stat.S_ISREG(info.st_mode):  # never a FIFO or a device: reading one could block or never end
            sizes[candidate.key] = info.st_size
            paths[candidate.key] = path
    readable, too_large = plan_reads(sizes, limits)
    skipped.extend(too_large)
    files: dict[str, bytes] = {}
    for key in readable:
        with paths[key].open("rb") as stream:
            content = stream.read(limits.file_bytes + 1)
        if len(content) > limits.file_bytes:  # it grew after its size was read
            skipped.append(SkippedFile(key, SkipReason.FILE_TOO_LARGE, size=len(content)))
        else:
            files[key] = content
    return ConfigFiles(files=files, skipped=tuple(skipped))
