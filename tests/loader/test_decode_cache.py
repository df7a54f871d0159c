"""The decode cache: unchanged files are reused, changed and removed files are not."""

from mesh_yaml import service_entry

from reconciler.loader import DecodeCache, load_files


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
