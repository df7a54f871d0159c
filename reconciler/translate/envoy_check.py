"""What Envoy would reject in a snapshot, as findings that point at the Istio field responsible.

Every resource of a snapshot is checked against Envoy's own proto constraints
(:mod:`reconciler.translate.constraints`) before anyone may publish it. A violation is
reported at the Istio resource and field the translator built that Envoy resource from
(asked of a ``locate`` function the translator provides); where no Istio source is known,
the finding names the Envoy resource and field path instead. Validation rules catch the
common cases first with friendlier words: these findings are the safety net. Pure.

A :class:`PassCache` remembers which resources (by the digest of their deterministic
bytes) passed, so a resource met again (the clusters every proxy shape shares, the
unchanged services of the next commit, the other side of a diff) is not checked again.
Its owner scopes it (one load, one diff, a daemon's decode cache); nothing is global.
A RouteConfiguration is also remembered per virtual host: a sidecar's one route configuration
holds a virtual host per service port, and a one-host change makes it new, so it is checked as
its own fields plus each virtual host, and only the virtual hosts not seen before are walked.

Clusters and load assignments spliced from a template's bytes
(:class:`~reconciler.translate.snapshot.Spliced`) are walked once per template: the others of it
differ only in their name and their parts, so their name is checked against its fields' own rules
and each distinct part (an endpoint) is walked once. What is not proved so is walked whole, so the
findings (paths, order) are those a walk of every resource gives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Hashable, Iterable
from typing import Any

from envoy.config.route.v3 import route_pb2
from google.protobuf.descriptor import Descriptor

from reconciler.model.config import Resource
from reconciler.model.source import SourceInfo
from reconciler.translate.constraints import Verdicts, field_check, violations
from reconciler.translate.registry import Origin
from reconciler.translate.snapshot import PUSH_ORDER, ROUTE, Snapshot, Spliced, Template
from reconciler.validate.findings import Code, Finding, Severity

__all__ = ["VIRTUAL_HOST", "Locate", "PassCache", "Source", "envoy_findings"]

#: The pass-cache "type" of one virtual host of a RouteConfiguration (checked apart, see :func:`_route_passes`).
VIRTUAL_HOST = ROUTE + "#virtual_host"

#: An Istio resource (or registry origin) and a field path in it.
Source = tuple[Resource[Any] | Origin, str]
#: (xDS type URL, resource name, resource, Envoy field path) → where it came from, if known.
Locate = Callable[[str, str, Any, str], Source | None]


class PassCache:
    """Resources known to break no constraint, by (xDS type, digest of their bytes).

    Only passes are remembered: a resource with a violation is checked again, so its findings
    (located per translation) are never lost. :meth:`retain_used` bounds the size to what the
    last round of checks met.
    """

    def __init__(self) -> None:
        # Digests per type, not (type, digest) pairs: a cold check adds one per resource (80,000 at 10,000
        # services), and strings are no work for the garbage collector where tuples are.
        self._passed: dict[str, set[str]] = {}
        self._used: dict[str, set[str]] = {}
        self._touched: list[Callable[[], Iterable[tuple[str, str]]]] = []

    def __len__(self) -> int:
        """Passes held: resources and route tables' virtual hosts."""
        return sum(map(len, self._passed.values()))

    def known(self, type_url: str, digest: str) -> bool:
        """True when a resource of these bytes passed before (and counts as used this round)."""
        found = self._passed.get(type_url)
        if found is not None and digest in found:
            self._used_of(type_url).add(digest)
            return True
        return False

    def add(self, type_url: str, digest: str) -> None:
        self.add_all(type_url, (digest,))

    def add_all(self, type_url: str, digests: Collection[str]) -> None:
        """:meth:`add` each of ``digests``."""
        self._used_of(type_url).update(digests)
        self._passed.setdefault(type_url, set()).update(digests)

    def _used_of(self, type_url: str) -> set[str]:
        found = self._used.get(type_url)
        if found is None:
            found = self._used[type_url] = set()
        return found

    def touch(self, keys: Callable[[], Iterable[tuple[str, str]]]) -> None:
        """Count the passes ``keys()`` lists as used this round (as if met), computed only when the round ends.

        A patched translation checks only what changed; the rest it holds passed before and is still in use.
        """
        self._touched.append(keys)

    def retain_used(self) -> None:
        """Forget the passes no check since the previous call met; a new round starts."""
        for keys in self._touched:
            for type_url, digest in keys():
                found = self._passed.get(type_url)
                if found is not None and digest in found:
                    self._used_of(type_url).add(digest)
        self._passed, self._used, self._touched = self._used, {}, []


def envoy_findings(snapshot: Snapshot, *, locate: Locate, passed: PassCache | None = None) -> list[Finding]:
    """An error finding (RC0203) per constraint an emitted resource breaks; empty when Envoy would accept all.

    With ``passed``, a resource whose bytes passed before is not checked again, and one that passes is added.
    A resource spliced from a template (:class:`~reconciler.translate.snapshot.Spliced`) passes without a walk
    when one of its template passed whole and its name and parts pass (:class:`_Construction`).
    """
    found: list[Finding] = []
    verdicts = Verdicts()  # resources share most parts: each distinct part is walked once
    construction = _Construction(verdicts)
    for type_url in PUSH_ORDER:
        # Added to ``passed`` per type, at once (none of a type has the bytes of another).
        fresh: list[str] = []
        for name, item in snapshot.sets[type_url].items.items():
            digest = item.version
            if passed is not None and passed.known(type_url, digest):
                continue
            made = item.made
            if made is not None and construction.passes(made, name):
                fresh.append(digest)
                continue
            resource = item.message
            if passed is not None and type_url == ROUTE and _route_passes(resource, passed, verdicts):
                fresh.append(digest)
                continue
            broken = violations(resource, verdicts=verdicts)
            if not broken:
                fresh.append(digest)
                if made is not None:
                    construction.learn(made)
            for violation in broken:
                kind = type_url.rsplit(".", 1)[-1]
                envoy_field = f"{kind} {name!r} {violation.path}"
                message = f"Envoy would reject {envoy_field}: {violation.message}"
                found.append(_finding(locate(type_url, name, resource, violation.path), message))
        if passed is not None:
            passed.add_all(type_url, fresh)
    return found


class _Construction:
    """Which spliced resources pass by how they were made, for one round of checks.

    A spliced resource differs from the others of its template only in the fields that hold its
    name and in its parts. Once one of them passes a whole walk, the template's own fields pass
    in all of them (the checks are per field, and the counts of the varying repeated fields are
    unchecked, else no template is trusted); what is left is its name, against those fields' own
    rules, and each distinct part, checked once however many resources hold it: the same way,
    walked whole until one of its shape passes, then only its values. Anything not proved so is
    walked whole, so what is reported never depends on this.
    """

    __slots__ = ("_checks", "_parts", "_shapes", "_templates", "_verdicts")

    def __init__(self, verdicts: Verdicts) -> None:
        self._verdicts = verdicts
        #: Templates one of whose resources passed whole, with the checks of their name fields.
        self._templates: dict[Template, tuple[Callable[[Any], str], ...]] = {}
        #: Per part's bytes, whether it passes; the shapes (per template) one part of which passed whole.
        self._parts: dict[bytes, bool] = {}
        self._shapes: set[tuple[Template, Hashable]] = set()
        self._checks: dict[tuple[Descriptor, str], Callable[[Any], str] | None] = {}

    def learn(self, made: Spliced) -> None:
        """A resource ``made`` so passed a whole walk."""
        template = made.template
        if template in self._templates or any(self._check(*counted) is not None for counted in template.counted):
            return
        self._templates[template] = tuple(
            check for check in (self._check(*named) for named in template.named) if check is not None
        )

    def passes(self, made: Spliced, name: str) -> bool:
        """True when the resource named ``name`` and ``made`` so is known to break nothing."""
        checks = self._templates.get(made.template)
        if checks is None:
            return False
        for check in checks:
            if check(name):
                return False
        parts = self._parts
        for data in made.parts:
            verdict = parts.get(data)
            if verdict is None:
                verdict = parts[data] = self._part_passes(made.template, data)
            if not verdict:
                return False
        return True

    def _part_passes(self, template: Template, data: bytes) -> bool:
        assert template.part is not None
        part = template.part(data)
        shape = (template, part.shape)
        if shape in self._shapes:
            for descriptor, field, value in part.values:
                check = self._check(descriptor, field)
                if check is not None and check(value):
                    break
            else:
                return True
        if violations(part.message, verdicts=self._verdicts):
            return False
        self._shapes.add(shape)
        return True

    def _check(self, descriptor: Descriptor, field: str) -> Callable[[Any], str] | None:
        key = (descriptor, field)
        if key not in self._checks:
            self._checks[key] = field_check(descriptor, field)
        return self._checks[key]


def _route_passes(config: route_pb2.RouteConfiguration, passed: PassCache, verdicts: Verdicts) -> bool:
    """Whether ``config`` breaks no constraint, walking only the virtual hosts ``passed`` has not seen.

    The route configuration's own fields and each virtual host together are the whole check
    (:func:`violations` ``without``). False on any violation: the caller then walks it whole,
    so what is reported (paths, order) never depends on the cache.
    """
    if violations(config, without="virtual_hosts", verdicts=verdicts):
        return False
    fresh = []
    for vhost in config.virtual_hosts:
        digest = hashlib.sha256(vhost.SerializeToString(deterministic=True)).hexdigest()
        if not passed.known(VIRTUAL_HOST, digest):
            if violations(vhost, verdicts=verdicts):
                return False
            fresh.append(digest)
    for digest in fresh:
        passed.add(VIRTUAL_HOST, digest)
    return True


def _finding(source: Source | None, message: str) -> Finding:
    if source is None:
        return Finding(code=Code.ENVOY_WOULD_REJECT, severity=Severity.ERROR, message=message, file="", line=0)
    subject, path = source
    info: SourceInfo | None
    if isinstance(subject, Resource):
        kind, namespace, name, info = subject.kind.value, subject.namespace, subject.name, subject.source
    else:
        kind, namespace, name, info = subject.kind, subject.namespace, subject.name, subject.source
    return Finding(
        code=Code.ENVOY_WOULD_REJECT,
        severity=Severity.ERROR,
        message=message,
        file=info.file if info is not None else "",
        line=info.line_of(path) if info is not None else 0,
        path=path,
        kind=kind,
        namespace=namespace,
        name=name,
    )
