"""Route tables are checked against Envoy's constraints as templates; a sidecar's is serialized as it is built.

The bytes must be those of the RouteConfiguration message they stand for (its version and the
clusters it names too), and the template check must say "passes" exactly when walking the whole
message finds nothing: otherwise a bad VirtualService would slip past the safety net, or a good
one be walked for nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from translate_support import GATEWAY, SIDECAR, gateway, service_entry, subsets_rule, virtual_service
from validate import validate_pb2

from reconciler.loader import load_files
from reconciler.model.config import MeshConfig
from reconciler.translate.clusters import ClusterSet
from reconciler.translate.constraints import violations
from reconciler.translate.gateway import build_gateway
from reconciler.translate.memo import TranslationCache
from reconciler.translate.notes import Notes
from reconciler.translate.registry import build_registry
from reconciler.translate.routes import RouteBuilder
from reconciler.translate.scope import Scope
from reconciler.translate.sidecar import RouteTable, sidecar_routes
from reconciler.translate.snapshot import ROUTE, Resource, clusters_referenced_by_routes
from reconciler.validate.findings import Code, Finding, Severity

_SERVICES = "".join(
    service_entry(host, port=port) + subsets_rule(host, "v1", "v2", "v3")
    for host, port in (("reviews", 9080), ("ratings", 80), ("details", 8080))
)
#: A header value Envoy refuses (a line break) that no validation rule knows.
_BAD_VALUE = '"two\\nlines"'


@st.composite
def _rules(draw: st.DrawFn) -> str:
    """One VirtualService's HTTP rules: matches, header changes, redirects, direct responses, mirrors, splits."""
    rules = []
    for index in range(draw(st.integers(min_value=1, max_value=3))):
        lines = [f"  - name: r{index}"]
        if draw(st.booleans()):
            lines.append(f"    match:\n    - uri: {{prefix: /p{index}}}")
            if draw(st.booleans()):
                lines.append("    - headers: {end-user: {exact: tester}}")
        if draw(st.booleans()):
            value = _BAD_VALUE if draw(st.integers(min_value=0, max_value=4)) == 0 else "on"
            lines.append(f"    headers: {{request: {{set: {{x-note: {value}}}}}}}")
        kind = draw(st.sampled_from(["route", "route", "split", "redirect", "direct"]))
        if kind == "redirect":
            lines.append("    redirect: {uri: /elsewhere}")
        elif kind == "direct":
            lines.append('    directResponse: {status: 418, body: {string: "no"}}')
        else:
            hosts = draw(st.lists(st.sampled_from(["reviews", "ratings", "details"]), min_size=1, max_size=3))
            if kind == "route":
                hosts = hosts[:1]
            weights = [100 // len(hosts)] * len(hosts)
            weights[-1] += 100 - sum(weights)
            lines.append("    route:")
            for host, weight in zip(hosts, weights, strict=True):
                subset = draw(st.sampled_from(["", ", subset: v1", ", subset: v2"]))
                lines.append(f"    - destination: {{host: {host}{subset}}}\n      weight: {weight}")
            if draw(st.booleans()):
                lines.append("    mirror: {host: ratings}")
            if draw(st.booleans()):
                lines.append("    retries: {attempts: 3, perTryTimeout: 2s}")
        rules.append("\n".join(lines))
    return "  http:\n" + "\n".join(rules) + "\n"


def _gateway_passing(config: MeshConfig) -> tuple[list[route_pb2.RouteConfiguration], set[str]]:
    notes = Notes()
    scope = Scope(config=config, registry=build_registry(config), namespace=GATEWAY.namespace, labels=GATEWAY.labels)
    clusters = ClusterSet(scope=scope, notes=notes, report_ports=False)
    routes = RouteBuilder(scope=scope, clusters=clusters, notes=notes)
    passing: set[str] = set()
    _, configs = build_gateway(scope=scope, gateways=list(config.gateways), routes=routes, notes=notes, passing=passing)
    return configs, passing


def _table(config: MeshConfig) -> RouteTable:
    notes = Notes()
    scope = Scope(config=config, registry=build_registry(config), namespace=SIDECAR.namespace, labels={})
    clusters = ClusterSet(scope=scope, notes=notes, report_ports=True)
    for service in scope.services():
        clusters.add_service(service)
    routes = RouteBuilder(scope=scope, clusters=clusters, notes=notes)
    _, table = sidecar_routes(scope=scope, routes=routes, notes=notes, port=SIDECAR.outbound_port)
    return table


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(_rules(), min_size=1, max_size=3), st.booleans())
def test_a_route_table_is_the_bytes_of_its_message_and_passes_exactly_when_walking_it_finds_nothing(
    specs: list[str], extra_host: bool
) -> None:
    hosts = ["[reviews]", "[ratings]", "[details]"]
    if extra_host:
        hosts[0] = "[reviews, shop.example.com]"  # outside the registry: its own virtual host on port 80
    text = (
        gateway("ingress")
        + _SERVICES
        + "".join(
            virtual_service(f"vs{index}", "  gateways: [mesh, ingress]\n" + spec, hosts=hosts[index])
            for index, spec in enumerate(specs)
        )
    )
    loaded = load_files({"mesh.yaml": text})
    # What Envoy would reject is what the template check must find: only other errors rule a config out.
    assume(not any(f.severity is Severity.ERROR and f.code is not Code.ENVOY_WOULD_REJECT for f in loaded.findings))

    table = _table(loaded.config)
    message = table.message()

    assert Resource.of(ROUTE, message) == table.resource
    assert table.resource.packed == Resource.of(ROUTE, message).packed
    assert table.resource.references == clusters_referenced_by_routes((message,))
    assert list(table.vhosts) == [vhost.SerializeToString(deterministic=True) for vhost in message.virtual_hosts]
    # The pass cache knows a virtual host by the SHA-256 of its bytes, however the table hashed them.
    assert table.digests() == [hashlib.sha256(vhost).hexdigest() for vhost in table.vhosts]
    event(f"passes={table.passes}")
    assert table.passes == (not violations(message))
    configs, passing = _gateway_passing(loaded.config)
    assert {config.name for config in configs if not violations(config)} == passing


def test_a_route_table_of_services_without_virtual_services_holds_their_default_routes() -> None:
    config = load_files({"mesh.yaml": _SERVICES}).config

    table = _table(config)
    message = table.message()

    assert Resource.of(ROUTE, message) == table.resource
    assert table.passes
    assert [vhost.routes[0].route.cluster for vhost in message.virtual_hosts] == [
        "outbound|8080||details.default.svc.cluster.local",
        "outbound|80||ratings.default.svc.cluster.local",
        "outbound|9080||reviews.default.svc.cluster.local",
    ]


def test_the_fields_a_template_leaves_out_are_constrained_only_to_be_non_empty() -> None:
    # Templates stand a placeholder for cluster names and check virtual host names only for being non-empty:
    # a new constraint on one of these fields in Envoy's protos must be met there first.
    fields = {
        (rc.RouteAction, "cluster"): "min_len: 1",
        (rc.WeightedCluster.ClusterWeight, "name"): "",
        (rc.RouteAction.RequestMirrorPolicy, "cluster"): "",
        (rc.VirtualHost, "name"): "min_len: 1",
    }
    for (message, name), expected in fields.items():
        options = message.DESCRIPTOR.fields_by_name[name].GetOptions()
        rules = options.Extensions[validate_pb2.rules] if options.HasExtension(validate_pb2.rules) else None
        found = "" if rules is None else " ".join(str(rules.string).split())
        assert found == expected, (message.DESCRIPTOR.name, name)


#: Where a destination host goes in the next VirtualService written alike.
_MOVED = {"reviews": "details", "ratings": "reviews", "details": "ratings"}
#: How the next VirtualService's rules are written from the last one's: alike but for the destinations' hosts
#: (moved on to another service, of other ports), or the same; or with other subsets, or with a port (not alike).
_EDITS: dict[str, Callable[[str], str]] = {
    "hosts": lambda rules: re.sub(r"host: (\w+)", lambda found: f"host: {_MOVED[found[1]]}", rules),
    "same": lambda rules: rules,
    "subsets": lambda rules: re.sub(r"subset: v(\d)", lambda found: f"subset: v{3 - int(found[1])}", rules),
    "port": lambda rules: re.sub(r"\{host: (\w+)", r"{host: \1, port: {number: 80}", rules, count=1),
}


def _without_fixed_delays(config: MeshConfig) -> MeshConfig:
    """``config`` without its fault delays' ``fixedDelay`` (validation requires one): each makes a finding, built."""
    services = []
    for vs in config.virtual_services:
        rules = tuple(
            dataclasses.replace(
                rule,
                fault=dataclasses.replace(
                    rule.fault,
                    delay=None if rule.fault.delay is None else dataclasses.replace(rule.fault.delay, fixed_delay=None),
                ),
            )
            if rule.fault is not None
            else rule
            for rule in vs.spec.http
        )
        services.append(dataclasses.replace(vs, spec=dataclasses.replace(vs.spec, http=rules)))
    return dataclasses.replace(config, virtual_services=tuple(services))


def _builder(config: MeshConfig, *, cached: bool) -> tuple[RouteBuilder, Notes]:
    notes = Notes()
    scope = Scope(config=config, registry=build_registry(config), namespace=SIDECAR.namespace, labels={})
    clusters = ClusterSet(scope=scope, notes=notes, report_ports=True)
    return RouteBuilder(
        scope=scope, clusters=clusters, notes=notes, cache=TranslationCache() if cached else None
    ), notes


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(
    spec=_rules(),
    edits=st.lists(st.sampled_from(sorted(_EDITS)), min_size=1, max_size=3),
    other=st.lists(_rules(), max_size=1),
    port=st.sampled_from([80, 9080]),
    cached=st.booleans(),
    noted=st.booleans(),
)
def test_routes_made_of_a_virtual_service_written_alike_equal_those_built_alone(
    *, spec: str, edits: list[str], other: list[str], port: int, cached: bool, noted: bool
) -> None:
    if noted:
        spec = spec.replace("  - name: r0\n", "  - name: r0\n    fault: {delay: {fixedDelay: 1s}}\n", 1)
    specs = [spec]
    for edit in edits:
        specs.append(_EDITS[edit](specs[-1]))
    specs[1:1] = other  # maybe a VirtualService of other rules among them
    text = _SERVICES + "".join(
        virtual_service(f"vs{index}", body, hosts=f"[vs{index}.example.com]") for index, body in enumerate(specs)
    )
    loaded = load_files({"mesh.yaml": text})
    assume(not any(f.severity is Severity.ERROR and f.code is not Code.ENVOY_WOULD_REJECT for f in loaded.findings))
    config = _without_fixed_delays(loaded.config) if noted else loaded.config

    shared, shared_notes = _builder(config, cached=cached)
    alone_findings: list[Finding] = []
    for vs in config.virtual_services:
        alone, notes = _builder(config, cached=cached)
        expected = alone.encoded(vs, listener_port=port)
        assert shared.encoded(vs, listener_port=port) == expected
        assert shared.routes(vs, listener_port=port) == alone.routes(vs, listener_port=port)
        # What a cache keeps of them (the clusters asked for, the services read, each route's rule) is the same too.
        assert shared.last_entry() == alone.last_entry()
        alone_findings.extend(notes.result())
    assert set(shared_notes.result()) == set(alone_findings)
