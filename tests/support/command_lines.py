"""What ``ps`` would have shown while a test ran: every process's command line, sampled from /proc.

Shared by the tests proving that no secret (a token, a deploy key) reaches a command line.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["CommandLines"]


class CommandLines:
    """Every process's command line, sampled from /proc until stopped: what ``ps`` would have shown."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for path in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):  # the process ended meanwhile
                    self.seen.add(path.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            self._stop.wait(0.02)

    @contextmanager
    def running(self) -> Iterator[CommandLines]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)

    def git_children(self) -> list[str]:
        return [line for line in self.seen if "remote-http" in line or ("git" in line and " fetch " in line)]
