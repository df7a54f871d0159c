"""Loading config: files on disk or in a git revision → parsed, decoded, validated model.

This is an I/O edge only where it reads paths (:func:`read_paths`); :func:`load_files`
works on contents already in memory (a git revision, a test fixture) and is pure.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import UsageError
from reconciler.loader.parse import parse_yaml
from reconciler.model.checkpoint import Checkpoint, no_checkpoint
from reconciler.model.config import MeshConfig, Resource
from reconciler.model.source import has_config_suffix, is_config_file
from reconciler.validate import analyze, build_config, decode_resource, has_errors, sort_findings
from reconciler.validate.findings import Finding

__all__ = ["DecodeCache", "LoadResult", "load_files", "load_paths", "read_paths"]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The config of one revision with every finding about it, sorted by file and line."""

    config: MeshConfig
    findings: tuple[Finding, ...]
    documents: int

    @property
    def ok(self) -> bool:
        """True when nothing is error-level: the config may be applied."""
        return not has_errors(self.findings)


@dataclass(frozen=True, slots=True)
class _FileResult:
    resources: tuple[Resource[Any], ...]
    findings: tuple[Finding, ...]
    documents: int


class DecodeCache:
    """Parse and decode results per file, keyed by path, content digest and default namespace.

    A daemon sees the same thousand files on every commit and only a few change; with
    this cache only those are parsed again. Cross-resource analysis always reruns on
    the whole config. After each load the cache holds exactly the entries that load
    used, one per file: older contents of a file and removed files are dropped, so
    its size follows the config, not the number of commits seen.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], _FileResult] = {}

    def _load_all(
        self, files: Mapping[str, bytes | str], default_namespace: str, checkpoint: Checkpoint
    ) -> list[_FileResult]:
        """Results for ``files`` in sorted path order, reusing entries whose key matches."""
        used: dict[tuple[str, str, str], _FileResult] = {}
        for path in sorted(files):
            checkpoint()
            content = files[path]
            raw = content.encode() if isinstance(content, str) else content
            key = (path, hashlib.blake2b(raw, digest_size=16).hexdigest(), default_namespace)
            found = self._entries.get(key)
            used[key] = found if found is not None else _load_file(path, raw, default_namespace)
        self._entries = used
        return list(used.values())


def _load_file(path: str, content: bytes, default_namespace: str) -> _FileResult:
    text = content.decode("utf-8", errors="replace")
    parsed, parse_findings = parse_yaml(text, file=path, default_namespace=default_namespace)
    findings = list(parse_findings)
    resources: list[Resource[Any]] = []
    for document in parsed:
        resource, decode_findings = decode_resource(
            document.data, source=document.source, default_namespace=default_namespace
        )
        findings.extend(decode_findings)
        if resource is not None:
            resources.append(resource)
    return _FileResult(resources=tuple(resources), findings=tuple(findings), documents=len(parsed))


def load_files(
    files: Mapping[str, bytes | str],
    *,
    default_namespace: str = "default",
    cache: DecodeCache | None = None,
    checkpoint: Checkpoint = no_checkpoint,
) -> LoadResult:
    """Parse, decode and validate in-memory files (path → content), in sorted path order.

    Pass a :class:`DecodeCache` kept across calls to skip files whose content did not change.
    ``checkpoint`` is called before each file and between analysis steps; what it raises ends the load.
    """
    cache = cache if cache is not None else DecodeCache()
    findings: list[Finding] = []
    resources: list[Resource[Any]] = []
    documents = 0
    for result in cache._load_all(files, default_namespace, checkpoint):
        findings.extend(result.findings)
        resources.extend(result.resources)
        documents += result.documents
    config, build_findings = build_config(resources)
    findings.extend(build_findings)
    findings.extend(analyze(config, checkpoint=checkpoint))
    return LoadResult(config=config, findings=tuple(sort_findings(findings)), documents=documents)


def read_paths(paths: Sequence[Path]) -> dict[str, bytes]:
    """The config files under ``paths``, keyed by path as given (``root/relative``).

    A directory is walked recursively and a file in it is config by the daemon's own
    rule, :func:`~reconciler.model.source.is_config_file` on its path relative to the
    directory: ``*.yaml``/``*.yml`` in any case, nothing hidden (``.git/``,
    ``.github/``, ``..data/``). A file named directly is read if its suffix is YAML.
    """
    files: dict[str, bytes] = {}
    for root in paths:
        if not root.exists():
            raise UsageError(f"path does not exist: {root}")
        for candidate in _config_files(root):
            try:
                files[str(candidate)] = candidate.read_bytes()
            except OSError as error:
                raise UsageError(f"cannot read {candidate}: {error.strerror}") from error
    return files


def _config_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root] if has_config_suffix(root.name) else []
    found: list[Path] = []
    for directory, subdirectories, names in os.walk(root):
        # Hidden directories hold no config (is_config_file says so); pruning skips walking .git.
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        base = Path(directory)
        for name in names:
            path = base / name
            if is_config_file(path.relative_to(root).as_posix()) and path.is_file():
                found.append(path)
    return sorted(found)


def load_paths(paths: Sequence[Path], *, default_namespace: str = "default") -> LoadResult:
    """Read and load every YAML file under ``paths``."""
    return load_files(read_paths(paths), default_namespace=default_namespace)
