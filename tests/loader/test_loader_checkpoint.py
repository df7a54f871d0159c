"""load_files calls its checkpoint between files and analysis steps; what the checkpoint raises ends the load."""

from __future__ import annotations

import pytest
from mesh_yaml import service_entry

from reconciler.errors import Cancelled
from reconciler.loader import load_files


class StopAfter:
    """A checkpoint that lets ``calls`` calls through, then raises Cancelled."""

    def __init__(self, calls: int) -> None:
        self.left = calls
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls > self.left:
            raise Cancelled("stop")


FILES = {f"svc-{i}.yaml": service_entry(f"svc-{i}") for i in range(20)}


def test_the_checkpoint_is_called_at_least_once_per_file_and_per_resource() -> None:
    counting = StopAfter(10_000)

    result = load_files(FILES, checkpoint=counting)

    assert result.ok
    assert counting.calls >= 2 * len(FILES)  # each file, then each resource's rules


def test_what_the_checkpoint_raises_stops_the_load_before_the_next_file() -> None:
    stopping = StopAfter(3)

    with pytest.raises(Cancelled):
        load_files(FILES, checkpoint=stopping)

    assert stopping.calls == 4
