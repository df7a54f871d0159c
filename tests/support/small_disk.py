"""A disk that really fills up: a small tmpfs (root only; the test is skipped elsewhere) and a filler."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["fill", "small_tmpfs"]


@contextmanager
def small_tmpfs(mountpoint: Path, *, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``2m``) at ``mountpoint`` (created) for the block; skip the test if one cannot be."""
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until its filesystem is full; return the file to delete."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as stream:
        for size in (65536, 1):  # big chunks, then top up what is left
            try:
                while True:
                    stream.write(b"\0" * size)
            except OSError:
                pass
    return filler
