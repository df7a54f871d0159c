"""Loading config: files on disk or in a git revision → parsed, decoded, validated model.

This is an I/O edge only where it reads paths (:func:`read_paths`); :func:`load_files`
works on contents already in memory (a git revision, a test fixture) and is pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import UsageError
from reconciler.loader.parse import parse_yaml
from reconciler.model.config import MeshConfig, Resource
from reconciler.validate import analyze, build_config, decode_resource, has_errors, sort_findings
from reconciler.validate.findings import Finding

__all__ = ["DecodeCache", "LoadResult", "load_files", "load_paths", "read_paths"]

YAML_SUFFIXES = (".yaml", ".yml")


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
    the whole config. Entries for files no longer present are dropped after each load.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], _FileResult] = {}

    def _load(self, path: str, content: bytes | str, default_namespace: str) -> _FileResult:
        raw = content.encode() if isinstance(content, str) else content
        key = (path, hashlib.blake2b(raw, digest_size=16).hexdigest(), default_namespace)
        found = self._entries.get(key)
        if found is None:
            found = _load_file(path, raw, default_namespace)
            self._entries[key] = found
        return found

    def _retain(self, paths: set[str]) -> None:
        self._entries = {key: value for key, value in self._entries.items() if key[0] in paths}


def _load_file(path: str, content: bytes, default_namespace: str) -> _FileResult:
    parsed, parse_findings = parse_yaml(content.decode("utf-8", errors="replace"), file=path)
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
    files: Mapping[str, bytes | str], *, default_namespace: str = "default", cache: DecodeCache | None = None
) -> LoadResult:
    """Parse, decode and validate in-memory files (path → content), in sorted path order.

    Pass a :class:`DecodeCache` kept across calls to skip files whose content did not change.
    """
    cache = cache if cache is not None else DecodeCache()
    findings: list[Finding] = []
    resources: list[Resource[Any]] = []
    documents = 0
    for path in sorted(files):
        result = cache._load(path, files[path], default_namespace)
        findings.extend(result.findings)
        resources.extend(result.resources)
        documents += result.documents
    cache._retain(set(files))
    config, build_findings = build_config(resources)
    findings.extend(build_findings)
    findings.extend(analyze(config))
    return LoadResult(config=config, findings=tuple(sort_findings(findings)), documents=documents)


def read_paths(paths: Sequence[Path]) -> dict[str, bytes]:
    """Every ``*.yaml``/``*.yml`` file under ``paths`` (recursively), keyed by path as given."""
    files: dict[str, bytes] = {}
    for root in paths:
        if not root.exists():
            raise UsageError(f"path does not exist: {root}")
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for candidate in candidates:
            if candidate.suffix in YAML_SUFFIXES and not any(part.startswith(".") for part in candidate.parts[-2:]):
                try:
                    files[str(candidate)] = candidate.read_bytes()
                except OSError as error:
                    raise UsageError(f"cannot read {candidate}: {error.strerror}") from error
    return files


def load_paths(paths: Sequence[Path], *, default_namespace: str = "default") -> LoadResult:
    """Read and load every YAML file under ``paths``."""
    return load_files(read_paths(paths), default_namespace=default_namespace)
