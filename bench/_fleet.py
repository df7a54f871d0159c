"""Shared by the benches that run a fleet of real Envoys: CPU and memory of a process tree, bounded startup.

Not a bench (no ``main``); imported by ``sovereign_bench.py`` and ``proxy_memory_bench.py``.
CPU and memory are read from ``/proc`` (Linux), so measuring never asks the measured process
anything. Envoys start a batch at a time and each batch is waited for before the next, so a
fleet of 50 on a 2-core machine does not starve the control plane (or the Envoys already
running) of CPU while thousands of clusters are turned into config.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from push_to_ack_bench import in_workdir

__all__ = [
    "START_BATCH",
    "cpu_seconds",
    "memory_mib",
    "process_tree",
    "run_in_workdir",
    "start_in_batches",
    "wait_until",
]

T = TypeVar("T")

#: Envoys started at once; the next batch waits until these have their config.
START_BATCH = 10

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it, now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root``'s process tree (processes that exited meanwhile are lost)."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, IndexError):
            fields = _stat_fields(pid)
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLOCK_TICKS


def memory_mib(root: int) -> tuple[float, float]:
    """(RSS, PSS) of ``root``'s process tree, summed, in MiB."""
    rss = pss = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss / 1024, pss / 1024


def wait_until(done: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``done`` until it holds; SystemExit naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not within {timeout:g}s")
        time.sleep(interval)


def start_in_batches(
    started: list[T],
    *,
    total: int,
    start: Callable[[int], T],
    synced: Callable[[Sequence[T]], None],
    batch: int = START_BATCH,
) -> None:
    """Grow ``started`` to ``total``: ``start(number)`` (numbers from 1) ``batch`` at a time, then ``synced(batch)``.

    ``synced`` waits until the batch just started has its first config (and raises if it does
    not come); what ``start`` returns is appended before it is waited for, so a caller's
    cleanup sees every process started, even when the wait fails.
    """
    while len(started) < total:
        pending = []
        for number in range(len(started) + 1, min(total, len(started) + batch) + 1):
            pending.append(start(number))
            started.append(pending[-1])
        synced(pending)


def run_in_workdir(prefix: str, *, keep: bool, body: Callable[[Path], object]) -> int:
    """``body`` in a fresh temporary directory (kept if ``keep``); exit status 0.

    SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, through the finally blocks that stop every process.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    in_workdir(prefix, keep=keep, body=body)
    return 0
