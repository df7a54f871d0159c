"""Fixtures for source tests: a real bare remote with a clone, and a state dir for GitSource."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from gitrepo import GitRemote

if shutil.which("git") is None:  # pragma: no cover - git is a hard requirement of the daemon
    pytest.skip("the git CLI is not installed", allow_module_level=True)


@pytest.fixture
def remote(tmp_path: Path) -> GitRemote:
    """A bare remote whose ``main`` has one commit with ``mesh/gateway.yaml`` and a README."""
    repo = GitRemote.create(tmp_path / "upstream")
    repo.commit(
        {
            "mesh/gateway.yaml": "kind: Gateway\nname: public\n",
            "README.md": "# mesh config\n",
        },
        "initial mesh config",
    )
    return repo


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """Where a GitSource keeps its clone."""
    path = tmp_path / "state"
    path.mkdir()
    return path
