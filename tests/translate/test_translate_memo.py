"""A TranslationCache changes how much work a translation does, never what it produces.

Random meshes (each service in its own file, as a repository holds them) are translated for
several proxies through one cache, then again after random one-host edits; every result
must equal a translation without a cache: the same resources, versions and findings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from translate_support import FIXTURES, GATEWAY, SIDECAR, load

from reconciler.errors import TranslationError
from reconciler.loader import DecodeCache, load_files
from reconciler.model.config import MeshConfig
from reconciler.translate import ProxyIdentity, ProxyRole, Translation, translate
from reconciler.translate.envoy_check import PassCache
from reconciler.translate.memo import PATCH_BUDGET, TranslationCache, changed_items
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, ROUTE
from reconciler.validate.findings import Severity

NAMESPACES = ("alpha", "beta")
PROXIES = (
    ProxyIdentity(node_id="a", namespace="alpha", role=ProxyRole.SIDECAR),
    ProxyIdentity(node_id="a2", namespace="alpha", role=ProxyRole.SIDECAR, outbound_port=15002),
    ProxyIdentity(node_id="b", namespace="beta", role=ProxyRole.SIDECAR, labels={"app": "canary"}),
    ProxyIdentity(node_id="g", namespace="alpha", labels={"istio": "ingressgateway"}),
)
_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: alpha}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*/*"]
"""
_PORTS = {"http": "{number: 80, name: http, protocol: HTTP}", "grpc": "{number: 9080, name: grpc, protocol: GRPC}"}
_PORTS["tcp"] = "{number: 3306, name: tcp, protocol: TCP}"
_PORT_NUMBERS = {"http": 80, "grpc": 9080, "tcp": 3306}


@dataclass(frozen=True)
class ServiceYaml:
    """One service's ServiceEntry, and maybe a DestinationRule and a VirtualService, as one file."""

    index: int
    namespace: str
    resolution: str
    ports: tuple[str, ...]
    endpoints: tuple[tuple[str, str], ...]
    export_here: bool
    subsets: tuple[str, ...] | None
    tls: bool
    selector: bool
    #: (target service, subset, weight); the port is added when the target has several (validation asks for it).
    routes_to: tuple[tuple[int, str | None, int], ...]
    on_gateway: bool
    fault: bool

    def text(self, mesh: dict[int, ServiceYaml]) -> str:
        name, ns = f"svc{self.index}", self.namespace
        endpoints = ", ".join(
            f"{{address: {address}, labels: {{version: {version}}}}}" for address, version in self.endpoints
        )
        docs = [
            _document("ServiceEntry", name, ns, f"  hosts: [{name}.{ns}.svc.cluster.local]\n")
            + f"  ports: [{', '.join(_PORTS[port] for port in self.ports)}]\n"
            f"  resolution: {self.resolution}\n  endpoints: [{endpoints}]\n"
            + ('  exportTo: ["."]\n' if self.export_here else "")
        ]
        if self.subsets is not None:
            # Validation rejects a subset that selects no endpoint.
            versions = {version for _, version in self.endpoints}
            subsets = ", ".join(f"{{name: {s}, labels: {{version: {s}}}}}" for s in self.subsets if s in versions)
            policy = "  trafficPolicy: {tls: {mode: SIMPLE}, loadBalancer: {simple: RANDOM}}\n" if self.tls else ""
            selector = "  workloadSelector: {matchLabels: {app: canary}}\n" if self.selector else ""
            docs.append(
                _document("DestinationRule", name, ns, f"  host: {name}.{ns}.svc.cluster.local\n{policy}{selector}")
                + f"  subsets: [{subsets}]\n"
            )
        if self.routes_to:
            destinations = "\n".join(
                f"    - destination: {{host: svc{target}.{NAMESPACES[target % 2]}.svc.cluster.local"
                + _subset(mesh[target], subset)
                + (f", port: {{number: {_PORT_NUMBERS[mesh[target].ports[0]]}}}" if len(mesh[target].ports) > 1 else "")
                + f"}}\n      weight: {weight}"
                for target, subset, weight in self.routes_to
            )
            gateways = "  gateways: [mesh, alpha/ingress]\n" if self.on_gateway else ""
            fault = "    fault: {abort: {httpStatus: 503, percentage: {value: 5}}}\n" if self.fault else ""
            docs.append(
                _document("VirtualService", name, ns, f"  hosts: [{name}.{ns}.svc.cluster.local]\n{gateways}")
                + f"  http:\n  - route:\n{destinations}\n{fault}"
            )
        return "---\n".join(docs)


def _document(kind: str, name: str, namespace: str, spec: str) -> str:
    header = f"apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
    return f"{header}spec:\n{spec}"


def _subset(target: ServiceYaml, subset: str | None) -> str:
    """``, subset: NAME`` when the target's DestinationRule defines it (validation rejects others), else nothing."""
    defined = target.subsets is not None and subset in target.subsets and subset in {v for _, v in target.endpoints}
    return f", subset: {subset}" if defined and not target.selector else ""


@st.composite
def services(draw: st.DrawFn, index: int, count: int) -> ServiceYaml:
    versions = ("v1", "v2", "v3")
    routes = draw(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=count - 1),
                st.one_of(st.none(), st.sampled_from(versions)),
                st.integers(min_value=1, max_value=100),
            ),
            max_size=3,
            unique_by=lambda route: (route[0], route[1]),
        )
    )
    weights = sum(weight for _, _, weight in routes)
    if routes:
        # Weights must add up to 100: the last destination takes the rest.
        routes[-1] = (*routes[-1][:2], max(1, routes[-1][2] + 100 - weights))
    resolution = draw(st.sampled_from(["STATIC", "DNS", "NONE"]))
    return ServiceYaml(
        index=index,
        namespace=NAMESPACES[index % 2],
        resolution=resolution,
        ports=tuple(draw(st.lists(st.sampled_from(sorted(_PORTS)), min_size=1, max_size=3, unique=True))),
        endpoints=tuple(
            draw(
                st.lists(
                    st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.1.7"]), st.sampled_from(versions)),
                    min_size=1 if resolution == "STATIC" else 0,
                    max_size=0 if resolution == "NONE" else 3,
                )
            )
        ),
        export_here=draw(st.booleans()),
        subsets=draw(st.one_of(st.none(), st.lists(st.sampled_from(versions), unique=True).map(tuple))),
        tls=draw(st.booleans()),
        selector=draw(st.booleans()),
        routes_to=tuple(routes) if len(routes) < 2 or sum(w for _, _, w in routes) == 100 else (),
        on_gateway=draw(st.booleans()),
        fault=draw(st.booleans()),
    )


@st.composite
def meshes(draw: st.DrawFn) -> list[ServiceYaml]:
    count = draw(st.integers(min_value=1, max_value=5))
    return [draw(services(index, count)) for index in range(count)]


def _files(mesh: list[ServiceYaml]) -> dict[str, str]:
    by_index = {service.index: service for service in mesh}
    return {"gateway.yaml": _GATEWAY, **{f"svc{s.index}.yaml": s.text(by_index) for s in mesh}}


def _load(files: dict[str, str], cache: DecodeCache) -> MeshConfig | None:
    result = load_files(files, cache=cache)
    if any(finding.severity is Severity.ERROR for finding in result.findings):
        return None
    return result.config


def _outcome(config: MeshConfig, proxy: ProxyIdentity, **kwargs: object) -> Translation | tuple[str, object]:
    try:
        return translate(config, proxy, **kwargs)  # type: ignore[arg-type]
    except TranslationError as error:
        return str(error), error.findings


def _assert_same_as_uncached(config: MeshConfig, cache: TranslationCache, passed: PassCache) -> None:
    for proxy in PROXIES:
        cached = _outcome(config, proxy, cache=cache, passed=passed)
        plain = _outcome(config, proxy)
        assert cached == plain
        if isinstance(cached, Translation) and isinstance(plain, Translation):
            assert cached.snapshot.version == plain.snapshot.version


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(meshes(), st.data())
def test_cached_translations_of_random_meshes_and_one_host_edits_equal_uncached_ones(
    mesh: list[ServiceYaml], data: st.DataObject
) -> None:
    decode = DecodeCache()
    config = _load(_files(mesh), decode)
    assume(config is not None)
    assert config is not None
    cache, passed = TranslationCache(), PassCache()
    _assert_same_as_uncached(config, cache, passed)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        edited = data.draw(st.integers(min_value=0, max_value=len(mesh) - 1))
        mesh = [*mesh[:edited], data.draw(services(edited, len(mesh))), *mesh[edited + 1 :]]
        # Kept, the decode cache hands unchanged files' objects back as they were; fresh, every object is new.
        changed = _load(_files(mesh), decode if data.draw(st.booleans()) else DecodeCache())
        if changed is not None:
            _assert_same_as_uncached(changed, cache, passed)


@pytest.mark.parametrize("proxy", [SIDECAR, GATEWAY], ids=["sidecar", "gateway"])
def test_every_fixture_translated_through_one_shared_cache_equals_its_uncached_translation(
    proxy: ProxyIdentity,
) -> None:
    cache = TranslationCache()
    configs = [load(path.read_text(encoding="utf-8")) for path in sorted(FIXTURES.glob("*.yaml"))]
    for config in configs + configs:
        assert translate(config, proxy, cache=cache) == translate(config, proxy)


def test_another_proxy_shape_reuses_the_clusters_and_routes_the_first_built() -> None:
    config = load((FIXTURES / "weighted-80-20.yaml").read_text(encoding="utf-8"))
    cache = TranslationCache()
    first = translate(config, SIDECAR, cache=cache).snapshot
    other = ProxyIdentity(node_id="sidecar-2", namespace="default", role=ProxyRole.SIDECAR, outbound_port=15002)
    second = translate(config, other, cache=cache).snapshot

    for type_url in (CLUSTER, ENDPOINT):
        assert first.resources(type_url).keys() == second.resources(type_url).keys()
        # The same encoded resources: nothing serialized again.
        assert all(
            first.sets[type_url].items[name] is second.sets[type_url].items[name] for name in first.resources(type_url)
        )
    assert list(first.resources(ROUTE)) == ["15001"]
    assert list(second.resources(ROUTE)) == ["15002"]


def test_a_one_host_edit_rebuilds_that_hosts_clusters_and_reuses_the_others() -> None:
    mesh = [
        ServiceYaml(
            i, "alpha", "STATIC", ("http",), (("10.0.0.1", "v1"),), False, ("v1",), False, False, (), False, False
        )
        for i in range(3)
    ]
    decode, cache = DecodeCache(), TranslationCache()
    before = translate(_load(_files(mesh), decode), PROXIES[0], cache=cache).snapshot  # type: ignore[arg-type]
    mesh[1] = ServiceYaml(
        1, "alpha", "STATIC", ("http",), (("10.0.0.2", "v1"),), False, ("v1",), False, False, (), False, False
    )
    after = translate(_load(_files(mesh), decode), PROXIES[0], cache=cache).snapshot  # type: ignore[arg-type]

    def same(name: str) -> bool:
        return before.sets[ENDPOINT].items[name] is after.sets[ENDPOINT].items[name]

    assert same("outbound|80||svc0.alpha.svc.cluster.local")
    assert same("outbound|80||svc2.alpha.svc.cluster.local")
    assert not same("outbound|80||svc1.alpha.svc.cluster.local")
    assert before.version_of(CLUSTER) == after.version_of(CLUSTER)
    assert before.version_of(ENDPOINT) != after.version_of(ENDPOINT)


def test_the_cache_forgets_what_neither_the_current_nor_the_previous_config_used() -> None:
    cache = TranslationCache()
    sizes = []
    for generation in range(4):
        mesh = [
            ServiceYaml(10 * generation + i, "alpha", "DNS", ("http",), (), False, None, False, False, (), False, False)
            for i in range(3)
        ]
        config = _load(_files(mesh), DecodeCache())
        assert config is not None
        translate(config, PROXIES[0], cache=cache)
        sizes.append(len(cache))

    # The previous config's entries are kept (equal ones, such as the empty sets of load assignments, shared).
    assert sizes[0] < sizes[1] <= 2 * sizes[0]
    assert sizes[3] == sizes[2] == sizes[1]


def test_sidecar_shapes_kept_for_patching_are_bounded_by_the_services_they_see() -> None:
    cache = TranslationCache()
    per_shape = PATCH_BUDGET // 50
    for shape in range(50):
        cache.keep_sidecar_state(shape, f"state {shape}", services=per_shape)
    assert all(cache.sidecar_state(shape) == f"state {shape}" for shape in range(50))

    cache.sidecar_state(0)  # used again: the least recently used is now shape 1
    cache.keep_sidecar_state(50, "state 50", services=per_shape)
    assert cache.sidecar_state(1) is None
    assert cache.sidecar_state(0) == "state 0"
    assert cache.sidecar_state(50) == "state 50"

    cache.keep_sidecar_state("huge", "state huge", services=PATCH_BUDGET * 2)
    assert cache.sidecar_state("huge") == "state huge"
    assert cache.sidecar_state(0) is None


_FRONT_TO_BACK = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: front, namespace: alpha}}
spec:
  hosts: [front.alpha.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 10.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: back, namespace: alpha}}
spec:
  hosts: [back.alpha.svc.cluster.local]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 10.0.0.2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: front, namespace: alpha}}
spec:
  hosts: [front.alpha.svc.cluster.local]
  http:
  - route:
    - destination: {{host: back.alpha.svc.cluster.local}}
"""


def test_routes_are_built_again_when_a_destination_service_they_read_changes() -> None:
    first = load(_FRONT_TO_BACK.format(port=8080))
    # The same VirtualService object; only the service its destination names (and so the port it defaults to) moved.
    moved = dataclasses.replace(load(_FRONT_TO_BACK.format(port=9090)), virtual_services=first.virtual_services)
    cache = TranslationCache()
    translate(first, PROXIES[0], cache=cache)

    # Another shape: a full translation through the cache, not a patch of the first one's.
    second = translate(moved, PROXIES[1], cache=cache)

    assert second == translate(moved, PROXIES[1])
    assert "outbound|9090||back.alpha.svc.cluster.local" in second.snapshot.resources(CLUSTER)
    assert b"outbound|9090||back" in second.snapshot.sets[ROUTE].items["15002"].packed


@given(st.integers(min_value=0, max_value=8), st.data())
def test_changed_items_pairs_are_exactly_what_went_and_came_or_none(size: int, data: st.DataObject) -> None:
    before = [object() for _ in range(size)]
    kept = data.draw(st.lists(st.booleans(), min_size=size, max_size=size))
    after = [item for item, keep in zip(before, kept, strict=True) if keep]
    after += [object() for _ in range(data.draw(st.integers(min_value=0, max_value=3)))]

    changes = changed_items(before, after, limit=20)

    if changes is not None and all(old is not None and new is not None for old, new in changes):
        # Replaced in place: the pairs are the positions that differ.
        assert len(before) == len(after)
        assert changes == [(old, new) for old, new in zip(before, after, strict=True) if old is not new]
    elif changes is not None:
        # A run removed, the rest kept in order, the added at the end.
        gone = [old for old, _ in changes if old is not None]
        came = [new for _, new in changes if new is not None]
        assert [item for item in before if all(item is not old for old in gone)] + came == after


def test_two_removals_apart_are_not_taken_for_one() -> None:
    first, second, third, fourth = (object() for _ in range(4))

    # The second and fourth gone: not the run after the head that changed_items can tell (the last one was missed).
    assert changed_items([first, second, third, fourth], [first, third], limit=20) is None
