"""One daemon per state directory: an exclusive ``flock`` on ``<state_dir>/lock``, held for the daemon's lifetime.

A second daemon on the same directory fails fast instead of fighting over the clone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

import structlog

from reconciler.errors import StateError

__all__ = ["LOCK_FILE", "StateDirLock"]

log = structlog.get_logger("reconciler.daemon")

#: The lock file in the state dir; holds the owner's pid, for the "in use" message.
LOCK_FILE = "lock"

# flock is unsupported on some network filesystems: the daemon runs unguarded there rather than not at all.
_LOCK_UNSUPPORTED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})


class StateDirLock:
    """An exclusive ``flock`` on ``<state_dir>/lock``, taken at once or not at all.

    The kernel drops it when the process dies, ``kill -9`` included, so a crash never
    leaves a stale lock behind. The descriptor is not inherited by git subprocesses.
    """

    def __init__(self, state_dir: Path) -> None:
        path = state_dir / LOCK_FILE
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StateError(f"cannot lock state dir {state_dir}: {error}") from error
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(self._fd)
            self.release()
            raise StateError(
                f"state dir {state_dir} is in use by another reconciler"
                f"{f' (pid {owner})' if owner else ''}; stop it or give another --state-dir"
            ) from None
        except OSError as error:
            if error.errno not in _LOCK_UNSUPPORTED:
                self.release()
                raise StateError(f"cannot lock state dir {state_dir}: {error}") from error
            log.warning("daemon.state_dir_unlocked", state_dir=str(state_dir), error=str(error))
        with contextlib.suppress(OSError):  # the pid only improves the message
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    # Empty while the owner is between taking the lock and writing its pid.
    return int(text) if text.isdigit() else None
