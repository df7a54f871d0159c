"""``make demo`` (``python -m reconciler.demo``) runs the whole loop and says what happened."""

from __future__ import annotations

import re
import sys

import pytest
from daemon_harness import run_command

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(90)]


def test_demo_runs_the_whole_loop() -> None:
    done = run_command([sys.executable, "-m", "reconciler.demo"], timeout=75)
    output = done.stdout + done.stderr

    assert done.returncode == 0, output
    bars = [line for line in output.splitlines() if line.startswith("  v1 ")]
    shares = [float(match.group(1)) for line in bars if (match := re.search(r"v2\s+[\d.]+% /\s+([\d.]+)%", line))]
    assert len(shares) == len(bars) == 13
    assert shares[:3] == [0.0, 0.0, 0.0]  # ① 100/0
    assert all(5.0 <= share <= 40.0 for share in shares[3:10])  # ② the 20% canary, ③ unchanged by the bad commit
    assert shares[10:] == [0.0, 0.0, 0.0]  # ④ reverted
    assert all(line.endswith("errors 0") for line in bars)
    assert re.search(r"mesh/virtualservice\.yaml:\d+: IST0101", output)
    assert re.search(r"ingress-1\s+SYNCED\s+SYNCED\s+SYNCED\s+SYNCED", output)
    assert "Every process was stopped" in output
