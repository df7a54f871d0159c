"""Real git repositories for tests: a bare "remote" and a working clone that pushes to it.

Everything goes through the ``git`` CLI with a fixed identity and an isolated config,
so tests behave the same on a laptop with a fancy ~/.gitconfig and in CI. Shared by the
source tests, the daemon end-to-end tests and the push-to-ACK benchmark (this folder is on
pytest's ``pythonpath``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reconciler.harness.envoy import free_port
from reconciler.harness.lifecycle import stop_process

__all__ = ["GitRemote", "git", "git_daemon", "git_env", "has_git_daemon"]


def git_env() -> dict[str, str]:
    """The environment for test git commands: no user/system config, fixed identity, never a credentials prompt."""
    env = dict(os.environ)
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.test",
        GIT_COMMITTER_NAME="Test Author",
        GIT_COMMITTER_EMAIL="author@example.test",
        GIT_TERMINAL_PROMPT="0",
    )
    return env


def git(*args: str, cwd: Path | None = None) -> str:
    """Run ``git args...`` and return stdout; raise with git's stderr on failure."""
    result = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        env=git_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout.strip()


@dataclass
class GitRemote:
    """A bare repository at ``bare`` and a clone of it at ``work`` that pushes ``main`` to it."""

    bare: Path
    work: Path

    @classmethod
    def create(cls, root: Path, *, name: str = "remote.git") -> GitRemote:
        bare = root / name
        work = root / "work"
        git("init", "--bare", "--quiet", str(bare))
        git("init", "--quiet", str(work))
        git("remote", "add", "origin", str(bare), cwd=work)
        return cls(bare=bare, work=work)

    @property
    def url(self) -> str:
        return str(self.bare)

    def commit(self, files: Mapping[str, str | None], message: str, *, push: bool = True) -> str:
        """Write (or, for ``None``, delete) files, commit everything, push (unless ``push=False``); return the SHA."""
        for relative, content in files.items():
            target = self.work / relative
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        if push:
            self.push()
        return self.head()

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, *, force: bool = False, to: str = "origin") -> None:
        """Push HEAD to ``main`` of ``to`` (a remote name or a repository path)."""
        git("push", "--quiet", *(["--force"] if force else []), to, "HEAD:refs/heads/main", cwd=self.work)

    def push_branch(self, branch: str) -> None:
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)

    def revert(self, sha: str) -> str:
        git("revert", "--no-edit", sha, cwd=self.work)
        self.push()
        return self.head()

    def rewrite_to(self, sha: str, files: Mapping[str, str | None], message: str) -> str:
        """Drop every commit after ``sha``, commit ``files`` on top and force-push."""
        git("reset", "--quiet", "--hard", sha, cwd=self.work)
        self.commit(files, message, push=False)
        self.push(force=True)
        return self.head()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def has_git_daemon() -> bool:
    """Whether ``git daemon`` is installed (Debian ships it in the ``git`` package itself)."""
    return (Path(git("--exec-path")) / "git-daemon").is_file()


@contextmanager
def git_daemon(base_path: Path) -> Iterator[int]:
    """Serve every repository under ``base_path`` over git:// on loopback; yield the port."""
    for _attempt in range(5):
        port = free_port()
        process = subprocess.Popen(
            [
                "git",
                "daemon",
                "--export-all",
                f"--base-path={base_path}",
                f"--port={port}",
                "--listen=127.0.0.1",
                "--reuseaddr",
                "--enable=receive-pack",
                "--informative-errors",
            ],
            env=git_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if _wait_for_port(port, process, time.monotonic() + 10):
                yield port
                return
        finally:
            stop_process(process, timeout=5)
    raise AssertionError("git daemon did not start on 127.0.0.1")
