"""The decode cache keeps only what the latest load used: its size follows the config, not the history."""

from __future__ import annotations

from mesh_yaml import service_entry

from reconciler.loader import DecodeCache, load_files


def version(port: int) -> dict[str, bytes]:
    return {"a.yaml": service_entry("a", port=port).encode()}


def test_an_earlier_content_of_a_file_is_not_kept_after_the_file_changed() -> None:
    cache = DecodeCache()
    first = load_files(version(80), cache=cache).config.service_entries[0]
    for port in range(81, 131):  # fifty edits of one file
        load_files(version(port), cache=cache)

    again = load_files(version(80), cache=cache).config.service_entries[0]

    assert again == first
    assert again is not first  # parsed anew: the entry for the old content was dropped


def test_the_current_content_stays_cached_across_loads() -> None:
    cache = DecodeCache()
    first = load_files(version(80), cache=cache).config.service_entries[0]
    load_files(version(80), cache=cache)

    assert load_files(version(80), cache=cache).config.service_entries[0] is first


def test_a_load_with_another_default_namespace_replaces_the_entries() -> None:
    cache = DecodeCache()
    first = load_files(version(80), cache=cache).config.service_entries[0]
    load_files(version(80), cache=cache, default_namespace="other")

    assert load_files(version(80), cache=cache).config.service_entries[0] is not first
