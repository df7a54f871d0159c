"""How much untrusted config one file and one revision may be: the limits, their defaults, and the read plan.

Every source (git, a local directory, ``reconciler validate``) asks :func:`plan_reads` which files
to read once it knows their sizes, so a file over the limit is never read or parsed, and a revision
over the limit is not read at all. What was left out travels with the revision as
:class:`SkippedFile` values; the loader turns each into a finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DEFAULT_LIMITS", "InputLimits", "SkipReason", "SkippedFile", "format_size", "plan_reads"]

_KIB = 1024
_MIB = 1024 * _KIB


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Bytes one config file and one revision (all its config files together) may have."""

    #: Kubernetes keeps objects under about 1 MiB too; an Istio resource is a few KiB.
    file_bytes: int = 1 * _MIB
    #: Thousands of services' config fit; parsing this much takes tens of seconds of CPU.
    revision_bytes: int = 32 * _MIB


DEFAULT_LIMITS = InputLimits()


class SkipReason(StrEnum):
    """Why a config file of a revision was not read."""

    #: A symlink in git: never followed (its target may lie outside the repository).
    SYMLINK = "Symlink"
    #: A symlink in a directory whose target lies outside the directory given.
    SYMLINK_OUTSIDE = "SymlinkOutsideRoot"
    #: Larger than :attr:`InputLimits.file_bytes`.
    FILE_TOO_LARGE = "FileTooLarge"
    #: The revision's config files together are larger than :attr:`InputLimits.revision_bytes`; none was read.
    REVISION_TOO_LARGE = "RevisionTooLarge"


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A config file left unread. For ``REVISION_TOO_LARGE``: the largest file, and ``size`` is the total."""

    path: str
    reason: SkipReason
    size: int = 0
    files: int = 0


def plan_reads(sizes: Mapping[str, int], limits: InputLimits) -> tuple[list[str], list[SkippedFile]]:
    """The paths to read, in sorted order, and the files skipped for their size.

    A file over the per-file limit is skipped. When the rest together pass the per-revision
    limit, nothing is read: one ``REVISION_TOO_LARGE`` entry names the largest file.
    """
    skipped = [
        SkippedFile(path, SkipReason.FILE_TOO_LARGE, size=size)
        for path, size in sorted(sizes.items())
        if size > limits.file_bytes
    ]
    within = {path: size for path, size in sizes.items() if size <= limits.file_bytes}
    total = sum(within.values())
    if total > limits.revision_bytes:
        largest = max(sorted(within), key=within.__getitem__)
        skipped.append(SkippedFile(largest, SkipReason.REVISION_TOO_LARGE, size=total, files=len(within)))
        return [], skipped
    return sorted(within), skipped


def format_size(size: int) -> str:
    """``512 bytes``, ``3.5 KiB``, ``1.0 MiB``: how the limits are written in messages and flags."""
    for unit, factor in (("GiB", _KIB * _MIB), ("MiB", _MIB), ("KiB", _KIB)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} bytes"
