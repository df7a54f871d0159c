"""``make demo`` (``python -m reconciler.demo``) runs the whole loop and says what happened."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import REPO_ROOT, git_env, run_command

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(90)]


def test_demo_runs_the_whole_loop() -> None:
    done = run_command([sys.executable, "-m", "reconciler.demo"], timeout=75)
    output = done.stdout + done.stderr

    assert done.returncode == 0, output
    bars = [line for line in output.splitlines() if line.startswith("  v1 ")]
    shares = [float(match.group(1)) for line in bars if (match := re.search(r"v2\s+[\d.]+% /\s+([\d.]+)%", line))]
    assert len(shares) == len(bars) == 13
    assert shares[:3] == [0.0, 0.0, 0.0]  # ① 100/0
    # ② the 20% canary, ③ unchanged by the bad commit: 7 bars of exactly 100 requests each (send_at_rate's
    # count is exact, and every bar has 0 errors). One bar: sigma = sqrt(100 * 0.2 * 0.8) = 4 points, so 20 +- 18
    # is 4.5 sigma. All 700 together: sigma = 1.5 points, so 20 +- 7 is 4.6 sigma. A two-sided 4.5 sigma miss has
    # probability 7e-6, so the 8 checks fail by chance about once in 20,000 runs.
    canary = shares[3:10]
    assert all(2.0 <= share <= 38.0 for share in canary), canary
    assert sum(canary) / len(canary) == pytest.approx(20.0, abs=7.0), canary
    assert shares[10:] == [0.0, 0.0, 0.0]  # ④ reverted
    assert all(line.endswith("errors 0") for line in bars)
    assert re.search(r"mesh/virtualservice\.yaml:\d+: IST0101", output)
    assert re.search(r"ingress-1\s+SYNCED\s+SYNCED\s+SYNCED\s+SYNCED", output)
    assert "Every process was stopped" in output


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...), from /proc."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = {int(child) for child in (task / "children").read_text().split()}
            except OSError:
                continue  # the task exited meanwhile
            pending.extend(children - found)
            found |= children
    return found


def lines_of(stream: Iterator[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The stream's lines as they come, read by a thread (done at EOF) so the test can wait with a timeout."""
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True)
    reader.start()
    return lines, reader


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to list the demo's processes")
def test_ctrl_c_stops_the_demos_daemon_and_envoy_and_removes_its_files() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "reconciler.demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=git_env(),
        cwd=REPO_ROOT,
    )
    try:
        assert demo.stdout is not None
        lines, reader = lines_of(demo.stdout)
        output: list[str] = []
        deadline = time.monotonic() + 60
        while not any(line.startswith("  v1 ") for line in output):  # traffic flows: daemon and Envoy are up
            assert time.monotonic() < deadline, "".join(output)
            output.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        workdir = Path(next(m.group(1) for line in output if (m := re.search(r"config repo: (\S+)/remote\.git", line))))
        started = descendants(demo.pid)
        assert len(started) >= 2, "".join(output)  # the daemon and Envoy at least

        demo.send_signal(signal.SIGINT)

        assert demo.wait(timeout=30) == 130
    finally:
        demo.kill()
        demo.wait()
    reader.join(timeout=10)
    while not lines.empty():
        output.append(lines.get())
    assert "interrupted — stopping everything" in "".join(output)
    still_running = {pid for pid in started if Path(f"/proc/{pid}").exists()}
    assert still_running == set(), "".join(output)
    assert not workdir.exists()
