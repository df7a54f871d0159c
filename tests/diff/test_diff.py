"""The pure diff: normalization decides what is equal, and each view reports the same change."""

from __future__ import annotations

from translate_support import SIDECAR, load, load_fixture

from reconciler.diff import Change, diff_configs, diff_snapshots, normalize_resource
from reconciler.loader import load_files
from reconciler.translate import translate

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
