"""LeaderElector and the cluster's rollout state against a real kube-apiserver: acquire, renew, expire, release."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import MappingProxyType
from typing import Any

import pytest
from kube_cluster import KubeCluster

from reconciler.engine.cluster_state import DECISIONS_KEPT, ClusterRolloutStore, configmap_path
from reconciler.engine.state import StoredDecision, StoredRollout
from reconciler.errors import StateError
from reconciler.kube.client import KubeClient
from reconciler.kube.lease import LeaderElector, LeaseTiming, lease_path
from reconciler.model.rolloutpolicy import RolloutPolicySpec, RolloutTarget
from reconciler.model.virtualservice import Destination
from reconciler.rollout.decide import start
from reconciler.rollout.plan import RouteRef

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120), pytest.mark.xdist_group("kube")]

#: Short, so expiry is seen within a test; the ordering client-go needs (retry < renew < duration).
QUICK = LeaseTiming(lease_duration=2.0, renew_deadline=1.5, retry_period=0.2)
#: Long: a test that sees a takeover within DEADLINE cannot have waited for expiry.
SLOW = LeaseTiming(lease_duration=60.0, renew_deadline=40.0, retry_period=0.2)
#: Headroom for a loaded machine; never a measured bound.
DEADLINE = 30.0


def run(kube: KubeCluster, body: Callable[[KubeClient], Awaitable[None]]) -> None:
    async def main() -> None:
        client = await KubeClient.connect(kube.kubeconfig)
        try:
            await asyncio.wait_for(body(client), DEADLINE * 2)
        finally:
            await client.close()

    asyncio.run(main())


def elector(client: KubeClient, namespace: str, identity: str, timing: LeaseTiming = QUICK) -> LeaderElector:
    return LeaderElector(api=client, namespace=namespace, name="reconciler", identity=identity, timing=timing)


def lease_spec(kube: KubeCluster, namespace: str) -> dict[str, Any]:
    spec: dict[str, Any] = kube.request("GET", lease_path(namespace, "reconciler"))["spec"]
    return spec


def test_the_first_candidate_creates_the_lease_and_leads_while_another_candidate_is_refused(
    kube: KubeCluster, namespace: str
) -> None:
    async def body(client: KubeClient) -> None:
        first, second = elector(client, namespace, "a"), elector(client, namespace, "b")
        await first.acquire()
        assert await second._attempt(timeout=DEADLINE) is False
        assert (first.is_leader, second.is_leader, second.holder) == (True, False, "a")

    run(kube, body)
    spec = lease_spec(kube, namespace)
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"], spec["leaseTransitions"]) == ("a", 2, 0)


def test_a_follower_takes_a_lease_that_is_no_longer_renewed_only_after_the_lease_duration(
    kube: KubeCluster, namespace: str
) -> None:
    seen: dict[str, Any] = {}

    async def body(client: KubeClient) -> None:
        await elector(client, namespace, "a").acquire()  # and never renews: a leader killed with -9
        seen["before"] = lease_spec(kube, namespace)
        await elector(client, namespace, "b").acquire()

    run(kube, body)
    after = lease_spec(kube, namespace)
    renewed_by_a = datetime.fromisoformat(seen["before"]["renewTime"])
    taken_by_b = datetime.fromisoformat(after["acquireTime"])
    # b counts the duration from when it first saw a's record, which is after a wrote it.
    assert (taken_by_b - renewed_by_a).total_seconds() >= QUICK.lease_duration
    assert (after["holderIdentity"], after["leaseTransitions"]) == ("b", 1)


def test_a_leader_renews_the_lease_so_a_follower_never_takes_it(kube: KubeCluster, namespace: str) -> None:
    async def body(client: KubeClient) -> None:
        leader, follower = elector(client, namespace, "a"), elector(client, namespace, "b")
        await leader.acquire()
        holding = asyncio.ensure_future(leader.hold())
        try:
            # Three lease durations of trying: each attempt sees a fresh renewTime, so it never expires.
            for _ in range(int(3 * QUICK.lease_duration / QUICK.retry_period)):
                assert await follower._attempt(timeout=DEADLINE) is False
                await asyncio.sleep(QUICK.retry_period)
            assert leader.is_leader
            assert not holding.done()
        finally:
            holding.cancel()
            await asyncio.gather(holding, return_exceptions=True)

    run(kube, body)
    spec = lease_spec(kube, namespace)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("a", 0)
    assert spec["renewTime"] > spec["acquireTime"]


def test_a_released_lease_is_taken_by_the_next_candidate_at_once_not_after_the_duration(
    kube: KubeCluster, namespace: str
) -> None:
    async def body(client: KubeClient) -> None:
        leader, follower = elector(client, namespace, "a", SLOW), elector(client, namespace, "b", SLOW)
        await leader.acquire()
        waiting = asyncio.ensure_future(follower.acquire())
        await asyncio.sleep(3 * SLOW.retry_period)
        assert not waiting.done()  # held: the follower waits
        assert await leader.release() is True
        await asyncio.wait_for(waiting, DEADLINE)  # well under SLOW's 60 s: the release, not expiry
        assert (leader.is_leader, follower.is_leader) == (False, True)

    run(kube, body)
    assert lease_spec(kube, namespace)["holderIdentity"] == "b"


def test_a_leader_whose_lease_was_taken_by_another_holder_steps_down(kube: KubeCluster, namespace: str) -> None:
    async def body(client: KubeClient) -> None:
        leader = elector(client, namespace, "a", SLOW)
        await leader.acquire()
        holding = asyncio.ensure_future(leader.hold())
        lease = kube.request("GET", lease_path(namespace, "reconciler"))
        lease["spec"]["holderIdentity"] = "intruder"
        kube.request("PUT", lease_path(namespace, "reconciler"), lease)
        await asyncio.wait_for(holding, DEADLINE)  # hold() returns: leadership lost
        assert leader.is_leader is False
        assert await leader.release() is False  # not its Lease to release

    run(kube, body)
    assert lease_spec(kube, namespace)["holderIdentity"] == "intruder"


def test_of_candidates_racing_for_one_lease_exactly_one_wins_each_round(kube: KubeCluster, namespace: str) -> None:
    async def body(client: KubeClient) -> None:
        candidates = [elector(client, namespace, name) for name in "abcd"]
        created = await asyncio.gather(*(c._attempt(timeout=DEADLINE) for c in candidates))
        assert sum(created) == 1  # one create succeeds; the others get 409
        # Expired for everyone at once: the writes carry one resourceVersion, so one update wins.
        lease = kube.request("GET", lease_path(namespace, "reconciler"))
        lease["spec"]["holderIdentity"] = "gone"
        kube.request("PUT", lease_path(namespace, "reconciler"), lease)
        for candidate in candidates:
            await candidate._attempt(timeout=DEADLINE)  # observe "gone" (refused: just changed)
        await asyncio.sleep(QUICK.lease_duration)
        taken = await asyncio.gather(*(c._attempt(timeout=DEADLINE) for c in candidates))
        assert sum(taken) == 1

    run(kube, body)
    assert lease_spec(kube, namespace)["leaseTransitions"] == 1


# -- the rollout state every replica reads ----------------------------------------------------------

POLICY = RolloutPolicySpec(targets=(RolloutTarget(name="reviews"),))
ROUTE = RouteRef("default/reviews", 0)
V1, V2 = Destination("reviews", "v1"), Destination("reviews", "v2")


def rollout(key: str, *, step_time: float = 100.0) -> tuple[StoredRollout, StoredDecision]:
    before = MappingProxyType({ROUTE: MappingProxyType({V1: 100, V2: 0})})
    goal = MappingProxyType({ROUTE: MappingProxyType({V1: 0, V2: 100})})
    decision = start(before, goal, sha="c0ffee", policy=POLICY, now=step_time)
    stored = StoredRollout(
        key=key,
        policy="default/reviews",
        sha="c0ffee",
        config_tree="tree",
        state=decision.state,
        weights=decision.weights,
    )
    return stored, StoredDecision(decision.record, generation=3, acked_at=None)


def cluster_store(client: KubeClient, namespace: str, *, leading: Callable[[], bool]) -> ClusterRolloutStore:
    return ClusterRolloutStore(
        api=client,
        namespace=namespace,
        name="reconciler-rollouts",
        loop=asyncio.get_running_loop(),
        leading=leading,
        timeout=DEADLINE,
    )


async def in_thread(call: Callable[[], None]) -> None:
    """Run ``call`` off the loop, as the rollout controller's writer thread does."""
    done = asyncio.get_running_loop().create_future()

    def target() -> None:
        try:
            call()
        except BaseException as error:  # handed to the test
            done.get_loop().call_soon_threadsafe(done.set_exception, error)
        else:
            done.get_loop().call_soon_threadsafe(done.set_result, None)

    threading.Thread(target=target).start()
    await done


def test_rollouts_saved_by_one_replica_are_read_by_another_with_their_decisions(
    kube: KubeCluster, namespace: str
) -> None:
    async def body(client: KubeClient) -> None:
        writer = cluster_store(client, namespace, leading=lambda: True)
        await writer.load()
        stored, decision = rollout("r1")
        await in_thread(lambda: writer.save_rollout(stored, decision=decision))
        for _ in range(DECISIONS_KEPT + 5):  # updates of an existing ConfigMap, each with its resourceVersion
            await in_thread(lambda: writer.save_rollout(stored, decision=decision))
        reader = cluster_store(client, namespace, leading=lambda: False)
        await reader.load()
        assert reader.load_rollouts() == (stored,)
        assert reader.load_decisions("r1", last=100) == (decision,) * DECISIONS_KEPT

    run(kube, body)
    assert "rollouts.json" in kube.request("GET", configmap_path(namespace, "reconciler-rollouts"))["data"]


def test_a_replica_that_does_not_lead_refuses_to_write_the_rollout_state(kube: KubeCluster, namespace: str) -> None:
    async def body(client: KubeClient) -> None:
        store = cluster_store(client, namespace, leading=lambda: False)
        await store.load()
        stored, _ = rollout("r1")
        with pytest.raises(StateError, match="not the leader"):
            await in_thread(lambda: store.save_rollout(stored))

    run(kube, body)
    with pytest.raises(Exception, match="404"):
        kube.request("GET", configmap_path(namespace, "reconciler-rollouts"))
