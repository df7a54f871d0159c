"""Running one git network command so that a hung server cannot wedge the daemon.

Not gitpython's ``kill_after_timeout``: that cannot be triggered from another thread,
and it SIGKILLs, which leaves git's lock files behind. Here the command runs in its own
process group; a deadline or an abort (another thread sets an Event) sends SIGTERM, so
git removes its lock files, and SIGKILL follows if it has not exited after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

from git.exc import GitCommandError

__all__ = ["ProcessAborted", "ProcessTimedOut", "run_abortable"]

# How often a running network command checks for abort and its deadline.
_WAIT_SLICE_SECONDS = 0.1
# SIGTERM lets git remove its lock files; SIGKILL follows if it has not exited by then.
_KILL_GRACE_SECONDS = 5.0


class ProcessAborted(Exception):
    """Internal: the command was ended because ``aborted`` was set (the caller turns it into SourceAborted)."""


class ProcessTimedOut(GitCommandError):
    """The command was ended at its deadline (a GitCommandError, so callers unaware of it still see a failure)."""


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    """Send ``signum`` to the process group ``process`` leads (started with ``process_group=0``)."""
    with contextlib.suppress(ProcessLookupError):  # already gone, with all of its helpers
        os.killpg(process.pid, signum)


def run_abortable(
    command: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    timeout: float,
    aborted: threading.Event,
) -> None:
    """Run ``command`` to its end, within ``timeout`` seconds, unless ``aborted`` is set meanwhile.

    Raises GitCommandError like gitpython (stderr is git's), :class:`ProcessTimedOut` when the
    deadline ended it, and :class:`ProcessAborted` when ``aborted`` did.
    """
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Its own process group, so a signal also reaches git's helpers (git-remote-http, ssh).
        process_group=0,
    )
    deadline = time.monotonic() + timeout
    signalled_at: float | None = None
    was_aborted = timed_out = killed = False
    try:
        while True:
            try:
                _, stderr = process.communicate(timeout=_WAIT_SLICE_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if signalled_at is None and (aborted.is_set() or now >= deadline):
                was_aborted = aborted.is_set()
                timed_out = not was_aborted
                _signal_group(process, signal.SIGTERM)
                signalled_at = now
            elif signalled_at is not None and not killed and now - signalled_at >= _KILL_GRACE_SECONDS:
                _signal_group(process, signal.SIGKILL)
                killed = True
    finally:
        if process.returncode is None:  # only when an exception interrupted the wait
            _signal_group(process, signal.SIGKILL)
            process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
    if was_aborted:
        raise ProcessAborted(command[1] if len(command) > 1 else command[0])
    if timed_out:
        message = f"did not finish within {timeout:g} s (--git-timeout); git {command[1]} was ended"
        raise ProcessTimedOut(list(command), process.returncode, message)
    if process.returncode != 0:
        raise GitCommandError(list(command), process.returncode, stderr.decode("utf-8", errors="replace").strip())
