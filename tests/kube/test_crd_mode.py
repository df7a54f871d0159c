"""CRD mode against a real kube-apiserver with Istio's CRDs: apply as written, prune in order, heal drift, rollouts.

The order of writes is read from the server, not from the client: every write gets the next
etcd revision as its resourceVersion, and a watch of each kind started before a change reports
each write (a deletion with the revision it happened at), so sorting the events by version is
the order the API server applied them in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from crd_mesh import crd_mesh
from kube_cluster import KubeCluster
from memsource import GATEWAY, MemorySource, ack_all, mesh_files
from rollout_yaml import policy_yaml
from waiting import wait_for_async

from reconciler.cli.main import main
from reconciler.engine.kube_sink import KubernetesSink
from reconciler.engine.reconcile import Engine
from reconciler.engine.rollouts import RolloutController
from reconciler.engine.state import SqliteStateStore
from reconciler.engine.status import EngineStatus
from reconciler.kube.apply import IstioApplier
from reconciler.kube.client import KubeClient
from reconciler.kube.istio import FIELD_MANAGER, ObjectRef, desired_objects
from reconciler.loader import load_files
from reconciler.metrics.store import MetricsStore
from reconciler.model.config import Kind
from reconciler.sources.backoff import Backoff
from reconciler.xds.cache import SnapshotCache

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180), pytest.mark.xdist_group("kube")]

#: Writes and watch events take milliseconds; this is headroom for a loaded machine.
DEADLINE = 60.0
GROUP = "/apis/networking.istio.io/v1"
PLURAL = {"VirtualService": "virtualservices", "DestinationRule": "destinationrules", "ServiceEntry": "serviceentries"}


def _desired(files: dict[str, bytes], namespace: str) -> Callable[[], Any]:
    result = load_files(files, default_namespace=namespace)
    assert result.ok, [f.format() for f in result.findings]
    return lambda: desired_objects(result.config, files, default_namespace=namespace)


async def _until(check: Callable[[], Any], what: str) -> Any:
    return await wait_for_async(what, check, timeout=DEADLINE)


class _Running:
    def __init__(self, applier: IstioApplier, client: KubeClient) -> None:
        self.applier = applier
        self.client = client


@contextlib.asynccontextmanager
async def _applier(kube: KubeCluster, namespace: str, *, self_heal: bool = True) -> AsyncIterator[_Running]:
    client = await KubeClient.connect(kube.kubeconfig)
    applier = IstioApplier(
        api=client,
        inventory=(namespace, "reconciler-inventory"),
        backoff=lambda: Backoff(base=0.05, cap=0.5),
        clock=lambda: datetime.now(UTC),
        self_heal=self_heal,
        debounce=0.02,
    )
    task = asyncio.ensure_future(applier.run())
    try:
        yield _Running(applier, client)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


def _get(kube: KubeCluster, kind: str, namespace: str, name: str = "reviews") -> Any:
    try:
        return kube.request("GET", f"{GROUP}/namespaces/{namespace}/{PLURAL[kind]}/{name}")
    except Exception as error:
        if getattr(error, "code", None) == 404:
            return None
        raise


async def _watch_writes(client: KubeClient, namespace: str, version: str, into: list[tuple[int, str, str]]) -> None:
    """Every write to the three kinds in ``namespace`` after ``version``: (resourceVersion, event, kind)."""

    async def one(kind: str) -> None:
        async for event in client.watch(f"{GROUP}/namespaces/{namespace}/{PLURAL[kind]}", resource_version=version):
            into.append((int(event["object"]["metadata"]["resourceVersion"]), str(event["type"]), kind))

    await asyncio.gather(*(one(kind) for kind in PLURAL))


def test_crd_mode_applies_gits_yaml_and_prunes_in_reverse_order(istio: KubeCluster, namespace: str, run: Any) -> None:
    async def scenario() -> None:
        async with _applier(istio, namespace) as running:
            files = {"mesh.yaml": crd_mesh(namespace)}
            version = istio.request("GET", f"/api/v1/namespaces/{namespace}/configmaps")["metadata"]["resourceVersion"]
            writes: list[tuple[int, str, str]] = []
            watching = asyncio.ensure_future(_watch_writes(running.client, namespace, version, writes))
            running.applier.submit(_desired(files, namespace), label="revision one", generation=1)
            await _until(lambda: running.applier.report().state == "InSync", "applied and in sync")

            vs = _get(istio, "VirtualService", namespace)
            assert vs["apiVersion"] == "networking.istio.io/v1"  # stored as v1, applied as the v1beta1 git has
            assert vs["spec"]["http"][0]["route"][1] == {
                "destination": {"host": "reviews.example.com", "subset": "v2"},
                "weight": 0,
            }
            assert vs["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "reconciler"}
            assert [(m["manager"], m["operation"]) for m in vs["metadata"]["managedFields"]] == [
                (FIELD_MANAGER, "Apply")
            ]
            await _until(lambda: len(writes) >= 3, "three creations watched")
            assert [(event, kind) for _, event, kind in sorted(writes)] == [
                ("ADDED", "ServiceEntry"),
                ("ADDED", "DestinationRule"),
                ("ADDED", "VirtualService"),
            ]
            inventory = istio.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/reconciler-inventory")
            assert '"kind":"VirtualService"' in inventory["data"]["inventory.json"]

            # Git drops subset v2 and the route to it: the route goes first, the subset after it.
            writes.clear()
            files = {"mesh.yaml": crd_mesh(namespace, subsets=("v1",), routes=("v1",))}
            running.applier.submit(_desired(files, namespace), label="revision two", generation=2)
            await _until(
                lambda: len(_get(istio, "DestinationRule", namespace)["spec"]["subsets"]) == 1, "subset v2 removed"
            )
            await _until(lambda: len(writes) >= 2, "two changes watched")
            assert [(event, kind) for _, event, kind in sorted(writes)] == [
                ("MODIFIED", "VirtualService"),
                ("MODIFIED", "DestinationRule"),
            ]

            # Git removes the VirtualService and the DestinationRule: the VirtualService goes first.
            writes.clear()
            only_se = crd_mesh(namespace).split(b"---\n")[2]
            running.applier.submit(_desired({"mesh.yaml": only_se}, namespace), label="revision three", generation=3)
            await _until(lambda: _get(istio, "VirtualService", namespace) is None, "the VirtualService pruned")
            await _until(lambda: len(writes) >= 2, "two deletions watched")
            assert [(event, kind) for _, event, kind in sorted(writes)] == [
                ("DELETED", "VirtualService"),
                ("DELETED", "DestinationRule"),
            ]
            assert _get(istio, "ServiceEntry", namespace) is not None
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    run(scenario())


def _kubectl_edit(kube: KubeCluster, namespace: str, patch: dict[str, Any]) -> None:
    """What ``kubectl edit`` sends: a merge patch under its own field manager."""
    kube.request("PATCH", f"{GROUP}/namespaces/{namespace}/virtualservices/reviews?fieldManager=kubectl-edit", patch)


def _weights(kube: KubeCluster, namespace: str, *, rule: int = 0) -> list[Any]:
    return [entry.get("weight") for entry in _get(kube, "VirtualService", namespace)["spec"]["http"][rule]["route"]]


def test_a_kubectl_edit_is_drift_healed_by_reapplying_git_and_reported(
    istio: KubeCluster, namespace: str, run: Any
) -> None:
    async def scenario() -> None:
        async with _applier(istio, namespace) as running:
            files = {"mesh.yaml": crd_mesh(namespace)}
            running.applier.submit(_desired(files, namespace), label="revision one", generation=1)
            await _until(lambda: running.applier.report().state == "InSync", "in sync")
            spec = _get(istio, "VirtualService", namespace)["spec"]
            spec["http"][0]["route"][0]["weight"] = 50
            spec["http"][0]["route"][1]["weight"] = 50
            _kubectl_edit(istio, namespace, {"spec": {"http": spec["http"], "exportTo": ["."]}})

            report = await _until(
                lambda: (r := running.applier.report()).state == "Healed" and r, "healed after the edit"
            )
            assert _weights(istio, namespace) == [100, 0]
            assert "exportTo" not in _get(istio, "VirtualService", namespace)["spec"]
            assert ("patch", f"VirtualService {namespace}/reviews") in running.applier.writes
            assert report.healed_at is not None
            assert running.applier.drifted() == dict.fromkeys(
                [ObjectRef(Kind.DESTINATION_RULE, namespace, "reviews"), *_refs(namespace)], False
            )

    run(scenario())


def _refs(namespace: str) -> list[ObjectRef]:
    return [ObjectRef(Kind.SERVICE_ENTRY, namespace, "reviews"), ObjectRef(Kind.VIRTUAL_SERVICE, namespace, "reviews")]


def test_without_self_heal_a_kubectl_edit_stays_and_is_reported_field_by_field(
    istio: KubeCluster, namespace: str, run: Any
) -> None:
    async def scenario() -> None:
        async with _applier(istio, namespace, self_heal=False) as running:
            running.applier.submit(
                _desired({"mesh.yaml": crd_mesh(namespace)}, namespace), label="revision one", generation=1
            )
            await _until(lambda: running.applier.report().state == "InSync", "in sync")
            spec = _get(istio, "VirtualService", namespace)["spec"]
            spec["http"][0]["route"][0]["weight"] = 40
            _kubectl_edit(istio, namespace, {"spec": {"http": spec["http"]}})

            report = await _until(lambda: (r := running.applier.report()).state == "Drifted" and r, "drift reported")
            [item] = report.drift
            assert item.ref == ObjectRef(Kind.VIRTUAL_SERVICE, namespace, "reviews")
            assert item.managers == ("kubectl-edit",)
            assert [(f.field_path, f.old, f.new) for f in item.fields] == [
                ('spec.http[0].route["reviews.example.com/v1"].weight', 100, 40)
            ]
            assert running.applier.drifted()[item.ref] is True
            assert _weights(istio, namespace) == [40, 0]

    run(scenario())


def _crd_engine(
    source: MemorySource,
    cache: SnapshotCache,
    applier: IstioApplier,
    *,
    namespace: str,
    state: Path,
    proxies_acknowledge: bool = True,
) -> tuple[Engine, KubernetesSink]:
    """An engine serving ``source``'s ``mesh/`` to ``cache`` and, through the kubernetes sink, to ``applier``."""
    engine = Engine(
        source=source,
        cache=cache,
        store=SqliteStateStore(state),
        status=EngineStatus(repo="mem://mesh", branch="main", path="mesh"),
        clock=lambda: datetime.now(UTC),
        default_namespace=namespace,
        file_prefix="mesh/",
        proxies_acknowledge=proxies_acknowledge,
    )
    sink = KubernetesSink(applier, default_namespace=namespace)
    engine.add_sink(sink)
    return engine, sink


def test_a_rollout_writes_its_step_weights_through_the_same_field_manager(
    istio: KubeCluster, namespace: str, run: Any, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with _applier(istio, namespace) as running:
            source, cache = MemorySource(), SnapshotCache()
            gateway = cache.connect(GATEWAY, on_change=lambda: None)
            engine, _ = _crd_engine(source, cache, running.applier, namespace=namespace, state=tmp_path / "state")
            controller = RolloutController(engine=engine, cache=cache, metrics=MetricsStore(), clock=time.time)
            policy = policy_yaml(steps="10, 50", interval="10m")
            source.commit({**mesh_files(v1=100, v2=0), "policy.yaml": policy}, "reviews 100/0")
            assert (await engine.reconcile(trigger="test")).ok
            ack_all(gateway)
            await _until(lambda: _get(istio, "VirtualService", namespace) is not None, "git's weights applied")
            assert _weights(istio, namespace, rule=1) == [100, 0]

            source.commit({**mesh_files(v1=0, v2=100), "policy.yaml": policy}, "reviews 0/100")
            assert (await engine.reconcile(trigger="test")).ok
            ack_all(gateway)
            [walking] = controller.documents()
            assert (walking.phase, walking.step) == ("Progressing", 0)
            await _until(lambda: _weights(istio, namespace, rule=1) == [90, 10], "the first step's weights applied")
            vs = _get(istio, "VirtualService", namespace)
            assert {m["manager"] for m in vs["metadata"]["managedFields"]} == {FIELD_MANAGER}
            assert running.applier.report().state in ("InSync", "Pending")
            ack_all(gateway)
            opened = "the API server accepted and every proxy ACKed step 0: the analysis window opens"

            def window_opened() -> bool:
                # The applier records the API server's acceptance after the write etcd already shows.
                controller.tick()
                return opened in [record.record.reason for record in controller.records(walking.policy)]

            await _until(window_opened, "the analysis window opened once both acknowledged step 0")

    run(scenario())


def test_under_the_kubernetes_sink_alone_a_commit_is_synced_and_saved_once_the_api_server_accepted_it(
    istio: KubeCluster, namespace: str, run: Any, tmp_path: Path
) -> None:
    """Refused writes keep it unsynced and unsaved; accepted, it is the last good a restart serves again."""
    later = f"{namespace}-later"  # the objects' namespace does not exist yet: every write to it is a 404
    state = tmp_path / "state"

    async def scenario() -> None:
        async with _applier(istio, later) as running:
            source = MemorySource()
            engine, _ = _crd_engine(
                source, SnapshotCache(), running.applier, namespace=later, state=state, proxies_acknowledge=False
            )
            head = source.commit(mesh_files(v1=100, v2=0), "reviews on v1").sha
            assert (await engine.reconcile(trigger="test")).ok
            await _until(lambda: running.applier.report().state == "Failed", "the refused writes reported")
            assert not engine.status.synced
            assert engine.status.document().synced_by == ("apiServer",)
            assert SqliteStateStore(state).load_last_good() is None
            istio.create("/api/v1/namespaces", {"metadata": {"name": later}})
            try:
                await _until(lambda: engine.status.synced, "synced once the API server accepted it")
                assert _get(istio, "VirtualService", later) is not None
                stored = await _until(lambda: SqliteStateStore(state).load_last_good(), "saved as the last good")
                assert stored.revision.sha == head

                restarted, _ = _crd_engine(
                    MemorySource(), SnapshotCache(), running.applier, namespace=later, state=state,
                    proxies_acknowledge=False,
                )  # fmt: skip
                assert restarted.restore()
                assert restarted.status.served is not None
                assert restarted.status.served.sha == head
                await _until(lambda: restarted.status.synced, "the restored commit synced by the API server again")
            finally:
                istio.delete(f"/api/v1/namespaces/{later}")

    run(scenario())


def test_with_both_sinks_a_commit_is_synced_once_every_proxy_acked_it_and_the_api_server_accepted_it(
    istio: KubeCluster, namespace: str, run: Any, tmp_path: Path
) -> None:
    later = f"{namespace}-later"

    async def scenario() -> None:
        async with _applier(istio, later) as running:
            source, cache = MemorySource(), SnapshotCache()
            gateway = cache.connect(GATEWAY, on_change=lambda: None)
            engine, _ = _crd_engine(source, cache, running.applier, namespace=later, state=tmp_path / "state")
            head = source.commit(mesh_files(v1=100, v2=0), "reviews on v1").sha
            assert (await engine.reconcile(trigger="test")).ok
            ack_all(gateway)
            await _until(lambda: running.applier.report().state == "Failed", "the refused writes reported")
            assert cache.all_acked(engine.status.generation)
            assert not engine.status.synced  # every proxy ACKed it, the API server did not accept it
            assert engine.status.document().synced_by == ("apiServer", "proxies")
            istio.create("/api/v1/namespaces", {"metadata": {"name": later}})
            try:
                await _until(lambda: engine.status.synced, "synced once the API server accepted it too")
                stored = await _until(
                    lambda: SqliteStateStore(tmp_path / "state").load_last_good(), "saved as the last good"
                )
                assert stored.revision.sha == head
            finally:
                istio.delete(f"/api/v1/namespaces/{later}")

    run(scenario())


def test_reconciler_diff_kubeconfig_shows_a_kubectl_edit_as_the_difference_from_git(
    istio: KubeCluster, namespace: str, run: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh = tmp_path / "mesh"
    mesh.mkdir()
    (mesh / "mesh.yaml").write_bytes(crd_mesh(namespace))

    async def applied() -> None:
        async with _applier(istio, namespace, self_heal=False) as running:
            running.applier.submit(
                _desired({"mesh.yaml": crd_mesh(namespace)}, namespace), label="revision one", generation=1
            )
            await _until(lambda: running.applier.report().state == "InSync", "in sync")

    run(applied())
    inventory = f"{namespace}/reconciler-inventory"
    argv = ["diff", str(mesh), "--kubeconfig", str(istio.kubeconfig), "--inventory", inventory, "-n", namespace]
    argv += ["-o", "json"]
    capsys.readouterr()
    assert main(argv) == 0
    spec = _get(istio, "VirtualService", namespace)["spec"]
    spec["http"][0]["route"][0]["weight"] = 70
    _kubectl_edit(istio, namespace, {"spec": {"http": spec["http"]}})
    capsys.readouterr()
    assert main(argv) == 1
    found = json.loads(capsys.readouterr().out)
    [change] = [c for c in found["resources"] if c["name"].endswith(f"{namespace}/reviews")]
    assert [(f["path"], f["old"], f["new"]) for f in change["fields"]] == [
        ('spec.http[0].route["reviews.example.com/v1"].weight', 70, 100)
    ]


def test_a_refused_write_is_reported_failed_and_retried_until_it_succeeds(
    istio: KubeCluster, namespace: str, run: Any
) -> None:
    later = f"{namespace}-later"  # the objects' namespace does not exist yet: every write to it is a 404

    async def scenario() -> None:
        async with _applier(istio, namespace) as running:
            running.applier.submit(_desired({"mesh.yaml": crd_mesh(later)}, later), label="revision one", generation=1)
            failed = await _until(lambda: (r := running.applier.report()).state == "Failed" and r, "reported failed")
            assert "404" in failed.message
            assert _get(istio, "VirtualService", later) is None  # nothing after the failed ServiceEntry
            assert running.applier.applied_generation == 0  # a rollout step applied so is not acknowledged
            istio.create("/api/v1/namespaces", {"metadata": {"name": later}})
            try:
                await _until(lambda: running.applier.report().state == "InSync", "applied once it can be")
                assert _get(istio, "VirtualService", later) is not None
                assert running.applier.applied_generation == 1
            finally:
                istio.delete(f"/api/v1/namespaces/{later}")

    run(scenario())


def test_a_rollout_under_the_kubernetes_sink_alone_walks_its_steps_on_the_api_servers_acknowledgement(
    istio: KubeCluster, namespace: str, run: Any, tmp_path: Path
) -> None:
    """No proxy is connected: each step is acknowledged by its accepted apply, and low traffic promotes it."""

    async def scenario() -> None:
        async with _applier(istio, namespace) as running:
            source, cache = MemorySource(), SnapshotCache()
            engine, sink = _crd_engine(source, cache, running.applier, namespace=namespace, state=tmp_path / "state")
            controller = RolloutController(
                engine=engine, cache=cache, metrics=MetricsStore(), clock=time.time, acks=[sink]
            )
            policy = policy_yaml(steps="10, 50", interval="1s", max_interval="2s", on_low_traffic="promote")
            source.commit({**mesh_files(v1=100, v2=0), "policy.yaml": policy}, "reviews 100/0")
            assert (await engine.reconcile(trigger="test")).ok
            await _until(lambda: running.applier.applied_generation > 0, "git's weights applied")
            version = _get(istio, "VirtualService", namespace)["metadata"]["resourceVersion"]
            seen: list[tuple[list[Any], set[str]]] = []

            async def watch() -> None:
                path = f"{GROUP}/namespaces/{namespace}/virtualservices"
                async for event in running.client.watch(path, resource_version=version):
                    vs = event["object"]
                    weights = [entry.get("weight") for entry in vs["spec"]["http"][1]["route"]]
                    seen.append((weights, {m["manager"] for m in vs["metadata"]["managedFields"]}))

            watching = asyncio.ensure_future(watch())
            ticking = asyncio.ensure_future(controller.run(period=0.1))
            try:
                source.commit({**mesh_files(v1=0, v2=100), "policy.yaml": policy}, "reviews 0/100")
                assert (await engine.reconcile(trigger="test")).ok
                done = await _until(
                    lambda: [d for d in controller.documents() if d.phase == "Succeeded"], "the rollout succeeded"
                )
                await _until(lambda: seen and seen[-1][0] == [0, 100], "git's weights watched")
            finally:
                for task in (ticking, watching):
                    task.cancel()
                await asyncio.gather(ticking, watching, return_exceptions=True)
            assert [weights for weights, _ in seen] == [[90, 10], [50, 50], [0, 100]]
            assert all(managers == {FIELD_MANAGER} for _, managers in seen)
            assert cache.proxies() == ()
            reasons = [record.record.reason for record in controller.records(done[0].policy)]
            assert sum("promoting as the policy says" in reason for reason in reasons) == 2, reasons
            assert "the API server accepted step 0: the analysis window opens" in reasons, reasons
            assert reasons[-1] == "the API server accepted git's weights"
            assert not [reason for reason in reasons if "prox" in reason], reasons

    run(scenario())
