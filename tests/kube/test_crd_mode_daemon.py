"""``reconciler run --sink kubernetes`` as a process: a real git remote, a real kube-apiserver with Istio's CRDs.

A commit is applied, and synced once the API server accepted it: ``reconciler status --wait``
returns then, it is saved as the last good, and a restart serves it again at once. A commit
dropping a subset and the route to it is applied route first (the etcd revisions the objects
carry say in which order the API server took the writes); a ``kubectl edit`` is healed and
reported in ``/api/v1/status`` and ``/metrics``; ``reconciler diff PATH --kubeconfig`` agrees
with the cluster after the heal.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crd_mesh import crd_mesh
from gitrepo import GitRemote
from kube_cluster import KubeCluster

from reconciler.kube.istio import FIELD_MANAGER

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e_daemon"))
from daemon_harness import CLI, Daemon, run_command, wait_for
from memsource import stored_sha
from test_daemon_rollout_restart import logged_since_start

pytestmark = [pytest.mark.git, pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.xdist_group("kube")]

GROUP = "/apis/networking.istio.io/v1"
#: Applies and watch events take milliseconds; this is headroom for a loaded machine.
DEADLINE = 60.0


@pytest.fixture
def daemon_log(tmp_path: Path) -> Iterator[Path]:
    """The daemon's log file, its tail printed after the test (pytest shows it when the test failed)."""
    path = tmp_path / "daemon.log"
    yield path
    if path.exists():
        print(f"--- {path} (tail) ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))


def _object(kube: KubeCluster, namespace: str, plural: str) -> Any:
    return kube.request("GET", f"{GROUP}/namespaces/{namespace}/{plural}/reviews")


def _exists(kube: KubeCluster, namespace: str, plural: str) -> bool:
    try:
        _object(kube, namespace, plural)
    except Exception as error:
        if getattr(error, "code", None) == 404:
            return False
        raise
    return True


def _version(item: Any) -> int:
    return int(item["metadata"]["resourceVersion"])


def _cluster_drift(daemon: Daemon) -> dict[str, Any]:
    [entry] = [d for d in daemon.status()["drift"] if d["source"] == "cluster"]
    return entry


def _drift_gauge(daemon: Daemon, namespace: str) -> dict[str, float]:
    """``reconciler_cluster_drift_detected`` per ``Kind`` of the objects in ``namespace``."""
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("reconciler_cluster_drift_detected{") and f'namespace="{namespace}"' in line:
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            found[kind] = float(line.rsplit(" ", 1)[1])
    return found


def _kubectl_edit(kube: KubeCluster, namespace: str, weights: tuple[int, int]) -> None:
    """What ``kubectl edit`` of the weights sends: a merge patch of ``spec.http`` under its own field manager."""
    spec = _object(kube, namespace, "virtualservices")["spec"]
    for entry, weight in zip(spec["http"][0]["route"], weights, strict=True):
        entry["weight"] = weight
    path = f"{GROUP}/namespaces/{namespace}/virtualservices/reviews?fieldManager=kubectl-edit"
    kube.request("PATCH", path, {"spec": {"http": spec["http"]}})


def _weights(kube: KubeCluster, namespace: str) -> list[Any]:
    return [entry.get("weight") for entry in _object(kube, namespace, "virtualservices")["spec"]["http"][0]["route"]]


def test_a_crd_mode_daemon_applies_commits_in_order_heals_a_kubectl_edit_and_reports_it(
    istio: KubeCluster, namespace: str, tmp_path: Path, daemon_log: Path
) -> None:
    repo = GitRemote.create(tmp_path / "git")
    first = repo.commit({"mesh/reviews.yaml": crd_mesh(namespace).decode()}, "reviews on v1")
    inventory = f"{namespace}/reconciler-inventory"
    daemon = Daemon(
        repo=repo.url,
        state_dir=tmp_path / "state",
        log_path=daemon_log,
        extra_args=[
            "--sink=kubernetes",
            f"--kubeconfig={istio.kubeconfig}",
            f"--inventory={inventory}",
            f"--namespace={namespace}",
        ],
    )
    try:
        daemon.start()
        # `status --wait` returns once the API server accepted the commit: synced, and saved as the last good.
        waited = run_command([*CLI, "status", "--server", daemon.url, "--wait", first, "--timeout", "60s"], timeout=90)
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert f"{first}: served, the API server accepted it" in waited.stdout
        assert _exists(istio, namespace, "virtualservices")
        engine = daemon.status()
        assert (engine["synced"], engine["syncedBy"], engine["served"]["sha"]) == (True, ["apiServer"], first)
        wait_for("the first commit saved as last good", lambda: stored_sha(daemon.state_dir) == first, timeout=DEADLINE)
        # The first commit: created, by our field manager alone, and reported in sync.
        wait_for("the first commit applied", lambda: _cluster_drift(daemon)["state"] == "InSync", timeout=DEADLINE)
        vs = _object(istio, namespace, "virtualservices")
        assert [m["manager"] for m in vs["metadata"]["managedFields"]] == [FIELD_MANAGER]
        assert [s["name"] for s in _object(istio, namespace, "destinationrules")["spec"]["subsets"]] == ["v1", "v2"]
        assert _exists(istio, namespace, "serviceentries")

        # Subset v2 and the route to it go: the VirtualService is written before the DestinationRule.
        before = _version(_object(istio, namespace, "destinationrules"))
        repo.commit({"mesh/reviews.yaml": crd_mesh(namespace, subsets=("v1",), routes=("v1",)).decode()}, "v2 retired")
        daemon.sync()
        wait_for(
            "subset v2 removed",
            lambda: len(_object(istio, namespace, "destinationrules")["spec"]["subsets"]) == 1,
            timeout=DEADLINE,
        )
        vs, dr = _object(istio, namespace, "virtualservices"), _object(istio, namespace, "destinationrules")
        assert [r["destination"]["subset"] for r in vs["spec"]["http"][0]["route"]] == ["v1"]
        assert before < _version(vs) < _version(dr)

        # v2 back with no weight, then a kubectl edit of the weights: healed, reported, and logged.
        head = repo.commit({"mesh/reviews.yaml": crd_mesh(namespace).decode()}, "v2 again, no traffic")
        daemon.sync()
        daemon.wait_status(
            "v2 applied", lambda s: s["served"]["sha"] == head and _cluster_drift(daemon)["state"] == "InSync"
        )
        wait_for("two routes in the cluster", lambda: _weights(istio, namespace) == [100, 0], timeout=DEADLINE)
        _kubectl_edit(istio, namespace, (50, 50))
        wait_for("the kubectl edit healed", lambda: _cluster_drift(daemon)["state"] == "Healed", timeout=DEADLINE)
        assert _weights(istio, namespace) == [100, 0]
        assert _cluster_drift(daemon)["repushedAt"] is not None
        [logged] = logged_since_start(daemon, "kube.drift_healed")
        [overwritten] = logged["overwritten"]
        assert overwritten.startswith(f"VirtualService {namespace}/reviews: ")
        assert overwritten.endswith("changed by kubectl-edit"), overwritten
        assert _drift_gauge(daemon, namespace) == {"DestinationRule": 0.0, "ServiceEntry": 0.0, "VirtualService": 0.0}
        work = repo.work / "mesh"
        diff = [*CLI, "diff", str(work), "--kubeconfig", str(istio.kubeconfig), "--inventory", inventory]
        diff += ["-n", namespace]
        assert run_command(diff, timeout=DEADLINE).returncode == 0

        # The same edit once more: the daemon does not fight a writer that keeps making it; it reports it.
        _kubectl_edit(istio, namespace, (50, 50))
        drifted = daemon.wait_status(
            "the repeated edit reported", lambda _: _cluster_drift(daemon)["state"] == "Drifted", timeout=DEADLINE
        )
        [entry] = [d for d in drifted["drift"] if d["source"] == "cluster"]
        assert "persists after a re-apply" in entry["message"]
        assert [item["name"] for item in entry["items"]] == [f"{namespace}/reviews"]
        assert _drift_gauge(daemon, namespace)["VirtualService"] == 1.0
        assert run_command(diff, timeout=DEADLINE).returncode == 1
        assert stored_sha(daemon.state_dir) == head

        # A restart serves the last good at once, before the first fetch, and is synced by the API server again.
        daemon.stop()
        daemon.start()
        [restored] = logged_since_start(daemon, "engine.restored")
        assert restored["sha"] == head[:12]
        daemon.wait_status("synced after the restart", lambda s: s["synced"] and s["served"]["sha"] == head)
    finally:
        daemon.stop()
