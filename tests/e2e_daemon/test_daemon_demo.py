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
from dataclasses import dataclass
from pathlib import Path

import pytest
from daemon_harness import REPO_ROOT, git_env, run_command

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(150)]

#: One bar of the live view: its v1 and v2 shares, its errors, and the step it ran in wholly (if any).
BAR = re.compile(r"^  v1 \S+ v2 +([\d.]+)% / +([\d.]+)% +errors (\d+)(?: +(.+))?$")


@dataclass(frozen=True)
class Bar:
    v2: float
    errors: int
    step: str | None


def bars(section: str) -> list[Bar]:
    return [
        Bar(float(match.group(2)), int(match.group(3)), match.group(4))
        for line in section.splitlines()
        if (match := BAR.match(line))
    ]


def acts(output: str) -> dict[str, str]:
    """The demo's output by act: ``"①"`` ... ``"⑧"`` → the text from its heading to the next one."""
    parts = re.split(r"^([①②③④⑤⑥⑦⑧]) ", output, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def within(share: float, *, expected: float, n: int = 100) -> bool:
    """A bar of ``n`` requests (send_at_rate's count is exact) each going to v2 with probability ``expected`` %:
    within 4.5 sigma of it. A two-sided 4.5 sigma miss has probability 7e-6 per bar."""
    p = expected / 100
    return abs(share - expected) <= 4.5 * 100 * (p * (1 - p) / n) ** 0.5


def test_demo_runs_the_whole_loop() -> None:
    done = run_command([sys.executable, "-m", "reconciler.demo"], timeout=120)
    output = done.stdout + done.stderr

    assert done.returncode == 0, output
    by_act = acts(output)
    assert list(by_act) == ["①", "②", "③", "④", "⑤", "⑥", "⑦", "⑧"], output
    before_policy = [bar for act in "①②③④" for bar in bars(by_act[act])]
    shares = [bar.v2 for bar in before_policy]
    assert len(shares) == 13
    assert shares[:3] == [0.0, 0.0, 0.0]  # ① 100/0
    # ② the 20% canary, ③ unchanged by the bad commit: 7 bars of exactly 100 requests each. One bar: sigma =
    # sqrt(100 * 0.2 * 0.8) = 4 points, so 20 +- 18 is 4.5 sigma. All 700 together: sigma = 1.5 points, so 20 +- 7
    # is 4.6 sigma. The 8 checks fail by chance about once in 20,000 runs.
    canary = shares[3:10]
    assert all(within(share, expected=20) for share in canary), canary
    assert sum(canary) / len(canary) == pytest.approx(20.0, abs=7.0), canary
    assert shares[10:] == [0.0, 0.0, 0.0]  # ④ reverted
    assert re.search(r"mesh/virtualservice\.yaml:\d+: IST0101", by_act["③"])
    assert all(bar.errors == 0 and bar.step is None for bar in before_policy)

    # ⑤ under the policy, 100/0 -> 0/100 walks 80/20, 50/50, then git's weights, each step announced once every
    # proxy ACKed it; a bar that ran wholly within one ACKed step is tagged with it and matches its split.
    walk = by_act["⑤"]
    acked = re.findall(r"✓ (.+?): v1 (\d+) / v2 (\d+), all proxies ACKed", walk)
    assert acked == [("step 1 of 2", "80", "20"), ("step 2 of 2", "50", "50"), ("Succeeded", "0", "100")], walk
    walked = bars(walk)
    assert all(bar.errors == 0 for bar in walked), walk
    assert all(within(bar.v2, expected=20) for bar in walked if bar.step == "step 1 of 2"), walk
    assert all(within(bar.v2, expected=50) for bar in walked if bar.step == "step 2 of 2"), walk
    # The demo goes on until two bars ran wholly in the final phase.
    assert [bar.v2 for bar in walked if bar.step == "Succeeded"] == [100.0, 100.0], walk

    skipped = bars(by_act["⑥"])  # no policy: 100/0 at once
    assert [(bar.v2, bar.errors) for bar in skipped] == [(0.0, 0), (0.0, 0)], by_act["⑥"]

    # ⑦ the same move to a v2 failing 40% of its requests: the first step is rolled back by the daemon itself.
    failed = by_act["⑦"]
    acked = re.findall(r"[✓✗] (.+?): v1 (\d+) / v2 (\d+), all proxies ACKed", failed)
    assert acked == [("step 1 of 2", "80", "20"), ("RolledBack", "100", "0")], failed
    decision = re.search(r"the decision: step 1 \(20%\): rolled back at once: canary error rate (\d+)/(\d+) = ", failed)
    assert decision, failed
    assert 0 < int(decision.group(1)) <= int(decision.group(2))
    assert all(within(bar.v2, expected=20) for bar in bars(failed) if bar.step == "step 1 of 2"), failed
    assert [(bar.v2, bar.errors) for bar in bars(failed) if bar.step == "RolledBack"] == [(0.0, 0), (0.0, 0)], failed

    assert re.search(r"ingress-1\s+SYNCED\s+SYNCED\s+SYNCED\s+SYNCED", by_act["⑧"])
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
