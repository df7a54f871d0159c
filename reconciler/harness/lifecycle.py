"""Starting and stopping local processes and servers.

:class:`Lifecycle`: ``with Thing(...) as thing:`` starts it and stops it again on the way
out, also when the block raises; :meth:`Lifecycle.stop` must be idempotent.
:func:`stop_process`: the polite-then-firm way every child process here is stopped.
"""

from __future__ import annotations

import contextlib
import subprocess
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Self

__all__ = ["Lifecycle", "stop_process"]


class Lifecycle(ABC):
    """Something started with :meth:`start` (returning itself) and stopped with :meth:`stop`."""

    @abstractmethod
    def start(self) -> Self:
        """Start; return ``self`` once ready."""

    @abstractmethod
    def stop(self) -> object:
        """Stop; a no-op when not running."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def stop_process(process: subprocess.Popen[Any], *, timeout: float) -> int | None:
    """SIGTERM ``process``, SIGKILL it if it has not exited within ``timeout`` seconds; its exit status.

    A process that already exited is left alone. Each wait is bounded by ``timeout``.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=timeout)
    return process.returncode
