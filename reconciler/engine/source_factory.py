"""The config source the settings name: a git remote (``GitSource``) or a local directory (``LocalDirSource``)."""

from __future__ import annotations

from reconciler.engine.settings import Settings
from reconciler.errors import UsageError
from reconciler.sources.git import GitSource, redact_url
from reconciler.sources.local import LocalDirSource
from reconciler.sources.revision import ConfigSource

__all__ = ["make_source"]


def make_source(settings: Settings) -> tuple[ConfigSource, str, str]:
    """The configured source, plus how status names it and the prefix shown on findings' file paths."""
    source = settings.source
    prefix = f"{source.path.strip('/')}/" if source.path.strip("/") else ""
    if source.repo is not None:
        git = GitSource(
            url=source.repo,
            branch=source.branch,
            path=source.path,
            state_dir=settings.state.dir,
            limits=source.limits,
            credentials=source.credentials,
            timeout_seconds=source.git_timeout,
        )
        return git, redact_url(source.repo), prefix  # status and logs never show a token
    if source.repo_dir is not None:
        root = source.repo_dir / source.path if source.path else source.repo_dir
        if not root.is_dir():
            raise UsageError(f"config directory does not exist: {root}")
        local = LocalDirSource(root, limits=source.limits, settle_seconds=source.watch_settle)
        return local, str(source.repo_dir), prefix
    raise UsageError("give --repo URL_OR_PATH or --repo-dir DIR")
