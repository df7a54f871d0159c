"""The decode cache: unchanged files are reused, changed and removed files are not."""

from typing import Any

import pytest
from mesh_yaml import service_entry

import reconciler.loader as loader_module
from reconciler.loader import DecodeCache, load_files
from reconciler.model.config import Resource
from reconciler.validate.findings import Code, Finding
from reconciler.validate.rules import check_resource


def _files(**names: str) -> dict[str, bytes]:
    return {path: service_entry(name).encode() for path, name in names.items()}


def test_unchanged_file_yields_the_same_decoded_resource_objects() -> None:
    cache = DecodeCache()
    first = load_files(_files(**{"a.yaml": "alpha", "b.yaml": "beta"}), cache=cache)
    second = load_files(_files(**{"a.yaml": "alpha", "b.yaml": "gamma"}), cache=cache)

    assert second.config.service_entries[0] is first.config.service_entries[0]
    assert second.config.service_entries[1] is not first.config.service_entries[1]
    assert second.config.service_entries[1].name == "gamma"


def test_cached_load_reports_the_same_findings_as_a_fresh_load() -> None:
    broken = {"a.yaml": service_entry("alpha").replace("number: 80", "number: 0").encode()}
    cache = DecodeCache()
    load_files(broken, cache=cache)

    assert load_files(broken, cache=cache).findings == load_files(broken).findings
    assert not load_files(broken, cache=cache).ok


def test_file_removed_between_loads_is_gone_from_the_config() -> None:
    cache = DecodeCache()
    load_files(_files(**{"a.yaml": "alpha", "b.yaml": "beta"}), cache=cache)
    after = load_files(_files(**{"a.yaml": "alpha"}), cache=cache)

    assert [entry.name for entry in after.config.service_entries] == ["alpha"]


def test_only_resources_not_met_before_are_checked_against_the_rules_and_findings_stay_those_of_a_fresh_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: []\n"
    cache = DecodeCache()
    load_files({**_files(**{"a.yaml": "alpha", "b.yaml": "beta"}), "vs.yaml": bad}, cache=cache)
    checked: list[str] = []

    def recording(resource: Resource[Any]) -> list[Finding]:
        checked.append(resource.name)
        return check_resource(resource)

    monkeypatch.setattr(loader_module, "check_resource", recording)
    files = {**_files(**{"a.yaml": "alpha", "b.yaml": "gamma"}), "vs.yaml": bad}

    cached = load_files(files, cache=cache)

    assert checked == ["gamma"]
    assert cached.findings == load_files(files).findings
    assert any(finding.file == "vs.yaml" and finding.code is Code.SCHEMA for finding in cached.findings)
