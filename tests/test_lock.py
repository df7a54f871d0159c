"""requirements.lock is what `make` installs (deploy/requirements.lock, the daemon image's runtime part): both must
agree with pyproject.toml's dependencies.

Checked offline from the two files: every dependency of the package and of its ``dev`` extra
is locked at a version its range allows, and the lock holds no direct dependency that
pyproject.toml no longer names. `make lock` repairs either.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
# A pinned line: `name==version ; marker \` (the marker is optional).
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")
_DIRECT = "reconciler (pyproject.toml)"


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def _locked(lock: Path = LOCK) -> tuple[dict[str, str], set[str]]:
    """Locked versions by normalized name, and the names the lock says pyproject.toml asked for."""
    versions: dict[str, str] = {}
    direct: set[str] = set()
    current = ""
    for line in lock.read_text().splitlines():
        if match := _PIN.match(line):
            current = canonicalize_name(match["name"])
            versions[current] = match["version"]
        elif line.strip() in (f"# via {_DIRECT}", f"#   {_DIRECT}"):
            direct.add(current)
    return versions, direct


def test_every_declared_dependency_is_locked_at_a_version_its_range_allows() -> None:
    versions, _ = _locked()
    stale = [
        f"{requirement} (locked: {versions.get(canonicalize_name(requirement.name), 'missing')})"
        for requirement in _declared()
        if versions.get(canonicalize_name(requirement.name)) is None
        or not requirement.specifier.contains(versions[canonicalize_name(requirement.name)], prereleases=True)
    ]
    assert stale == [], f"requirements.lock is out of date with pyproject.toml (run `make lock`): {stale}"


def test_the_daemon_images_lock_holds_every_runtime_dependency_at_a_version_its_range_allows() -> None:
    versions, _ = _locked(ROOT / "deploy" / "requirements.lock")
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    stale = [
        text
        for text in runtime
        if (version := versions.get(canonicalize_name(Requirement(text).name))) is None
        or not Requirement(text).specifier.contains(version, prereleases=True)
    ]
    assert stale == [], f"deploy/requirements.lock is out of date with pyproject.toml (run `make lock`): {stale}"


def test_the_lock_holds_no_direct_dependency_that_pyproject_no_longer_declares() -> None:
    _, direct = _locked()
    declared = {canonicalize_name(requirement.name) for requirement in _declared()}
    assert direct, "the lock names no direct dependency: was it made by `make lock`?"
    assert direct - declared == set(), "requirements.lock is out of date with pyproject.toml (run `make lock`)"


def test_every_locked_file_is_pinned_by_hash() -> None:
    text = LOCK.read_text()
    pins = [line for line in text.splitlines() if _PIN.match(line)]
    assert pins
    assert all(line.rstrip().endswith("\\") for line in pins), "each pin is followed by its --hash lines"
    assert text.count("--hash=sha256:") >= len(pins)
