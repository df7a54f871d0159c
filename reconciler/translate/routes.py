"""VirtualService HTTP rules → Envoy routes, following Istio's ``route.go`` rule by rule.

One rule with several ``match`` entries becomes one Envoy route per entry (Envoy matches
routes in order, so that is an OR); a rule without matches, or with a match-all entry,
ends the list because nothing after it can ever match. Destinations become clusters
through :class:`~reconciler.translate.clusters.ClusterSet`, which makes sure every name a
route uses exists.

A VirtualService's routes for one listener port are serialized once, as a virtual host's
``routes`` field (:meth:`RouteBuilder.encoded`): a sidecar's route table is put together from
those bytes, and a cache keeps them rather than the messages. Each is checked against Envoy's
constraints as its template, the routes with every cluster name replaced by one placeholder:
VirtualServices written alike share a template, so their routes are walked once, not once each.

Those whose HTTP rules differ only in their destinations' hosts (a mesh's services routed the same way) are not
built each either: within one translation, the first one's route messages are kept, and each other one's are those
messages with its own clusters' names written in (asked for in the same order), serialized.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from reconciler.model.common import HeaderName, Percent, StringMatch
from reconciler.model.config import Resource
from reconciler.model.hosts import resolve_host
from reconciler.model.protocols import KNOWN_HTTP_STATUS_CODES
from reconciler.model.virtualservice import (
    Destination,
    HeaderOperations,
    Headers,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPMirrorPolicy,
    HTTPRedirect,
    HTTPRetry,
    HTTPRoute,
    HTTPRouteDestination,
    VirtualServiceSpec,
)
from reconciler.translate.clusters import ClusterSet
from reconciler.translate.constraints import Verdicts, violations
from reconciler.translate.memo import EncodedRoutes, EnsureCall, TranslationCache, VirtualServiceRoutes
from reconciler.translate.names import cluster_name
from reconciler.translate.notes import NoteCall, Notes
from reconciler.translate.protos import duration, varint
from reconciler.translate.registry import Service
from reconciler.translate.scope import Scope

__all__ = [
    "DEFAULT_RETRY_ON",
    "FAULT_FILTER",
    "RouteBuilder",
    "is_catch_all",
    "retry_policy",
]

#: Name of Envoy's fault-injection HTTP filter; per-route fault config is keyed by it.
FAULT_FILTER = "envoy.filters.http.fault"
#: Istio's default ``retryOn`` (``retry.go``).
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
_DEFAULT_ATTEMPTS = 2
#: Istio retries 503 by default (unless EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY is set).
_DEFAULT_RETRIABLE_CODES = (503,)
_HOST_SELECTION_RETRY_MAX_ATTEMPTS = 5
_PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
_METHOD_HEADER = ":method"
#: Field 3 of a VirtualHost (routes), length-delimited: each route of :class:`EncodedRoutes` starts with it.
_ROUTES_TAG = b"\x1a"
#: What a route's cluster names are replaced by in its template (see :meth:`RouteBuilder.encoded`).
_PLACEHOLDER = "-"
#: A cluster name a route holds: the message and field it is in, the name, and which cluster asked for it is.
_Slot = tuple[Message, str, str, int]
_REDIRECT_CODES: Mapping[int, int] = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


def _fraction(percent: Percent) -> percent_pb2.FractionalPercent:
    """Istio's percent → per-million fraction (truncating, like Go's uint32 conversion)."""
    return percent_pb2.FractionalPercent(
        numerator=int(percent.value * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def _hundredths(value: int) -> percent_pb2.FractionalPercent:
    return percent_pb2.FractionalPercent(numerator=value, denominator=percent_pb2.FractionalPercent.HUNDRED)


def _string_matcher(match: StringMatch, *, ignore_case: bool = False) -> string_pb2.StringMatcher:
    if match.exact is not None:
        return string_pb2.StringMatcher(exact=match.exact, ignore_case=ignore_case)
    if match.prefix is not None:
        return string_pb2.StringMatcher(prefix=match.prefix, ignore_case=ignore_case)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.regex or ""))


def _is_presence(match: StringMatch | None) -> bool:
    # Istio reads regex "*" (not valid RE2 anyway) as "header present", as do its users.
    return match is None or match.regex == "*" or (match.exact is None and match.prefix is None and not match.regex)


def _header_matcher(into: rc.HeaderMatcher, match: StringMatch | None) -> None:
    """Make ``into`` (named already) match ``match``."""
    if _is_presence(match):
        into.present_match = True
        return
    assert match is not None
    into.string_match.CopyFrom(_string_matcher(match))


def is_catch_all(route: rc.Route) -> bool:
    """True when ``route`` matches every request (so routes after it are unreachable)."""
    match = route.match
    specifier = match.WhichOneof("path_specifier")
    if specifier == "prefix":
        catch_all = match.prefix == "/"
    elif specifier == "safe_regex":
        catch_all = match.safe_regex.regex == ".*"
    else:
        catch_all = False
    return catch_all and not match.headers and not match.query_parameters


def retry_policy(retries: HTTPRetry | None) -> rc.RetryPolicy | None:
    """Istio's ``retry.ConvertPolicy``: defaults when unset, none when ``attempts`` is 0."""
    policy = rc.RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        num_retries=wrappers_pb2.UInt32Value(value=_DEFAULT_ATTEMPTS),
        retriable_status_codes=_DEFAULT_RETRIABLE_CODES,
        host_selection_retry_max_attempts=_HOST_SELECTION_RETRY_MAX_ATTEMPTS,
    )
    # Retrying on a host that has just failed rarely helps; Istio prefers a fresh one.
    predicate = policy.retry_host_predicate.add(name=_PREVIOUS_HOSTS)
    predicate.typed_config.Pack(previous_hosts_pb2.PreviousHostsPredicate())
    if retries is None:
        return policy
    if not retries.attempts:
        return None
    policy.num_retries.value = retries.attempts
    if retries.retry_on:
        conditions: list[str] = []
        codes: list[int] = []
        for part in (piece.strip() for piece in retries.retry_on.split(",")):
            if not part:
                continue
            if part.isdigit() and int(part) in KNOWN_HTTP_STATUS_CODES:
                codes.append(int(part))
            else:
                conditions.append(part)
        if codes and "retriable-status-codes" not in conditions:
            conditions.append("retriable-status-codes")
        policy.retry_on = ",".join(conditions)
        del policy.retriable_status_codes[:]
        policy.retriable_status_codes.extend(codes)
    if retries.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(duration(retries.per_try_timeout.nanos))
    return policy


class _HeaderOps:
    """Istio's ``TranslateHeadersOperations``: set → overwrite, add → append, Host/`:` headers special."""

    __slots__ = ("authority", "request_add", "request_remove", "response_add", "response_remove")

    def __init__(self, headers: Headers) -> None:
        request = headers.request or HeaderOperations()
        response = headers.response or HeaderOperations()
        set_authority = _authority(request.set)
        add_authority = _authority(request.add)
        #: ``set`` wins over ``add`` when both name the authority.
        self.authority = set_authority or add_authority
        self.request_add = _header_values(request.set, append=False) + _header_values(request.add, append=True)
        self.response_add = _header_values(response.set, append=False) + _header_values(response.add, append=True)
        self.request_remove = [name for name in request.remove if not _internal(name)]
        self.response_remove = [name for name in response.remove if not _internal(name)]

    def apply(self, target: rc.Route | rc.WeightedCluster.ClusterWeight) -> None:
        """Append the header changes to a route or a weighted cluster (both name the fields alike)."""
        target.request_headers_to_add.extend(self.request_add)
        target.request_headers_to_remove.extend(self.request_remove)
        target.response_headers_to_add.extend(self.response_add)
        target.response_headers_to_remove.extend(self.response_remove)


def _internal(name: str) -> bool:
    # Pseudo-headers and Host cannot be changed as plain headers; Host is rewritten instead.
    return name.startswith(":") or name.lower() == "host"


def _authority(values: Mapping[HeaderName, str] | None) -> str:
    found = ""
    for name, value in (values or {}).items():
        if name.lower() in (":authority", "host"):
            found = value
    return found


def _header_values(values: Mapping[HeaderName, str] | None, *, append: bool) -> list[base_pb2.HeaderValueOption]:
    action = (
        base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
        if append
        else base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    )
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=value), append_action=action)
        for name, value in sorted((values or {}).items())
        if not _internal(name)
    ]


class RouteBuilder:
    """Translates the HTTP rules of VirtualServices for one proxy."""

    def __init__(
        self, *, scope: Scope, clusters: ClusterSet, notes: Notes, cache: TranslationCache | None = None
    ) -> None:
        self._scope = scope
        self._clusters = clusters
        self._notes = notes
        self._cache = cache
        #: While a cache records: what was reported and which clusters were asked for, in order.
        self._events: list[NoteCall | EnsureCall] | None = None
        #: While a cache records: the service of each cluster asked for's host (what the routes read of the registry).
        self._services: list[Service | None] = []
        # Only the last result is kept: callers ask for one VirtualService's routes for each
        # of its hosts in a row; the routes of the others are kept serialized only.
        self._last: _Last | None = None
        self._retries: dict[HTTPRetry | None, rc.RetryPolicy | None] = {}
        self._durations: dict[int, duration_pb2.Duration] = {}
        #: Per routes built or reused: their bytes, the VirtualService and each route's HTTP rule path.
        self._built: list[tuple[bytes, Resource[VirtualServiceSpec], tuple[str, ...]]] = []
        #: The HTTP rule path of each route being built, and the cluster names it holds (see :meth:`encoded`).
        self._paths: list[str] = []
        self._slots: list[list[_Slot]] = []
        #: Route templates checked against Envoy's constraints: whether they pass.
        self._templates: dict[bytes, bool] = {}
        self._verdicts = Verdicts()
        self._default: _DefaultTemplate | None = None
        #: While building: the destinations a cluster was asked for (with their paths), in order; whether a note was
        #: made other than through the clusters.
        self._calls: list[tuple[Destination, str]] = []
        self._noted = False
        #: Routes to make others of, by how many matches, destinations and mirrors the rules have (see _RouteTemplate).
        self._route_templates: dict[Hashable, _RouteTemplate] = {}

    def source_of(self, route: rc.Route) -> tuple[Resource[VirtualServiceSpec], str] | None:
        """The VirtualService and HTTP rule path a route (as it ended up in a snapshot) was built from.

        For reporting what Envoy would reject; a linear search, as that is rare. Equal messages
        serialize alike, so the routes are compared as bytes.
        """
        needle = route.SerializeToString(deterministic=True)
        for data, vs, paths in self._built:
            if needle not in data:
                continue
            for built, path in zip(rc.VirtualHost.FromString(data).routes, paths, strict=True):
                if built.SerializeToString(deterministic=True) == needle:
                    return vs, path
        return None

    def default_route(self, cluster: str) -> rc.Route:
        """The route of a service without VirtualService: everything to its default cluster, Istio's defaults."""
        action = rc.RouteAction(cluster=cluster, timeout=duration_pb2.Duration())
        policy = self._retry_policy(None)
        assert policy is not None
        action.retry_policy.CopyFrom(policy)
        return rc.Route(name="default", match=rc.RouteMatch(prefix="/"), route=action)

    def default_encoded(self, cluster: str) -> EncodedRoutes:
        """:meth:`default_route` as :meth:`encoded` gives routes: its bytes put together around the cluster name."""
        template = self._default
        if template is None:
            template = self._default = _DefaultTemplate(self.default_route(_PLACEHOLDER), verdicts=self._verdicts)
        return template.encoded(cluster)

    def _duration(self, nanos: int) -> duration_pb2.Duration:
        """:func:`duration`, made once per value (most rules share a few timeouts)."""
        found = self._durations.get(nanos)
        if found is None:
            found = self._durations[nanos] = duration(nanos)
        return found

    def _retry_policy(self, retries: HTTPRetry | None) -> rc.RetryPolicy | None:
        """:func:`retry_policy`, built once per distinct setting (most rules share Istio's default)."""
        if retries not in self._retries:
            self._retries[retries] = retry_policy(retries)
        return self._retries[retries]

    def routes(self, vs: Resource[VirtualServiceSpec], *, listener_port: int) -> list[rc.Route]:
        """Envoy routes for every HTTP rule of ``vs``; destinations without a port default to ``listener_port``.

        Asking again for the same arguments in a row returns the same list; callers copy it into protos.
        """
        last = self._routes(vs, listener_port)
        if last.routes is None:
            last.routes = list(rc.VirtualHost.FromString(last.encoded.data).routes)
        return last.routes

    def encoded(self, vs: Resource[VirtualServiceSpec], *, listener_port: int) -> EncodedRoutes:
        """:meth:`routes` serialized as a virtual host's ``routes`` field, the clusters they name, and whether they
        pass Envoy's constraints.

        That verdict comes from the routes' template (the routes with every cluster name replaced by
        the same placeholder): a route's cluster names are the only strings in it that differ between
        VirtualServices of the same rules, and none of their fields' constraints tells apart two
        names that are not empty. So routes of many VirtualServices written alike are walked once.
        """
        return self._routes(vs, listener_port).encoded

    def _routes(self, vs: Resource[VirtualServiceSpec], listener_port: int) -> _Last:
        key = (id(vs), listener_port)
        last = self._last
        if last is not None and last.key == key:
            return last
        if self._cache is None:
            out, encoded = self._made(vs, listener_port)
            self._built.append((encoded.data, vs, tuple(self._paths)))
            last = _Last(key, out, None, encoded)
        else:
            entry = self._reuse(vs, listener_port)
            last = _Last(key, None, entry, entry.encoded)
        self._last = last
        return last

    def last_entry(self) -> VirtualServiceRoutes | None:
        """What the last :meth:`routes` call built or reused through the cache, with its events (None without one)."""
        return self._last.entry if self._last is not None else None

    def _reuse(self, vs: Resource[VirtualServiceSpec], listener_port: int) -> VirtualServiceRoutes:
        """:meth:`_build` through the cache: the routes depend on ``vs``, the port and the services they read.

        A reused result replays what building it reported and the clusters it asked for, in order,
        so this translation's notes and clusters end up as if the routes were built here.
        """
        assert self._cache is not None
        reused = self._cache.routes(vs, listener_port=listener_port, service=self._scope.service)
        if reused is not None:
            for event in reused.events:
                if isinstance(event, EnsureCall):
                    self._clusters.ensure(
                        host=event.host, port=event.port, subset=event.subset, referrer=vs, path=event.path
                    )
                else:
                    self._notes.replay((event,))
            self._built.append((reused.encoded.data, vs, reused.paths))
            return reused
        events: list[NoteCall | EnsureCall] = []
        self._events, self._services = events, []
        self._notes.record(events)
        try:
            _, encoded = self._made(vs, listener_port)
        finally:
            self._notes.record(None)
            self._events = None
        built = VirtualServiceRoutes(
            vs=vs,
            listener_port=listener_port,
            services=tuple(self._services),
            events=tuple(events),
            paths=tuple(self._paths),
            encoded=encoded,
        )
        self._built.append((built.encoded.data, vs, built.paths))
        self._cache.keep_routes(built)
        return built

    def _made(
        self, vs: Resource[VirtualServiceSpec], listener_port: int
    ) -> tuple[list[rc.Route] | None, EncodedRoutes]:
        """The routes of ``vs`` for ``listener_port``, encoded, and as messages unless a template keeps those.

        A mesh routes many services alike: VirtualServices whose HTTP rules differ only in their
        destinations' hosts make the same routes but for the cluster names, and ask for clusters in
        the same order. The first one's routes are built and kept as a template (if building them
        reported nothing but through the clusters); the others' are its messages with their own
        clusters' names written in, serialized, and pass Envoy's constraints as the template did.
        """
        rules = vs.spec.http
        key = tuple((len(rule.match), len(rule.route), len(rule.mirrors)) for rule in rules)
        shape = _shape(rules)
        template = self._route_templates.get(key)
        if template is not None and template.shape == shape:
            return None, self._from_template(template, vs, listener_port)
        out = self._build(vs, listener_port)
        slots = [slot for found in self._slots for slot in found]
        data = b"".join(_framed(route.SerializeToString(deterministic=True)) for route in out)
        names = frozenset(name for _, _, name, _ in slots)
        passes = self._template_passes(out, slots)
        encoded = EncodedRoutes(data=data, references=names, passes=all(names) and passes)
        made = (
            None
            if self._noted
            else _RouteTemplate.of(
                vs, shape=shape, routes=out, slots=slots, calls=self._calls, paths=self._paths, passes=passes
            )
        )
        if made is None:
            return out, encoded
        self._route_templates[key] = made
        return None, encoded  # the template's messages change with every use: parsed from the bytes when asked

    def _from_template(
        self, template: _RouteTemplate, vs: Resource[VirtualServiceSpec], listener_port: int
    ) -> EncodedRoutes:
        """The routes of ``vs`` made of ``template``, as :meth:`_made` makes them."""
        # The calls are the template's: those recorded here are not kept past this VirtualService.
        self._calls = []
        destinations = _destinations_of(vs.spec.http)
        names = [
            self._cluster(vs, destinations[index], port=listener_port, path=path) for index, path in template.calls
        ]
        for message, field, call in template.slots:
            setattr(message, field, names[call])
        data = b"".join(_framed(route.SerializeToString(deterministic=True)) for route in template.routes)
        used = frozenset(names[call] for _, _, call in template.slots)
        self._paths = list(template.paths)
        return EncodedRoutes(data=data, references=used, passes=all(used) and template.passes)

    def _template_passes(self, routes: Sequence[rc.Route], slots: Sequence[_Slot]) -> bool:
        for message, field, _, _ in slots:
            setattr(message, field, _PLACEHOLDER)
        try:
            template = b"".join(_framed(route.SerializeToString(deterministic=True)) for route in routes)
            passes = self._templates.get(template)
            if passes is None:
                passes = self._templates[template] = not any(
                    violations(route, verdicts=self._verdicts) for route in routes
                )
        finally:
            for message, field, name, _ in slots:
                setattr(message, field, name)
        return passes

    def _build(self, vs: Resource[VirtualServiceSpec], listener_port: int) -> list[rc.Route]:
        self._slots, self._paths, self._calls, self._noted = [], [], [], False
        out: list[rc.Route] = []
        for index, http in enumerate(vs.spec.http):
            path = f"spec.http[{index}]"
            matches: Sequence[HTTPMatchRequest | None] = http.match or (None,)
            done = False
            for match in matches:
                route = self._route(vs, http=http, match=match, path=path, port=listener_port)
                out.append(route)
                if match is None or is_catch_all(route):
                    done = True
                    break
            if done:
                break
        return out

    # -- one route -------------------------------------------------------------------

    def _route(
        self,
        vs: Resource[VirtualServiceSpec],
        *,
        http: HTTPRoute,
        match: HTTPMatchRequest | None,
        path: str,
        port: int,
    ) -> rc.Route:
        name = http.name or ""
        if match is not None and match.name:
            name = f"{name}.{match.name}"
        out = rc.Route(name=name)
        _route_match(match, into=out.match)
        self._slots.append([])
        authority = ""
        if http.headers is not None:
            ops = _HeaderOps(http.headers)
            ops.apply(out)
            authority = ops.authority
        if http.redirect is not None:
            self._redirect(out, http.redirect, vs=vs, path=f"{path}.redirect")
        elif http.direct_response is not None:
            response = http.direct_response
            out.direct_response.status = response.status
            if response.body is not None and response.body.string is not None:
                out.direct_response.body.inline_string = response.body.string
        else:
            self._forward(out, vs=vs, http=http, authority=authority, path=path, port=port)
        if http.fault is not None:
            fault = self._fault(http.fault, vs=vs, path=f"{path}.fault")
            if fault is not None:
                out.typed_per_filter_config[FAULT_FILTER].Pack(fault)
        self._paths.append(path)
        return out

    def _forward(
        self,
        out: rc.Route,
        *,
        vs: Resource[VirtualServiceSpec],
        http: HTTPRoute,
        authority: str,
        path: str,
        port: int,
    ) -> None:
        # Envoy's default route timeout is 15 s; Istio's is none (0 s) unless the rule sets one.
        timeout = http.timeout.nanos if http.timeout is not None else 0
        action = out.route
        action.timeout.CopyFrom(self._duration(timeout))
        if http.rewrite is not None:
            if http.rewrite.uri:
                action.prefix_rewrite = http.rewrite.uri
            if http.rewrite.authority:
                authority = http.rewrite.authority
        if authority:
            action.host_rewrite_literal = authority
        mirrors: list[tuple[Destination, Percent | None, str]] = []
        if http.mirror is not None:
            mirrors.append((http.mirror, http.mirror_percentage, f"{path}.mirror"))
        mirrors.extend(
            (mirror.destination, mirror.percentage, f"{path}.mirrors[{index}].destination")
            for index, mirror in enumerate(http.mirrors)
        )
        for destination, percentage, mirror_path in mirrors:
            # Unset means all requests; an explicit 0 means none (Istio's MirrorPercent).
            if percentage is not None and percentage.value <= 0:
                continue
            fraction = _fraction(percentage) if percentage is not None else _hundredths(100)
            cluster = self._cluster(vs, destination, port=port, path=mirror_path)
            mirror = action.request_mirror_policies.add(
                cluster=cluster,
                runtime_fraction=base_pb2.RuntimeFractionalPercent(default_value=fraction),
                trace_sampled=wrappers_pb2.BoolValue(value=False),
            )
            self._slots[-1].append((mirror, "cluster", cluster, len(self._calls) - 1))
        self._destinations(out, vs=vs, destinations=http.route, path=path, port=port)
        policy = self._retry_policy(http.retries)
        if policy is not None:
            action.retry_policy.CopyFrom(policy)

    def _destinations(
        self,
        out: rc.Route,
        *,
        vs: Resource[VirtualServiceSpec],
        destinations: Sequence[HTTPRouteDestination],
        path: str,
        port: int,
    ) -> None:
        action = out.route
        indexed = list(enumerate(destinations))
        if len(indexed) > 1:
            # Zero-weight destinations get no traffic; Istio leaves them out of the split.
            weighted = [(index, dst) for index, dst in indexed if dst.weight]
            if not weighted:
                self._about(
                    vs,
                    path=f"{path}.route",
                    message="no destination has a weight above 0: traffic is split evenly",
                    hint="give the destinations weights that add up to 100",
                )
                weighted = indexed
            indexed = weighted
        if len(indexed) == 1:
            index, dst = indexed[0]
            cluster = self._cluster(vs, dst.destination, port=port, path=f"{path}.route[{index}].destination")
            action.cluster = cluster
            self._slots[-1].append((action, "cluster", cluster, len(self._calls) - 1))
            if dst.headers is not None:
                ops = _HeaderOps(dst.headers)
                ops.apply(out)
                # The rule's own rewrite wins over a destination's, as in Istio.
                if ops.authority and not action.host_rewrite_literal:
                    action.host_rewrite_literal = ops.authority
            return
        if not indexed:
            # A rule with neither route, redirect nor direct response: validation rejects it;
            # answer like Istio does for a destination that cannot be found.
            out.ClearField("route")
            self._slots[-1].clear()  # the mirrors went with the route action
            out.direct_response.status = 503
            self._about(vs, path=path, message="rule has no destination: requests get 503")
            return
        for index, dst in indexed:
            cluster = self._cluster(vs, dst.destination, port=port, path=f"{path}.route[{index}].destination")
            weight = action.weighted_clusters.clusters.add(name=cluster)
            weight.weight.value = dst.weight or 1
            self._slots[-1].append((weight, "name", cluster, len(self._calls) - 1))
            if dst.headers is not None:
                ops = _HeaderOps(dst.headers)
                ops.apply(weight)
                if ops.authority:
                    weight.host_rewrite_literal = ops.authority

    def _cluster(self, vs: Resource[VirtualServiceSpec], destination: Destination, *, port: int, path: str) -> str:
        """The cluster a destination names; its port as in Istio's ``GetDestinationCluster``, refined.

        An explicit port wins; else the service's only port; else the listener's port when
        the service has it (Istio's rule); else the service's only HTTP port; else the
        listener's port (a service outside the registry, or ambiguity validation reports).
        """
        self._calls.append((destination, path))
        host = resolve_host(destination.host, vs.namespace)
        explicit = destination.port.number if destination.port is not None else None
        events = self._events
        # Recording, the service is kept whether or not the port needs it: what the routes are reused by.
        service = None if explicit is not None and events is None else self._scope.service(host)
        number = int(explicit) if explicit is not None else _default_destination_port(service, listener_port=port)
        subset = destination.subset
        if events is None:
            return self._clusters.ensure(host=host, port=number, subset=subset, referrer=vs, path=path)
        # Recorded as a call, not as what it reported: replayed, it reports (or not) as it would here.
        events.append(EnsureCall(host=host, port=number, subset=subset, path=path))
        self._services.append(service)
        name = cluster_name(host=host, port=number, subset=subset)
        if name in self._clusters.cluster_items:
            return name  # made already: ensure would report nothing
        self._notes.record(None)
        try:
            return self._clusters.ensure(host=host, port=number, subset=subset, referrer=vs, path=path)
        finally:
            self._notes.record(events)

    def _about(self, vs: Resource[VirtualServiceSpec], *, path: str, message: str, hint: str = "") -> None:
        """A note about ``vs`` made while building its routes (not through the clusters): they make no template."""
        self._noted = True
        self._notes.about(vs, path=path, message=message, hint=hint)

    def _redirect(self, out: rc.Route, redirect: HTTPRedirect, *, vs: Resource[VirtualServiceSpec], path: str) -> None:
        action = out.redirect
        action.SetInParent()
        if redirect.uri:
            action.path_redirect = redirect.uri
        if redirect.authority:
            action.host_redirect = redirect.authority
        if redirect.scheme:
            action.scheme_redirect = redirect.scheme
        if redirect.port is not None:
            scheme = redirect.scheme or "http"
            # The default port of the scheme is left implicit, as Istio does.
            if not ((redirect.port == 80 and scheme == "http") or (redirect.port == 443 and scheme == "https")):
                action.port_redirect = redirect.port
        code = redirect.redirect_code or 301
        if code not in _REDIRECT_CODES:
            self._about(
                vs,
                path=f"{path}.redirectCode",
                message=f"redirect code {code} is not supported by Envoy: 301 is sent instead",
                hint="use 301, 302, 303, 307 or 308",
            )
            code = 301
        action.response_code = _REDIRECT_CODES[code]

    def _fault(
        self, fault: HTTPFaultInjection, *, vs: Resource[VirtualServiceSpec], path: str
    ) -> fault_pb2.HTTPFault | None:
        out = fault_pb2.HTTPFault()
        delay = fault.delay
        if delay is not None:
            if delay.fixed_delay is None:
                self._about(
                    vs,
                    path=f"{path}.delay",
                    message="a delay without fixedDelay is not translated: no delay is injected",
                    hint="set fixedDelay (exponentialDelay is not supported)",
                )
            else:
                out.delay.CopyFrom(
                    common_fault_pb2.FaultDelay(
                        fixed_delay=duration(delay.fixed_delay.nanos),
                        percentage=(
                            _fraction(delay.percentage)
                            if delay.percentage is not None
                            else _hundredths(delay.percent or 0)
                        ),
                    )
                )
        abort = fault.abort
        if abort is not None:
            if abort.http_status is None:
                self._about(
                    vs,
                    path=f"{path}.abort",
                    message="an abort without httpStatus is not translated: no abort is injected",
                    hint="set httpStatus (grpcStatus and http2Error are not supported)",
                )
            else:
                out.abort.http_status = abort.http_status
                if abort.percentage is not None:
                    out.abort.percentage.CopyFrom(_fraction(abort.percentage))
        if not out.HasField("delay") and not out.HasField("abort"):
            return None
        return out


class _Last:
    """The routes :class:`RouteBuilder` made or reused last: for ``(id(vs), port)``, as messages (made when asked)."""

    __slots__ = ("encoded", "entry", "key", "routes")

    def __init__(
        self,
        key: tuple[int, int],
        routes: list[rc.Route] | None,
        entry: VirtualServiceRoutes | None,
        encoded: EncodedRoutes,
    ) -> None:
        self.key = key
        self.routes = routes
        self.entry = entry
        self.encoded = encoded


class _RouteTemplate:
    """Routes built for a VirtualService, to make those of others whose HTTP rules differ only in destination hosts.

    ``shape``: :func:`_shape` of its rules. ``calls``: each cluster its routes asked for, in order, as the
    position of the destination (in :func:`_destinations_of` its rules) and the path; ``slots``: the field
    of the messages ``routes`` each cluster name is in, and the call it came from.
    """

    __slots__ = ("calls", "passes", "paths", "routes", "shape", "slots")

    def __init__(
        self,
        *,
        shape: tuple[object, ...],
        routes: list[rc.Route],
        slots: tuple[tuple[Message, str, int], ...],
        calls: tuple[tuple[int, str], ...],
        paths: tuple[str, ...],
        passes: bool,
    ) -> None:
        self.shape = shape
        self.routes = routes
        self.slots = slots
        self.calls = calls
        self.paths = paths
        #: Whether the routes, with every cluster name a placeholder, pass Envoy's constraints.
        self.passes = passes

    @classmethod
    def of(
        cls,
        vs: Resource[VirtualServiceSpec],
        *,
        shape: tuple[object, ...],
        routes: list[rc.Route],
        slots: Sequence[_Slot],
        calls: Sequence[tuple[Destination, str]],
        paths: Sequence[str],
        passes: bool,
    ) -> _RouteTemplate | None:
        """The template of the routes just built for ``vs``, which asked for the clusters of ``calls``.

        None when one destination object is in two places (which one a call read is not known then).
        """
        destinations = _destinations_of(vs.spec.http)
        position = {id(destination): index for index, destination in enumerate(destinations)}
        if len(position) != len(destinations):
            return None
        return cls(
            shape=shape,
            routes=routes,
            slots=tuple((message, field, call) for message, field, _, call in slots),
            calls=tuple((position[id(destination)], path) for destination, path in calls),
            paths=tuple(paths),
            passes=passes,
        )


def _others(kind: type, *left_out: str) -> Callable[[Any], Any]:
    """The values of the fields of a ``kind`` but ``left_out`` (compared, not hashed: model values hold mappings)."""
    return attrgetter(*(field.name for field in dataclasses.fields(kind) if field.name not in left_out))


_RULE = _others(HTTPRoute, "route", "mirror", "mirrors")
_ROUTED = _others(HTTPRouteDestination, "destination")
_MIRRORED = _others(HTTPMirrorPolicy, "destination")
_AIMED = _others(Destination, "host")


def _shape(rules: Sequence[HTTPRoute]) -> tuple[object, ...]:
    """All of ``rules`` but their destinations' hosts: rules of equal shapes make routes alike but for cluster names."""
    return tuple(
        (
            _RULE(rule),
            tuple((_ROUTED(routed), _AIMED(routed.destination)) for routed in rule.route),
            () if rule.mirror is None else (_AIMED(rule.mirror),),
            tuple((_MIRRORED(mirror), _AIMED(mirror.destination)) for mirror in rule.mirrors),
        )
        for rule in rules
    )


def _destinations_of(rules: Sequence[HTTPRoute]) -> list[Destination]:
    """Every destination of ``rules``, in one order: per rule, its mirror, its mirrors', then its routes'."""
    found = []
    for rule in rules:
        if rule.mirror is not None:
            found.append(rule.mirror)
        found.extend(mirror.destination for mirror in rule.mirrors)
        found.extend(routed.destination for routed in rule.route)
    return found


class _DefaultTemplate:
    """The default route, checked once with a placeholder cluster, serialized for any cluster without a message.

    A route serializes its fields in field-number order: ``match`` (1), ``route`` (2), then
    ``name`` (14); its action starts with ``cluster`` (1). So the bytes for a cluster are the
    template's with that one string (and the lengths around it) put in; checked against the
    template's own serialization when made, else every route is serialized as a message.
    """

    __slots__ = ("_action", "_head", "_name", "_passes", "_route")

    def __init__(self, route: rc.Route, *, verdicts: Verdicts) -> None:
        self._route = route
        action = rc.Route()
        action.CopyFrom(route)
        action.route.ClearField("cluster")
        self._action = action.route.SerializeToString(deterministic=True)
        self._head = b"\x0a" + varint(route.match.ByteSize()) + route.match.SerializeToString(deterministic=True)
        self._name = rc.Route(name=route.name).SerializeToString(deterministic=True)
        self._passes = not violations(route, verdicts=verdicts)
        if self._bytes(_PLACEHOLDER) != route.SerializeToString(deterministic=True):
            self._head = b""  # not laid out as above: serialized as a message

    def _bytes(self, cluster: str) -> bytes:
        name = cluster.encode()
        action = b"".join((b"\x0a", varint(len(name)), name, self._action))
        return b"".join((self._head, b"\x12", varint(len(action)), action, self._name))

    def encoded(self, cluster: str) -> EncodedRoutes:
        if self._head:
            data = self._bytes(cluster)
        else:
            self._route.route.cluster = cluster
            data = self._route.SerializeToString(deterministic=True)
        return EncodedRoutes(
            data=_framed(data), references=frozenset((cluster,)), passes=self._passes and bool(cluster)
        )


def _framed(route: bytes) -> bytes:
    """A serialized route as an element of a virtual host's ``routes`` field (tag, length, message)."""
    size = len(route)
    return (_SHORT_ROUTE_HEADS[size] if size < len(_SHORT_ROUTE_HEADS) else _ROUTES_TAG + varint(size)) + route


#: The tag and length of a route shorter than 128 bytes, whose length is one byte, by length.
_SHORT_ROUTE_HEADS = tuple(_ROUTES_TAG + varint(size) for size in range(128))


def _default_destination_port(service: Service | None, *, listener_port: int) -> int:
    if service is None:
        return listener_port
    ports = service.ports
    if len(ports) == 1:
        return ports[0].number
    if any(port.number == listener_port for port in ports):
        return listener_port
    http_ports = [port for port in ports if port.is_http]
    return http_ports[0].number if len(http_ports) == 1 else listener_port


def _route_match(match: HTTPMatchRequest | None, *, into: rc.RouteMatch) -> None:
    """Istio's ``TranslateRouteMatch`` into ``into``: URI → path specifier, headers sorted by name, method as
    ``:method``."""
    out = into
    out.prefix = "/"
    if match is None:
        return
    if match.headers:
        # Names are unique: sorting the pairs sorts by name.
        for name, value in sorted(match.headers.items()):
            _header_matcher(out.headers.add(name=name), value)
    uri = match.uri
    if uri is not None:
        if uri.exact is not None:
            out.path = uri.exact
        elif uri.prefix is not None:
            out.prefix = uri.prefix
        elif uri.regex is not None:
            out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=uri.regex))
    if match.ignore_uri_case:
        out.case_sensitive.CopyFrom(wrappers_pb2.BoolValue(value=False))
    if match.method is not None:
        _header_matcher(out.headers.add(name=_METHOD_HEADER), match.method)
    if match.query_params:
        out.query_parameters.extend(_query_matchers(match.query_params.items()))


def _query_matchers(params: Iterable[tuple[str, StringMatch]]) -> list[rc.QueryParameterMatcher]:
    matchers = []
    for name, value in sorted(params, key=lambda item: item[0]):
        if _is_presence(value):
            matchers.append(rc.QueryParameterMatcher(name=name, present_match=True))
        else:
            matchers.append(rc.QueryParameterMatcher(name=name, string_match=_string_matcher(value)))
    return matchers
