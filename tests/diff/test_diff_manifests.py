"""The served config written as manifests loads back into the same config: same specs, same Envoy resources."""

from __future__ import annotations

from pathlib import Path

import pytest
from rollout_yaml import policy_yaml
from translate_support import FIXTURES, PROJECT_ROOT

from reconciler.diff.envoy import proxy_shapes
from reconciler.diff.manifests import config_manifests, manifest_files
from reconciler.loader import LoadResult, load_files, read_paths
from reconciler.translate.snapshot import PUSH_ORDER
from reconciler.translate.translator import translate

_CONFIGS = [
    *sorted(FIXTURES.glob("*.yaml")),
    PROJECT_ROOT / "tests" / "fixtures" / "validate" / "valid" / "bookinfo",
]
_CHECKS = ("{metric: error-rate, max: 2.5%, confidence: 95%}", "{metric: latency, max: 250ms, percentile: 99.9}")


def _load(files: dict[str, str]) -> LoadResult:
    loaded = load_files(files)
    assert loaded.ok, [finding.format() for finding in loaded.findings]
    return loaded


def _read(path: Path) -> dict[str, str]:
    return {name: bytes(content).decode() for name, content in read_paths([path]).files.items()}


@pytest.mark.parametrize("path", _CONFIGS, ids=lambda path: path.name)
def test_a_config_written_as_manifests_loads_back_with_equal_specs_and_equal_envoy_resources(path: Path) -> None:
    original = _load(_read(path)).config

    reloaded = _load(manifest_files(config_manifests(original))).config

    assert [(r.kind, r.ref, r.api_version, r.metadata.labels, r.spec) for r in reloaded.resources()] == [
        (r.kind, r.ref, r.api_version, r.metadata.labels, r.spec) for r in original.resources()
    ]
    for proxy in proxy_shapes(original):
        before, after = translate(original, proxy).snapshot, translate(reloaded, proxy).snapshot
        assert [after.version_of(url) for url in PUSH_ORDER] == [before.version_of(url) for url in PUSH_ORDER]


def test_a_rollout_policy_with_checks_keeps_its_percentages_durations_and_metrics() -> None:
    files = _read(FIXTURES / "weighted-80-20.yaml")
    files["policy.yaml"] = policy_yaml(steps="5, 25.5, 50", interval="1m30s", checks=_CHECKS).decode()
    original = _load(files).config

    manifests = config_manifests(original)
    reloaded = _load(manifest_files(manifests)).config

    assert reloaded.rollout_policies[0].spec == original.rollout_policies[0].spec
    spec = next(item["spec"] for item in manifests if item["kind"] == "RolloutPolicy")
    assert spec["interval"] == "1m30s"
    assert spec["checks"] == [
        {"metric": "error-rate", "max": "2.5%", "confidence": "95.0%"},
        {"metric": "latency", "max": "250ms", "percentile": 99.9},
    ]


def test_manifests_load_in_the_order_they_were_served() -> None:
    files = manifest_files([{"n": index} for index in range(12)])

    assert sorted(files) == list(files)
    assert list(files)[:2] == ["served/00.yaml", "served/01.yaml"]
