"""``--max-file-size`` and ``--max-revision-size``: the same flags on validate, run and serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.args import limits_from_args, parse_size
from reconciler.cli.main import build_parser, main
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1 << 20), ("512KiB", 512 << 10), ("4MiB", 4 << 20), ("2m", 2 << 20), ("1G", 1 << 30), ("7 b", 7)],
)
def test_sizes_are_bytes_or_powers_of_1024(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "command",
    [
        ["validate", "mesh"],
        ["serve", "mesh"],
        ["run", "--repo", "https://git.example.com/mesh.git"],
    ],
)
def test_every_command_that_reads_config_takes_both_limits(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "--max-file-size", "4MiB", "--max-revision-size", "1GiB"])

    assert limits_from_args(args) == InputLimits(file_bytes=4 << 20, revision_bytes=1 << 30)
    assert limits_from_args(build_parser().parse_args(command)) == DEFAULT_LIMITS


@pytest.mark.parametrize("value", ["lots", "0", "-1MiB", "1.5MiB", "1TiB"])
def test_a_size_that_is_not_a_positive_size_is_a_usage_error(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(tmp_path), f"--max-file-size={value}"])

    assert exited.value.code == 2
    assert "is not a positive size like 1MiB" in capsys.readouterr().err
