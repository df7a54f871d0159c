"""Mutants, killed, survived, timeouts and kill ratio by folder, from ``mutmut results --all true`` on stdin.

``make mutation`` prints it. Mutants not run (``not checked``, outside a MUTANTS sample) are left out; mutants
no selected test reaches (``no tests``) count as survivors, since no test would notice them.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict

_LINE = re.compile(r"^\s*(?P<name>reconciler\.(?P<folder>\w+)\.\S+): (?P<status>.+)$")
_KILLED = {"killed"}
_SURVIVED = {"survived", "no tests"}
_TIMEOUT = {"timeout"}


def summarise(lines: list[str]) -> dict[str, Counter[str]]:
    by_folder: dict[str, Counter[str]] = defaultdict(Counter)
    for line in lines:
        match = _LINE.match(line)
        if match and match["status"] != "not checked":
            by_folder[match["folder"]][match["status"]] += 1
    return by_folder


def main() -> None:
    by_folder = summarise(sys.stdin.read().splitlines())
    total: Counter[str] = Counter()
    print(f"{'folder':<10} {'mutants':>8} {'killed':>7} {'survived':>9} {'timeout':>8} {'other':>6} {'kill ratio':>11}")
    for folder, counts in [*sorted(by_folder.items()), ("total", total)]:
        if folder != "total":
            total.update(counts)
        mutants = sum(counts.values())
        killed = sum(counts[s] for s in _KILLED)
        survived = sum(counts[s] for s in _SURVIVED)
        timeout = sum(counts[s] for s in _TIMEOUT)
        other = mutants - killed - survived - timeout
        # A timeout is a kill too: the mutant made the tests hang, which a test run notices.
        ratio = (killed + timeout) / mutants if mutants else 0.0
        print(f"{folder:<10} {mutants:>8} {killed:>7} {survived:>9} {timeout:>8} {other:>6} {ratio:>10.1%}")


if __name__ == "__main__":
    main()
