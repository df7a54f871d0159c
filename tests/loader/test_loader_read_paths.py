"""``reconciler validate DIR`` reads exactly the files the daemon would serve from DIR: one rule, is_config_file."""

from __future__ import annotations

from pathlib import Path

import pytest
from mesh_yaml import service_entry

from reconciler.cli.main import main
from reconciler.loader import load_paths, read_paths
from reconciler.model.source import is_config_file
from reconciler.sources import revision
from reconciler.sources.local import LocalDirSource

NOT_MESH_CONFIG = "on: push\njobs: {test: {runs-on: ubuntu-latest}}\n"  # a CI workflow: an error if loaded


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def relative_keys(root: Path, files: dict[str, bytes]) -> set[str]:
    return {Path(path).relative_to(root).as_posix() for path in files}


def test_validate_skips_hidden_directories_like_the_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "mesh/a.yaml", service_entry("a"))
    write(tmp_path, ".github/workflows/ci.yaml", NOT_MESH_CONFIG)
    write(tmp_path, ".hidden/deep/er/x.yaml", NOT_MESH_CONFIG)  # hidden three levels up
    write(tmp_path, "..data/a.yaml", service_entry("a"))  # a ConfigMap mount's swap directory
    write(tmp_path, "mesh/.#a.yaml", NOT_MESH_CONFIG)  # an editor's lock file

    read = relative_keys(tmp_path, read_paths([tmp_path]).files)

    assert read == {"mesh/a.yaml"}
    assert read == set(LocalDirSource(tmp_path).read().files)
    assert main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out.endswith("in 1 resource from 1 file\n")


def test_uppercase_yaml_suffix_is_loaded_like_the_daemon(tmp_path: Path) -> None:
    write(tmp_path, "GW.YAML", service_entry("gw"))
    write(tmp_path, "sub/Other.Yml", service_entry("other"))
    write(tmp_path, "README.md", "# not config\n")

    assert relative_keys(tmp_path, read_paths([tmp_path]).files) == {"GW.YAML", "sub/Other.Yml"}
    assert set(LocalDirSource(tmp_path).read().files) == {"GW.YAML", "sub/Other.Yml"}
    assert sorted(entry.name for entry in load_paths([tmp_path]).config.service_entries) == ["gw", "other"]


def test_a_file_named_directly_is_read_when_its_suffix_is_yaml_even_if_hidden(tmp_path: Path) -> None:
    write(tmp_path, ".github/workflows/ci.YML", NOT_MESH_CONFIG)
    write(tmp_path, "notes.txt", "text\n")
    named = [tmp_path / ".github/workflows/ci.YML", tmp_path / "notes.txt"]

    assert list(read_paths(named).files) == [str(tmp_path / ".github/workflows/ci.YML")]


def test_the_directory_given_may_itself_be_hidden(tmp_path: Path) -> None:
    write(tmp_path, ".mesh/a.yaml", service_entry("a"))

    assert list(read_paths([tmp_path / ".mesh"]).files) == [str(tmp_path / ".mesh/a.yaml")]


def test_the_sources_still_import_the_rule_from_revision() -> None:
    assert revision.is_config_file is is_config_file
    assert [is_config_file(path) for path in ("a.YAML", "x/.git/a.yaml", "a.yaml.bak", "./a.yml")] == [
        True,
        False,
        False,
        True,
    ]
