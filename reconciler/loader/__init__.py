"""Loading config: files on disk or in a git revision → parsed, decoded, validated model.

This is an I/O edge only where it reads paths (:func:`read_paths`, :func:`read_tree`, in
:mod:`~reconciler.loader.files`); :func:`load_files` works on contents already in memory (a
git revision, a test fixture) and is pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from reconciler.loader.files import ConfigFiles, read_paths, read_tree
from reconciler.loader.parse import parse_yaml
from reconciler.model.checkpoint import Checkpoint, no_checkpoint
from reconciler.model.config import MeshConfig, Resource
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits, SkippedFile, SkipReason, format_size
from reconciler.translate.envoy_check import PassCache
from reconciler.translate.memo import TranslationCache
from reconciler.translate.translator import ProxyShape, Translation, check_representatives
from reconciler.validate import analyze, build_config, decode_resource, has_errors, sort_findings
from reconciler.validate.findings import Code, Finding, Severity
from reconciler.validate.rules import check_resource

__all__ = [
    "KEPT_TRANSLATIONS",
    "ConfigFiles",
    "DecodeCache",
    "LoadResult",
    "load_files",
    "load_paths",
    "read_paths",
    "read_tree",
]

#: Translations a load keeps for its caller to serve or diff (one per namespace and Gateway selector, usually a
#: handful); shapes beyond it are translated again when asked for, rather than held in memory by every load.
KEPT_TRANSLATIONS = 32


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The config of one revision with every finding about it, sorted by file and line."""

    config: MeshConfig
    findings: tuple[Finding, ...]
    documents: int
    #: What validation translated (and checked) for representative proxies, by shape, made with
    #: ``build_registry(config)``: seeds for :class:`~reconciler.engine.snapshots.ConfigSnapshots` and the diff.
    #: Empty when an error stopped validation before translating.
    translations: Mapping[ProxyShape, Translation] = field(default_factory=lambda: MappingProxyType({}))
    #: Warnings of those translations (what Envoy is not told: a host without endpoints...), sorted. Not in
    #: ``findings``: the daemon shows a translation's notes once a proxy of its shape connects; ``validate`` all.
    notes: tuple[Finding, ...] = ()

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
    """Parse and decode results per file, keyed by path, content digest, default namespace and size limit.

    A daemon sees the same thousand files on every commit and only a few change; with
    this cache only those are parsed again. After each load the cache holds exactly the entries that load
    used, one per file: older contents of a file and removed files are dropped, so
    its size follows the config, not the number of commits seen.

    It also holds the Envoy resources that passed the constraint check (:class:`PassCache`),
    so the next load checks only resources it has not met: after each load, those that load met;
    and the per-service translation work (:class:`TranslationCache`), so the next load translates
    only the services, rules and routes that changed. Analysis reruns on the whole config, but a
    resource it met before is not checked against the per-resource rules again.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str, int], _FileResult] = {}
        # Rule findings per resource (by id, the resource kept so the id stays its own): the entries' resources.
        self._checks: dict[int, tuple[Resource[Any], list[Finding]]] = {}
        self.passed = PassCache()
        self.translations = TranslationCache()

    def _load_all(
        self, files: Mapping[str, bytes | str], default_namespace: str, max_chars: int, checkpoint: Checkpoint
    ) -> list[_FileResult]:
        """Results for ``files`` in sorted path order, reusing entries whose key matches."""
        used: dict[tuple[str, str, str, int], _FileResult] = {}
        for path in sorted(files):
            checkpoint()
            content = files[path]
            raw = content.encode() if isinstance(content, str) else content
            key = (path, hashlib.blake2b(raw, digest_size=16).hexdigest(), default_namespace, max_chars)
            found = self._entries.get(key)
            used[key] = found if found is not None else _load_file(path, raw, default_namespace, max_chars)
        self._entries = used
        return list(used.values())

    def _analyze(self, config: MeshConfig, checkpoint: Checkpoint) -> list[Finding]:
        """:func:`analyze` with each unchanged resource's rules and the unchanged DestinationRule index reused."""
        checks: dict[int, tuple[Resource[Any], list[Finding]]] = {}

        def check(resource: Resource[Any]) -> list[Finding]:
            found = self._checks.get(id(resource))
            if found is None or found[0] is not resource:
                found = (resource, check_resource(resource))
            checks[id(resource)] = found
            return found[1]

        findings = analyze(config, checkpoint=checkpoint, check=check, rule_index=self.translations.rules(config))
        self._checks = checks
        return findings


def _load_file(path: str, content: bytes, default_namespace: str, max_chars: int) -> _FileResult:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        # Never a silent U+FFFD: a Latin-1 "é" in a host would become another host.
        return _FileResult(resources=(), findings=(_not_utf8(path, content, error.start),), documents=0)
    parsed, parse_findings = parse_yaml(text, file=path, default_namespace=default_namespace, max_chars=max_chars)
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


def _not_utf8(path: str, content: bytes, offset: int) -> Finding:
    return Finding(
        code=Code.NOT_UTF8,
        severity=Severity.ERROR,
        message=f"not UTF-8: byte 0x{content[offset]:02x} at offset {offset} is not valid UTF-8 (YAML files are UTF-8)",
        file=path,
        line=content.count(b"\n", 0, offset) + 1,
        hint="save the file as UTF-8; nothing in this file is applied",
    )


def _skipped_finding(skipped: SkippedFile, limits: InputLimits) -> Finding:
    """What a file left unread means for the revision, and what to do about it."""
    size = format_size(skipped.size)
    if skipped.reason is SkipReason.FILE_TOO_LARGE:
        code, severity = Code.FILE_TOO_LARGE, Severity.ERROR
        message = f"file is {size}, over the limit of {format_size(limits.file_bytes)} per file; it was not parsed"
        hint = "split it into smaller files (or raise --max-file-size); nothing in this revision is applied"
    elif skipped.reason is SkipReason.REVISION_TOO_LARGE:
        code, severity = Code.REVISION_TOO_LARGE, Severity.ERROR
        message = (
            f"the {skipped.files} config files total {size}, over the limit of"
            f" {format_size(limits.revision_bytes)} per revision; no file was read (this is the largest)"
        )
        hint = "move files that are not mesh config out of the config path (or raise --max-revision-size)"
    elif skipped.reason is SkipReason.SYMLINK:
        code, severity = Code.SYMLINK_SKIPPED, Severity.WARNING
        message = "symlink not followed: a symlink committed to git may point outside the repository"
        hint = "commit the file itself; this file's resources are not applied"
    else:
        code, severity = Code.SYMLINK_SKIPPED, Severity.WARNING
        message = "symlink not followed: its target is outside the config directory"
        hint = "copy the file into the directory; this file's resources are not applied"
    return Finding(code=code, severity=severity, message=message, file=skipped.path, line=1, hint=hint)


def load_files(
    files: Mapping[str, bytes | str],
    *,
    skipped: Sequence[SkippedFile] = (),
    default_namespace: str = "default",
    cache: DecodeCache | None = None,
    limits: InputLimits = DEFAULT_LIMITS,
    checkpoint: Checkpoint = no_checkpoint,
    cluster_domain: str | None = None,
) -> LoadResult:
    """Parse, decode and validate in-memory files (path → content), in sorted path order.

    ``skipped`` are the files the source left unread (each becomes a finding); ``limits``
    bounds what aliases may expand a file to. Pass a :class:`DecodeCache` kept across calls
    to skip files whose content did not change. ``checkpoint`` is called before each file
    and between analysis steps; what it raises ends the load. ``cluster_domain``: the config is served
    beside that cluster's Services, so ``name.namespace.svc.<domain>`` hosts are not missing.
    """
    cache = cache if cache is not None else DecodeCache()
    findings = [_skipped_finding(entry, limits) for entry in skipped]
    resources: list[Resource[Any]] = []
    documents = 0
    for result in cache._load_all(files, default_namespace, limits.file_bytes, checkpoint):
        findings.extend(result.findings)
        resources.extend(result.resources)
        documents += result.documents
    config, build_findings = build_config(resources)
    findings.extend(build_findings)
    findings.extend(cache._analyze(config, checkpoint))
    translations: Mapping[ProxyShape, Translation] = MappingProxyType({})
    notes: tuple[Finding, ...] = ()
    if not has_errors(findings):
        # A config that validates must also be one Envoy accepts: translate it as proxies would get it.
        checked = check_representatives(
            config,
            keep=KEPT_TRANSLATIONS,
            passed=cache.passed,
            cache=cache.translations,
            cluster_domain=cluster_domain,
        )
        cache.passed.retain_used()
        findings.extend(checked.rejections)
        translations = checked.translations
        notes = tuple(sort_findings(list(checked.notes)))
    return LoadResult(
        config=config,
        findings=tuple(sort_findings(findings)),
        documents=documents,
        translations=translations,
        notes=notes,
    )


def load_paths(
    paths: Sequence[Path], *, default_namespace: str = "default", limits: InputLimits = DEFAULT_LIMITS
) -> LoadResult:
    """Read and load every YAML file under ``paths``."""
    read = read_paths(paths, limits=limits)
    return load_files(read.files, skipped=read.skipped, default_namespace=default_namespace, limits=limits)
