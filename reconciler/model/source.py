"""Where a resource and each of its fields came from: which files are config, file, line and field path."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "CONFIG_SUFFIXES",
    "SourceInfo",
    "child_path",
    "format_path",
    "has_config_suffix",
    "is_config_file",
    "parent_path",
]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

#: Only these file names are mesh config; READMEs, CI files and scripts beside them are not.
CONFIG_SUFFIXES = frozenset({".yaml", ".yml"})


def is_config_file(relative_path: str) -> bool:
    """Whether a path (relative to the config dir, ``/``-separated) is a config file we read.

    The one rule for every way config is read: the git and working-tree sources of the
    daemon and ``reconciler validate``/``render`` on a directory. The suffix is
    matched case-insensitively (``GW.YAML`` is config). Hidden files and anything
    under a hidden directory are skipped: that covers ``.git/``, editors' lock files
    (``.#x.yaml``), CI config (``.github/``) and the ``..data`` / ``..2024_…``
    directories Kubernetes uses to swap ConfigMap mounts, which would otherwise make
    every file appear twice.
    """
    parts = [part for part in relative_path.split("/") if part not in ("", ".")]
    if not parts or any(part.startswith(".") for part in parts):
        return False
    return has_config_suffix(parts[-1])


def has_config_suffix(name: str) -> bool:
    """Whether a file name's suffix (as :attr:`pathlib.PurePath.suffix` reads it) is a config suffix, any case."""
    dot = name.rfind(".")
    return 0 < dot < len(name) - 1 and name[dot:].lower() in CONFIG_SUFFIXES


def format_path(parts: Sequence[str | int]) -> str:
    """``("spec", "http", 1, "route")`` → ``spec.http[1].route``; odd map keys are quoted."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _PLAIN_KEY.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f'["{part}"]')
    return "".join(out)


def child_path(path: str, key: str) -> str:
    """``path`` extended by map key ``key``, written the way :func:`format_path` writes it."""
    if not _PLAIN_KEY.match(key):
        return f'{path}["{key}"]'
    return f"{path}.{key}" if path else key


def parent_path(path: str) -> str:
    """The path one level up: ``spec.http[1].route`` → ``spec.http[1]`` → ``spec.http`` → ``spec``."""
    # rfind, not rindex: a path this module did not write (a bare "]") has no parent, not an error.
    if path.endswith('"]') and (start := path.rfind('["')) >= 0:
        return path[:start]
    if path.endswith("]"):
        return path[: max(path.rfind("["), 0)]
    return path.rpartition(".")[0]


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A resource's origin: file, the line its document starts on, and the line of every field."""

    file: str
    line: int
    field_lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def line_of(self, path: str) -> int:
        """Line of ``path``, or of its nearest ancestor that has one, or the document's line."""
        while path:
            found = self.field_lines.get(path)
            if found is not None:
                return found
            path = parent_path(path)
        return self.line
