"""Reading config from disk stays inside the directory given and within the size limits, in validate and the daemon."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mesh_yaml import service_entry

from reconciler.cli.main import main
from reconciler.loader import load_files, read_paths
from reconciler.model.limits import InputLimits, SkippedFile, SkipReason
from reconciler.sources.local import LocalDirSource
from reconciler.validate.findings import Code, Severity

SECRET = "aws_secret_access_key = wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY\n"
SMALL = InputLimits(file_bytes=2048, revision_bytes=4096)


@pytest.fixture
def mesh_with_secret_link(tmp_path: Path) -> Path:
    """``mesh/`` with one ServiceEntry and ``creds.yaml``, a symlink to a credentials file beside the directory."""
    (tmp_path / "credentials").write_text(SECRET)
    mesh = tmp_path / "mesh"
    mesh.mkdir()
    (mesh / "a.yaml").write_text(service_entry("a"))
    os.symlink("../credentials", mesh / "creds.yaml")
    return mesh


def test_validate_never_reads_a_symlink_that_leaves_the_directory(
    mesh_with_secret_link: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["validate", str(mesh_with_secret_link)])

    out = capsys.readouterr().out
    assert "wJalrXUtnFEMI" not in out
    assert code == 0  # a warning: the rest of the config is fine
    (warning, summary) = out.splitlines()
    assert warning.startswith(f"{mesh_with_secret_link / 'creds.yaml'}:1: WARNING {Code.SYMLINK_SKIPPED.value}: ")
    assert summary == "0 errors, 1 warning, 0 info in 1 resource from 1 file"


def test_a_symlinked_file_named_directly_must_stay_in_its_own_directory(
    mesh_with_secret_link: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `reconciler validate mesh/*.yaml` in CI names each file: a link in a pull request must not leak either.
    code = main(["validate", str(mesh_with_secret_link / "creds.yaml"), "--format", "json"])

    out = capsys.readouterr().out
    assert "wJalrXUtnFEMI" not in out
    assert code == 0
    assert Code.SYMLINK_SKIPPED.value in out


def test_the_local_source_leaves_a_symlink_out_of_the_directory_out_of_the_revision(
    mesh_with_secret_link: Path,
) -> None:
    revision = LocalDirSource(mesh_with_secret_link).read()

    assert set(revision.files) == {"a.yaml"}
    assert revision.skipped == (SkippedFile("creds.yaml", SkipReason.SYMLINK_OUTSIDE),)


def test_a_symlink_to_a_file_inside_the_directory_is_read_like_a_configmap_mount(tmp_path: Path) -> None:
    # A ConfigMap volume: a.yaml -> ..data/a.yaml, ..data -> ..2025_06_01 (swapped atomically on update).
    (tmp_path / "..2025_06_01").mkdir()
    (tmp_path / "..2025_06_01" / "a.yaml").write_text(service_entry("a"))
    os.symlink("..2025_06_01", tmp_path / "..data")
    os.symlink("..data/a.yaml", tmp_path / "a.yaml")

    revision = LocalDirSource(tmp_path).read()

    assert dict(revision.files) == {"a.yaml": service_entry("a").encode()}
    assert revision.skipped == ()


def test_a_directory_given_through_a_symlink_is_read_with_its_own_links(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.yaml").write_text(service_entry("a"))
    os.symlink("a.yaml", real / "b.yaml")
    os.symlink("real", tmp_path / "mesh")

    assert set(read_paths([tmp_path / "mesh"]).files) == {str(tmp_path / "mesh/a.yaml"), str(tmp_path / "mesh/b.yaml")}


def test_a_file_over_the_size_limit_is_a_finding_and_is_not_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(service_entry("a"))
    (tmp_path / "big.yaml").write_text("[" * 3000)  # malformed too: parsed, it would be an RC0001

    code = main(["validate", str(tmp_path), "--max-file-size", "2KiB"])

    out = capsys.readouterr().out
    assert code == 1
    (error, summary) = out.splitlines()
    assert error.startswith(f"{tmp_path / 'big.yaml'}:1: ERROR {Code.FILE_TOO_LARGE.value}: ")
    assert "2.9 KiB, over the limit of 2.0 KiB per file" in error
    assert "--max-file-size" in error
    assert summary == "1 error, 0 warnings, 0 info in 1 resource from 1 file"


def test_a_revision_over_the_total_limit_is_refused_without_reading_any_file(tmp_path: Path) -> None:
    for name, size in (("a", 1800), ("b", 1800), ("c", 2000)):  # each within the file limit, 5.5 KiB together
        (tmp_path / f"{name}.yaml").write_text(service_entry(name).ljust(size, "#"))

    read = read_paths([tmp_path], limits=SMALL)
    result = load_files(read.files, skipped=read.skipped, limits=SMALL)

    assert read.files == {}
    (finding,) = result.findings
    assert (finding.code, finding.severity, finding.file) == (
        Code.REVISION_TOO_LARGE,
        Severity.ERROR,
        str(tmp_path / "c.yaml"),  # the largest, to start with
    )
    assert "the 3 config files total 5.5 KiB, over the limit of 4.0 KiB per revision" in finding.message
    assert not result.ok


def test_a_file_that_is_not_utf8_is_an_error_finding_with_its_line_and_byte_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_bytes(service_entry("caf\xe9").encode("latin-1"))

    code = main(["validate", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 1
    (error, _) = out.splitlines()
    assert error.startswith(f"{tmp_path / 'a.yaml'}:3: ERROR {Code.NOT_UTF8.value}: not UTF-8: byte 0xe9 at offset 74 ")
    assert "\ufffd" not in out


def test_a_file_name_with_a_newline_is_quoted_so_each_finding_stays_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a\nb.yaml").write_text("kind: [\n")

    code = main(["validate", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 1
    (error, summary) = out.splitlines()
    assert error.startswith(f'"{tmp_path}/a\\nb.yaml":2: ERROR {Code.YAML_SYNTAX.value}: ')
    assert summary.startswith("1 error")


def test_validate_escapes_control_characters_a_value_brings_into_a_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(service_entry("a").replace("resolution: STATIC", 'resolution: "\\e[2J\\nX"'))

    assert main(["validate", str(tmp_path)]) == 1

    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert len(out.splitlines()) == 2
