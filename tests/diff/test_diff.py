"""The pure diff: normalization decides what is equal, and each view reports the same change."""

from __future__ import annotations

from translate_support import FIXTURES, SIDECAR, load, load_fixture

from reconciler.diff import Change, diff_configs, diff_snapshots, format_text, normalize_resource
from reconciler.diff.envoy import ProxyGroup, group_proxies
from reconciler.loader import load_files
from reconciler.translate import translate
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews, reviews.example.com]
  http:
  - match:
    - uri: {prefix: /a}
    - uri: {prefix: /b}
    route:
    - destination: {host: reviews}
    timeout: 1500ms
    retries: {attempts: 2, retryOn: "5xx,reset"}
"""

REWRITTEN = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: default, labels: {team: books}}
spec:
  hosts: [reviews.example.com, reviews.default.svc.cluster.local]
  http:
  - match:
    - uri: {prefix: /b}
      ignoreUriCase: false
    - uri: {prefix: /a}
    route:
    - destination: {host: reviews.default.svc.cluster.local}
      weight: 100
    timeout: 1.5s
    retries: {attempts: 2, retryOn: "reset,5xx"}
"""


def test_reordered_and_respelled_resources_normalize_to_the_same_value() -> None:
    first = next(load(VS).resources())
    second = next(load(REWRITTEN).resources())

    assert normalize_resource(first) == normalize_resource(second)


def test_equal_configs_have_no_changes_and_are_not_translated() -> None:
    diff = diff_configs(load(VS), load(REWRITTEN))

    assert diff.equal
    assert (diff.resources, diff.routes, diff.proxies) == ((), (), ())


def test_the_order_of_http_rules_is_a_change_since_the_first_match_wins() -> None:
    two_rules = VS + "  - route:\n    - destination: {host: reviews}\n"
    swapped = VS.replace("  http:\n", "  http:\n  - route:\n    - destination: {host: reviews}\n")

    diff = diff_configs(load(two_rules), load(swapped))

    assert not diff.equal
    assert {row.route for row in diff.routes} == {"route[0]", "route[1]"}


def test_a_timeout_change_shows_in_every_view_for_every_host() -> None:
    diff = diff_configs(load(VS), load(VS.replace("1500ms", "3s")))

    assert [(change.kind, change.name, change.change) for change in diff.resources] == [
        ("VirtualService", "default/reviews", Change.CHANGED)
    ]
    assert [(row.host, row.route, row.items) for row in diff.routes] == [
        ("reviews.default.svc.cluster.local", "route[0]", ("timeout 1.5s→3s",)),
        ("reviews.example.com", "route[0]", ("timeout 1.5s→3s",)),
    ]
    assert [(proxy.label, proxy.xds_types) for proxy in diff.proxies] == [("sidecar in default", ("RDS",))]
    assert diff.affected == "sidecars: 1 of 1 namespace: RDS only"


def test_snapshots_of_the_same_config_have_no_differences() -> None:
    config = load_fixture("weighted-80-20.yaml")

    assert diff_snapshots(translate(config, SIDECAR).snapshot, translate(config, SIDECAR).snapshot) == ()


def test_translations_already_made_are_used_instead_of_translating_again() -> None:
    old, new = load_files({"mesh.yaml": VS}), load_files({"mesh.yaml": VS.replace("1500ms", "3s")})

    seeded = diff_configs(old.config, new.config, old_translated=old.translations, new_translated=new.translations)
    # Told that the new side translates as the old one did, the diff believes it: the seeds are what it compares.
    stale = diff_configs(old.config, new.config, old_translated=old.translations, new_translated=old.translations)

    assert seeded == diff_configs(old.config, new.config)
    assert [(proxy.label, proxy.xds_types) for proxy in stale.proxies] == [("sidecar in default", ())]


def test_connected_proxies_are_counted_by_shape_and_summarized_per_role() -> None:
    text = (FIXTURES / "weighted-80-20.yaml").read_text(encoding="utf-8")
    old, new = load(text), load(text.replace("weight: 80", "weight: 50").replace("weight: 20", "weight: 50"))
    proxies = [
        *(ProxyIdentity(node_id=f"ratings-{i}", labels={"app": "ratings"}, role=ProxyRole.SIDECAR) for i in range(3)),
        *(ProxyIdentity(node_id=f"other-{i}", namespace="other", role=ProxyRole.SIDECAR) for i in range(4)),
        ProxyIdentity(node_id="plain", role=ProxyRole.SIDECAR),
        ProxyIdentity(node_id="ingress", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY),
    ]

    diff = diff_configs(old, new, connected=group_proxies(proxies))

    shown = {proxy.label: (proxy.connected, proxy.implied, proxy.xds_types) for proxy in diff.proxies}
    assert shown == {
        "sidecar in default": (1, True, ("RDS",)),
        "sidecar in other": (4, False, ("RDS",)),
        "sidecar app=ratings in default": (3, False, ("RDS",)),
        "gateway istio=ingressgateway in default": (1, False, ()),
    }
    assert diff.affected == "sidecars: 1 of 1 namespace: RDS only"
    assert diff.connected == "0 of 1 gateway; 8 of 8 sidecars: RDS only"
    assert "  sidecar in other (4 connected): RDS (same resources as sidecar in default)\n" in format_text(
        diff, title="t"
    )


def test_a_connected_group_read_back_from_json_is_the_same_group_and_junk_is_none() -> None:
    group = group_proxies([ProxyIdentity(node_id="a", labels={"app": "x"}, namespace="shop", outbound_port=15006)] * 2)[
        0
    ]

    read = ProxyGroup.from_json(group.to_json(), index=0)

    assert read is not None
    assert (read.count, read.proxy.labels, read.proxy.namespace, read.proxy.outbound_port, read.proxy.role) == (
        2,
        {"app": "x"},
        "shop",
        15006,
        None,
    )
    for junk in (None, [], {"labels": {}}, {**group.to_json(), "count": 0}, {**group.to_json(), "role": "boss"}):
        assert ProxyGroup.from_json(junk, index=0) is None
