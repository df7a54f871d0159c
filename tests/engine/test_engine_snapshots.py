"""ConfigSnapshots: translations are shared by proxy shape and never block readers."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from memsource import GATEWAY, mesh_files

from reconciler.engine import snapshots as snapshots_module
from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.loader import load_files
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.translate.snapshot import CLUSTER, ROUTE
from reconciler.translate.translator import proxy_shape
from reconciler.xds.cache import SnapshotCache

pytestmark = pytest.mark.timeout(20)


def _config() -> Any:
    return load_files({f"mesh/{name}": text for name, text in mesh_files().items()}).config


def test_reading_warnings_does_not_wait_for_a_translation_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    release, started = threading.Event(), threading.Event()
    real_translate = snapshots_module.translate

    def slow_translate(*args: Any, **kwargs: Any) -> Any:
        started.set()
        release.wait(timeout=10)
        return real_translate(*args, **kwargs)

    monkeypatch.setattr(snapshots_module, "translate", slow_translate)
    snapshots = ConfigSnapshots(config=_config())
    worker = threading.Thread(target=snapshots.snapshot_for, args=(GATEWAY,))
    worker.start()
    assert started.wait(timeout=5)

    answers: list[Any] = []
    reader = threading.Thread(target=lambda: answers.append((snapshots.warnings(), snapshots.untranslated([GATEWAY]))))
    reader.start()
    reader.join(timeout=5)  # the translation stays blocked until released below: only a free reader gets through

    assert not reader.is_alive()
    assert answers == [((), [GATEWAY])]

    release.set()
    worker.join(timeout=10)
    assert snapshots.untranslated([GATEWAY]) == []


def test_proxies_of_the_same_shape_share_one_snapshot() -> None:
    snapshots = ConfigSnapshots(config=_config())
    twin = ProxyIdentity(node_id="ingress-2", labels=GATEWAY.labels, role=GATEWAY.role)

    assert snapshots.snapshot_for(twin) is snapshots.snapshot_for(GATEWAY)


def test_only_the_most_recently_used_shapes_are_remembered() -> None:
    snapshots = ConfigSnapshots(config=_config(), max_shapes=2)
    # A label that changes with every rollout makes a new shape each time.
    rollouts = [
        ProxyIdentity(node_id=f"reviews-{n}", labels={"app": "reviews", "pod-template-hash": f"h{n}"}) for n in range(4)
    ]
    first = snapshots.snapshot_for(rollouts[0])
    snapshots.snapshot_for(rollouts[1])
    assert snapshots.snapshot_for(rollouts[0]) is first  # used again: now the most recent

    snapshots.snapshot_for(rollouts[2])  # evicts rollouts[1], the least recently used
    snapshots.snapshot_for(rollouts[3])  # evicts rollouts[0]

    assert snapshots.untranslated(rollouts) == rollouts[:2]
    again = snapshots.snapshot_for(rollouts[0])
    assert again == first  # translated anew, same content


def test_a_shape_validation_translated_is_served_from_that_translation() -> None:
    loaded = load_files({f"mesh/{name}": text for name, text in mesh_files().items()})
    snapshots = ConfigSnapshots(config=loaded.config, seeds=loaded.translations)
    seeded = loaded.translations[proxy_shape(loaded.config, GATEWAY)]

    assert snapshots.untranslated([GATEWAY]) == []
    assert snapshots.snapshot_for(GATEWAY) is seeded.snapshot


def test_a_sidecar_that_states_no_role_has_the_shape_of_one_that_does() -> None:
    snapshots = ConfigSnapshots(config=_config())
    stated = ProxyIdentity(node_id="sidecar-1", role=ProxyRole.SIDECAR)
    unstated = ProxyIdentity(node_id="sidecar-2")

    assert snapshots.snapshot_for(unstated) is snapshots.snapshot_for(stated)


def test_a_published_revision_holds_one_copy_of_each_set_unchanged_since_the_last() -> None:
    cache = SnapshotCache()
    cache.connect(GATEWAY, on_change=lambda: None)
    first = ConfigSnapshots(config=_config())
    cache.publish(first)
    second = ConfigSnapshots(config=load_files({f"mesh/{n}": t for n, t in mesh_files(v1=50, v2=50).items()}).config)
    second.translate_all([GATEWAY])  # as the engine does, off the loop: its memo has its own copy of every set
    cache.publish(second)

    served = cache.served(GATEWAY.node_id)
    assert served is not None
    assert served[1] is not None
    kept = second.snapshot_for(GATEWAY)
    assert kept is served[1]  # the memo holds the snapshot the proxy is served, not a twin
    before = first.snapshot_for(GATEWAY)
    assert kept.sets[CLUSTER] is before.sets[CLUSTER]  # unchanged by a weight change: one object for both
    assert kept.sets[ROUTE] is not before.sets[ROUTE]
