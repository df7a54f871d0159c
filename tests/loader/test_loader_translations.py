"""What validation translated is handed on: the translations a load made, by proxy shape."""

from __future__ import annotations

from memsource import mesh_files

from reconciler.loader import load_files
from reconciler.translate import build_registry, translate
from reconciler.translate.translator import check_representatives, proxy_shape, representative_proxies


def _files(**changes: str) -> dict[str, bytes | str]:
    files: dict[str, bytes | str] = {f"mesh/{name}": text for name, text in mesh_files().items()}
    files.update(changes)
    return files


def test_a_load_keeps_the_translation_of_every_representative_proxy_as_translate_makes_it() -> None:
    loaded = load_files(_files())
    config, registry = loaded.config, build_registry(loaded.config)

    proxies = representative_proxies(config)
    assert set(loaded.translations) == {proxy_shape(config, proxy) for proxy in proxies}
    for proxy in proxies:
        kept = loaded.translations[proxy_shape(config, proxy)]
        assert kept.snapshot.version == translate(config, proxy, registry=registry).snapshot.version


def test_a_load_that_does_not_validate_keeps_no_translation() -> None:
    loaded = load_files(_files(**{"mesh/broken.yaml": "kind: VirtualService\nspec: [\n"}))

    assert not loaded.ok
    assert loaded.translations == {}


def test_at_most_keep_translations_are_kept_while_every_shape_is_still_checked() -> None:
    config = load_files(_files()).config
    assert len(representative_proxies(config)) == 2  # a sidecar in default, the ingress gateway

    checked = check_representatives(config, keep=1)

    assert checked.rejections == ()
    assert list(checked.translations) == [proxy_shape(config, representative_proxies(config)[0])]
