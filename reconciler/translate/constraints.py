"""Envoy's own field constraints, checked on the resources we emit before any proxy sees them.

Envoy's API protos carry protoc-gen-validate (PGV) annotations (``[(validate.rules).uint32 =
{lte: 100}]``, ``[(validate.required) = true]`` on oneofs, ...) and Envoy NACKs a resource
that breaks one. This module reads the same annotations from the message descriptors (the
``validate_pb2`` extensions ship with xds-protos) and evaluates them in Python, so a
violation becomes a finding before publishing instead of a NACK after it. It also checks
what Envoy checks beyond PGV on every message: a ``google.protobuf.Duration`` must lie in
Envoy's range (seconds below 2^63 ns), and the weights of one ``weighted_clusters`` must sum to at most 2^32-1.

Why our own evaluator and not the ``protoc-gen-validate`` package: that package generates and
``exec``s Python source per message type, installs a top-level ``validate`` package that
overwrites the ``validate_pb2`` xds-protos ships, and reports only the first violation,
without a field path. Reading the descriptors gives every violation with its Envoy field
path (which is how a violation is traced back to the Istio field), no new dependency, and
the speed of a per-type plan built once. The rule kinds Envoy's emitted types use are
all supported (a test walks every type we emit and fails on one we do not know).

Speed: each message type's plan is compiled once into a walker that runs only the field checks
that can fail on what ``ListFields`` lists (plus those that fail on an unset field) and descends
only into fields below which something is checked. A :class:`Verdicts` memo, kept for one round
of checks, skips parts equal (same bytes) to parts that passed before: resources repeat their
circuit breakers, config sources, retry policies and endpoints.

Pure: the per-descriptor plans are a cache of immutable descriptor facts; a memo is the caller's.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import re2
from google.protobuf import any_pb2, descriptor_pool, duration_pb2, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from validate import validate_pb2

from reconciler.validate.rules.header_format import HEADER_NAME

__all__ = [
    "MAX_DURATION_SECONDS",
    "MAX_UINT32",
    "SUPPORTED_RULES",
    "Verdicts",
    "Violation",
    "field_check",
    "rules_used",
    "violations",
]

#: Envoy's Duration range: whole seconds up to 2^63 ns (about 292 years), inside protobuf's 10,000 years.
MAX_DURATION_SECONDS = 9_223_372_035
_MAX_DURATION_NANOS = 999_999_999
#: The largest ``uint32``: route weights, retry counts and circuit-breaker limits are uint32 in Envoy.
MAX_UINT32 = 2**32 - 1

_WRAPPERS = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
_ANY = "google.protobuf.Any"
_DURATION = "google.protobuf.Duration"
_WEIGHTED_CLUSTER = "envoy.config.route.v3.WeightedCluster"

# PGV's well-known regexes for HTTP headers (validate.proto), strict and loose; the strict name is HEADER_NAME.
_HEADER_VALUE_STRICT = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]*$")
_HEADER_LOOSE = re.compile(r"^[^\x00\x0a\x0d]*$")
_HOSTNAME_LABEL = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")

#: Every rule kind (``<type>.<rule>``) the evaluator applies; ``rules_used`` lists what a type needs.
SUPPORTED_RULES = frozenset(
    {
        *(
            f"{kind}.{rule}"
            for kind in (
                "float",
                "double",
                "int32",
                "int64",
                "uint32",
                "uint64",
                "sint32",
                "sint64",
                "fixed32",
                "fixed64",
                "sfixed32",
                "sfixed64",
            )
            for rule in ("const", "lt", "lte", "gt", "gte", "in", "not_in", "ignore_empty")
        ),
        "bool.const",
        *(
            f"string.{rule}"
            for rule in (
                "const",
                "len",
                "min_len",
                "max_len",
                "len_bytes",
                "min_bytes",
                "max_bytes",
                "pattern",
                "prefix",
                "suffix",
                "contains",
                "not_contains",
                "in",
                "not_in",
                "well_known_regex",
                "strict",
                "ignore_empty",
                "ip",
                "ipv4",
                "ipv6",
                "hostname",
                "address",
            )
        ),
        *(
            f"bytes.{rule}"
            for rule in ("const", "len", "min_len", "max_len", "prefix", "suffix", "contains", "in", "not_in")
        ),
        *(f"enum.{rule}" for rule in ("const", "defined_only", "in", "not_in")),
        *(f"repeated.{rule}" for rule in ("min_items", "max_items", "unique", "items", "ignore_empty")),
        *(f"map.{rule}" for rule in ("min_pairs", "max_pairs", "no_sparse", "keys", "values", "ignore_empty")),
        *(f"any.{rule}" for rule in ("required", "in", "not_in")),
        *(f"duration.{rule}" for rule in ("required", "const", "lt", "lte", "gt", "gte", "in", "not_in")),
        "message.required",
        "message.skip",
    }
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken constraint: the Envoy field path inside the resource, and what is wrong."""

    path: str
    message: str


_Check = Callable[[Any], str]  # a value → "" when fine, else what is wrong
_Found = list[tuple["_Path", str]]  # (field path, problem), in the order met


class Verdicts:
    """Sub-messages known to break nothing, by type and bytes: what one round of checks need not walk twice.

    Resources share most of their parts (every cluster of a policy has the same circuit breakers and
    config source, every route the same retry policy, a subset's endpoints are also the default
    cluster's): equal bytes are an equal message, so its verdict holds wherever it appears again. A
    type whose parts rarely repeat and are cheap to walk stops being remembered after a few tries,
    so small unique parts cost no serialization (a deep part is worth its bytes even when it repeats
    only late, as a default cluster's endpoints repeat its subsets' after all of those). Only passes
    are kept: a part with a violation is walked wherever it is, so what is reported (paths, order)
    never depends on this memo. Its owner scopes it (one round).
    """

    __slots__ = ("_clean", "_given_up", "_tries", "_visits")

    #: Tries after which a type repeated in fewer than a quarter of them, and cheap to walk, is no longer remembered.
    TRIES = 64
    #: Parts visited per walk from which a type is remembered however rarely it repeats: serializing one
    #: costs a fraction of walking it.
    DEEP = 4

    def __init__(self) -> None:
        self._clean: dict[_Compiled, set[bytes]] = {}
        #: Per type still being judged: [tries, repeats, parts visited by its walks].
        self._tries: dict[_Compiled, list[int]] = {}
        self._given_up: set[_Compiled] = set()
        self._visits = 0

    def walk(self, walker: _Compiled, message: Message, path: _Path, found: _Found) -> None:
        """``walker.walk`` unless an equal ``message`` passed before."""
        self._visits += 1
        if walker in self._given_up:
            walker.walk(message, path, found, None, self)
            return
        clean = self._clean.get(walker)
        if clean is None:
            clean = self._clean[walker] = set()
            self._tries[walker] = [0, 0, 0]
        tries = self._tries.get(walker)
        key = message.SerializeToString()
        visits = self._visits
        if key in clean:
            repeated = True
        else:
            repeated = False
            before = len(found)
            walker.walk(message, path, found, None, self)
            if len(found) == before:
                clean.add(key)
        if tries is not None:
            tries[0] += 1
            tries[1] += repeated
            tries[2] += self._visits - visits + 1
            if (
                tries[0] >= self.TRIES
                # A type containing itself may have been judged by the walk just made.
                and self._tries.pop(walker, None) is not None
                and tries[1] * 4 < tries[0]
                and tries[2] < self.DEEP * (tries[0] - tries[1])
            ):
                self._given_up.add(walker)
                del self._clean[walker]


def violations(message: Message, *, without: str | None = None, verdicts: Verdicts | None = None) -> list[Violation]:
    """Every constraint ``message`` (and everything inside it, ``Any`` unpacked) breaks; empty when Envoy-valid.

    ``without`` names a message field of ``message`` whose messages are not descended into (the
    field's own rules, such as its item count, still apply): a caller checks them one by one, so
    a large resource's unchanged parts need not be walked again. Together the two are the whole check.
    With ``verdicts``, parts of ``message`` equal to parts that passed before are not walked again
    (the result is the same).
    """
    found: _Found = []
    _walker(message.DESCRIPTOR).walk(message, None, found, without, verdicts)
    return [Violation(path=_format(path), message=problem) for path, problem in found]


def field_check(descriptor: Descriptor, name: str) -> Callable[[Any], str] | None:
    """The check the walk makes of scalar or repeated field ``name`` of a ``descriptor`` message when it is set.

    It takes the field's value and says what is wrong ("" when nothing); None when the field has no
    rules. A caller that knows a message equals one that passed but for this field checks only the value.
    """
    for field_name, mode, check in _own(descriptor).checks:
        if field_name == name:
            if mode == _FROM_MESSAGE:
                raise ValueError(f"{descriptor.full_name}.{name} is a message field: its check reads the message")
            return check
    return None


def rules_used(descriptor: Descriptor) -> frozenset[str]:
    """The rule kinds (``<type>.<rule>``) annotated on ``descriptor`` and every message type it contains."""
    used: set[str] = set()
    seen: set[str] = set()
    pending = [descriptor]
    while pending:
        current = pending.pop()
        if current.full_name in seen:
            continue
        seen.add(current.full_name)
        for field in current.fields:
            rules = _field_rules(field)
            if rules is not None:
                used.update(_rule_names(rules))
            if field.message_type is not None:
                pending.append(field.message_type)
    return frozenset(used)


def _rule_names(rules: validate_pb2.FieldRules) -> Iterator[str]:
    kind = rules.WhichOneof("type")
    if kind is None:
        return
    typed = getattr(rules, kind)
    for field, value in typed.ListFields():
        yield f"{kind}.{field.name}"
        if field.name in ("items", "keys", "values"):
            yield from _rule_names(value)


# -- walking -------------------------------------------------------------------------------------

# A field path as a linked list of segments (``("virtual_hosts", 3)``...), formatted only when
# something is reported: most resources have no violation, and most fields are never named.
_Path = tuple[Any, str | int] | None

_SINGLE, _LIST, _MAP = 1, 2, 3
#: How a field check reads its field: from the message (it tests presence itself), the field's value, or the
#: value only when the field is set (a oneof member or an optional scalar, checked only when set, as PGV does).
_FROM_MESSAGE, _VALUE, _VALUE_WHEN_SET = 1, 2, 3


@functools.cache
def _walker(descriptor: Descriptor) -> _Compiled:
    """The check of a message of this type and everything below it, specialised once per type."""
    return _Compiled(descriptor)


class _Compiled:
    """One type's plan, flattened for the walk: only annotated fields, only subtrees that check something.

    A field check that passes on the field's default value is run only when ``ListFields`` lists
    the field (an unset field reads as its default), with the value that call returns; the others
    (a required field, a minimum length) run on every message. Problems are reported in the
    fields' declaration order whichever way they were found.
    """

    __slots__ = ("_always", "_checks", "_children", "_descriptor", "_listed", "_oneofs", "_special", "_unpack")

    def __init__(self, descriptor: Descriptor) -> None:
        plan = _plan(descriptor)
        self._descriptor = descriptor
        self._checks = plan.checks
        self._oneofs = plan.required_oneofs
        self._special = plan.special
        self._unpack = plan.unpack
        # Resolved on first use: message types may contain themselves, and building a default needs the class.
        self._always: tuple[tuple[int, str, int, _Check], ...] | None = None
        # Keyed by the field descriptors ``ListFields`` returns (cheaper than reading their names).
        self._listed: dict[FieldDescriptor, tuple[int, str, _Check]] = {}
        self._children: dict[FieldDescriptor, tuple[str, int, _Compiled]] = {}

    def _resolve(self) -> tuple[tuple[int, str, int, _Check], ...]:
        # Built aside and published together, ``_always`` last: a walk in another thread sees all or nothing.
        default = message_factory.GetMessageClass(self._descriptor)()
        always = []
        fields = self._descriptor.fields_by_name
        listed: dict[FieldDescriptor, tuple[int, str, _Check]] = {}
        for index, (name, mode, check) in enumerate(self._checks):
            if mode == _FROM_MESSAGE or (mode == _VALUE and check(getattr(default, name))):
                always.append((index, name, mode, check))
            else:
                listed[fields[name]] = (index, name, check)
        children: dict[FieldDescriptor, tuple[str, int, _Compiled]] = {}
        for name, shape in _plan(self._descriptor).children.items():
            child = fields[name].message_type
            assert child is not None
            if shape == _MAP:
                child = child.fields_by_name["value"].message_type
                assert child is not None
            children[fields[name]] = (name, shape, _walker(child))
        self._listed, self._children = listed, children
        self._always = tuple(always)
        return self._always

    def walk(self, message: Message, path: _Path, found: _Found, without: str | None, memo: Verdicts | None) -> None:
        """Append what ``message`` breaks to ``found``; ``without`` names a message field not descended into."""
        if self._special is not None:
            self._special(message, path, found)
        for oneof in self._oneofs:
            if message.WhichOneof(oneof) is None:
                found.append(((path, oneof), f"one of the {oneof} fields is required"))
        always = self._always
        if always is None:
            always = self._resolve()
        # Made only when something is wrong: most walks find nothing.
        problems: list[tuple[int, str, str]] | None = None
        for index, name, mode, check in always:
            problem = check(message) if mode == _FROM_MESSAGE else check(getattr(message, name))
            if problem:
                problems = problems if problems is not None else []
                problems.append((index, name, problem))
        listed, children = self._listed, self._children
        fields = message.ListFields() if listed or children else ()
        if listed:
            for field, value in fields:
                entry = listed.get(field)
                if entry is not None:
                    problem = entry[2](value)
                    if problem:
                        problems = problems if problems is not None else []
                        problems.append((entry[0], entry[1], problem))
        if problems is not None:
            found.extend(((path, name), problem) for _, name, problem in sorted(problems))
        if self._unpack:
            inner = _unpacked(message)  # type: ignore[arg-type]
            if inner is not None:
                _walker(inner.DESCRIPTOR).walk(inner, path, found, None, memo)
        if not children:
            return
        for field, value in fields:
            child_entry = children.get(field)
            if child_entry is None:
                continue
            name, shape, child = child_entry
            if name == without:
                continue
            if shape == _SINGLE:
                _walk_one(value, child, (path, name), found, memo)
            elif shape == _LIST:
                _walk_list(value, child, (path, name), found, memo)
            else:
                _walk_map(value, child, (path, name), found, memo)


def _walk_one(message: Message, walker: _Compiled, path: _Path, found: _Found, memo: Verdicts | None) -> None:
    if memo is None:
        walker.walk(message, path, found, None, None)
    else:
        memo.walk(walker, message, path, found)


def _walk_list(values: Any, walker: _Compiled, path: _Path, found: _Found, memo: Verdicts | None) -> None:
    # _walk_one inlined: lists hold most of the parts walked.
    if memo is None:
        for index, item in enumerate(values):
            walker.walk(item, (path, index), found, None, None)
    else:
        visit = memo.walk
        for index, item in enumerate(values):
            visit(walker, item, (path, index), found)


def _walk_map(values: Any, walker: _Compiled, path: _Path, found: _Found, memo: Verdicts | None) -> None:
    for key in sorted(values):
        _walk_one(values[key], walker, (path, f'["{key}"]'), found, memo)


def _format(path: _Path) -> str:
    parts: list[str | int] = []
    while path is not None:
        path, part = path
        parts.append(part)
    out = ""
    for part in reversed(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("["):
            out += part
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True, slots=True)
class _Own:
    """What one message type checks on its own fields."""

    #: (field name, how the check reads it, check) for every annotated field, set or not.
    checks: tuple[tuple[str, int, _Check], ...]
    required_oneofs: tuple[str, ...]
    #: Message fields not to descend into (``message.skip``).
    skip: frozenset[str]
    #: Checks Envoy makes on this type beyond its annotations.
    special: Callable[[Message, _Path, _Found], None] | None

    @property
    def empty(self) -> bool:
        return not (self.checks or self.required_oneofs or self.special)


@dataclass(frozen=True, slots=True)
class _Plan:
    checks: tuple[tuple[str, int, _Check], ...]
    required_oneofs: tuple[str, ...]
    special: Callable[[Message, _Path, _Found], None] | None
    #: An ``Any``: checked as the message it holds.
    unpack: bool
    #: Message fields worth descending into (something below them is checked), by shape.
    children: dict[str, int]


@functools.cache
def _plan(descriptor: Descriptor) -> _Plan:
    own = _own(descriptor)
    children: dict[str, int] = {}
    for field in descriptor.fields:
        child = field.message_type
        if child is None or field.name in own.skip:
            continue
        if child.GetOptions().map_entry:
            value_type = child.fields_by_name["value"].message_type
            if value_type is not None and _checks_anything(value_type):
                children[field.name] = _MAP
        elif _checks_anything(child):
            children[field.name] = _LIST if field.is_repeated else _SINGLE
    return _Plan(
        checks=own.checks,
        required_oneofs=own.required_oneofs,
        special=own.special,
        unpack=descriptor.full_name == _ANY,
        children=children,
    )


@functools.cache
def _checks_anything(descriptor: Descriptor) -> bool:
    """Whether a message of this type, or any message type reachable from it, has something to check."""
    seen: set[str] = set()
    pending = [descriptor]
    while pending:
        current = pending.pop()
        if current.full_name in seen:
            continue
        seen.add(current.full_name)
        if current.full_name == _ANY or not _own(current).empty:
            return True
        pending.extend(field.message_type for field in current.fields if field.message_type is not None)
    return False


@functools.cache
def _own(descriptor: Descriptor) -> _Own:
    special = _SPECIAL.get(descriptor.full_name)
    options = descriptor.GetOptions()
    if options.Extensions[validate_pb2.disabled] or options.Extensions[validate_pb2.ignored]:
        return _Own(checks=(), required_oneofs=(), skip=frozenset(), special=special)
    checks: list[tuple[str, int, _Check]] = []
    skip: set[str] = set()
    for field in descriptor.fields:
        rules = _field_rules(field)
        if rules is None:
            continue
        if rules.HasField("message") and rules.message.skip:
            skip.add(field.name)
        # A oneof member or an optional scalar is checked only when set, as PGV does.
        optional = field.containing_oneof is not None or (field.message_type is None and field.has_presence)
        check = _field_check(field, rules, optional=optional)
        if check is not None:
            checks.append((field.name, *check))
    required = tuple(oneof.name for oneof in descriptor.oneofs if oneof.GetOptions().Extensions[validate_pb2.required])
    return _Own(checks=tuple(checks), required_oneofs=required, skip=frozenset(skip), special=special)


def _field_rules(field: FieldDescriptor) -> validate_pb2.FieldRules | None:
    options = field.GetOptions()
    if not options.HasExtension(validate_pb2.rules):
        return None
    rules: validate_pb2.FieldRules = options.Extensions[validate_pb2.rules]
    return rules


# -- one field's check ---------------------------------------------------------------------------


def _field_check(
    field: FieldDescriptor, rules: validate_pb2.FieldRules, *, optional: bool
) -> tuple[int, _Check] | None:
    """The check of one annotated field, and how it reads the field (``_VALUE``...)."""
    if field.is_repeated:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            whole = _map_check(field, rules)
        else:
            whole = _repeated_check(field, rules)
        return None if whole is None else (_VALUE, whole)
    if field.message_type is None:
        scalar = _scalar_check(field, rules)
        return None if scalar is None else (_VALUE_WHEN_SET if optional else _VALUE, scalar)
    return _message_field_check(field, rules, optional=optional)


def _message_field_check(
    field: FieldDescriptor, rules: validate_pb2.FieldRules, *, optional: bool
) -> tuple[int, _Check] | None:
    kind = rules.WhichOneof("type")
    name = field.name
    message_type = field.message_type
    assert message_type is not None
    wrapper = message_type.full_name in _WRAPPERS
    required = (kind == "message" and rules.message.required) or (
        kind in ("duration", "any") and getattr(rules, kind).required
    )
    inner: _Check | None = None
    if wrapper:
        inner = _scalar_check(message_type.fields_by_name["value"], rules)
    elif kind == "duration":
        inner = _duration_check(rules.duration)
    elif kind == "any":
        inner = _any_check(rules.any)
    value_check: _Check | None = None
    if inner is not None:
        value_check = (lambda value: inner(value.value)) if wrapper else inner
    if optional or not required:
        # A set oneof member is never missing; an unset field that is not required has nothing to check.
        return None if value_check is None else (_VALUE_WHEN_SET, value_check)

    def check(message: Message) -> str:
        if not message.HasField(name):
            return "is required"
        return "" if value_check is None else value_check(getattr(message, name))

    return _FROM_MESSAGE, check


def _repeated_check(field: FieldDescriptor, rules: validate_pb2.FieldRules) -> _Check | None:
    if not rules.HasField("repeated"):
        return None
    repeated = rules.repeated
    items = _item_check(field, repeated.items) if repeated.HasField("items") else None
    min_items = repeated.min_items if repeated.HasField("min_items") else None
    max_items = repeated.max_items if repeated.HasField("max_items") else None
    unique = repeated.unique
    ignore_empty = repeated.ignore_empty

    def check(values: Any) -> str:
        count = len(values)
        if ignore_empty and not count:
            return ""
        if min_items is not None and count < min_items:
            return f"needs at least {min_items} item(s), has {count}"
        if max_items is not None and count > max_items:
            return f"allows at most {max_items} item(s), has {count}"
        if unique and len({_hashable(value) for value in values}) != count:
            return "items must be unique"
        if items is not None:
            for index, value in enumerate(values):
                problem = items(value)
                if problem:
                    return f"[{index}] {problem}"
        return ""

    return check


def _map_check(field: FieldDescriptor, rules: validate_pb2.FieldRules) -> _Check | None:
    if not rules.HasField("map"):
        return None
    rule = rules.map
    entry = field.message_type
    assert entry is not None
    keys = _item_check(entry.fields_by_name["key"], rule.keys) if rule.HasField("keys") else None
    values = _item_check(entry.fields_by_name["value"], rule.values) if rule.HasField("values") else None
    min_pairs = rule.min_pairs if rule.HasField("min_pairs") else None
    max_pairs = rule.max_pairs if rule.HasField("max_pairs") else None
    ignore_empty = rule.ignore_empty

    def check(mapping: Any) -> str:
        count = len(mapping)
        if ignore_empty and not count:
            return ""
        if min_pairs is not None and count < min_pairs:
            return f"needs at least {min_pairs} entr(ies), has {count}"
        if max_pairs is not None and count > max_pairs:
            return f"allows at most {max_pairs} entr(ies), has {count}"
        for key in sorted(mapping):
            problem = (keys(key) if keys is not None else "") or (values(mapping[key]) if values is not None else "")
            if problem:
                return f'["{key}"] {problem}'
        return ""

    return check


def _item_check(field: FieldDescriptor, rules: validate_pb2.FieldRules) -> _Check | None:
    """The check of one item of a repeated field or map (a scalar, or a message's own value rules)."""
    if field.message_type is None:
        return _scalar_check(field, rules)
    if field.message_type.full_name in _WRAPPERS:
        scalar = _scalar_check(field.message_type.fields_by_name["value"], rules)
        return None if scalar is None else lambda value: scalar(value.value)
    if rules.HasField("duration"):
        return _duration_check(rules.duration)
    if rules.HasField("any"):
        return _any_check(rules.any)
    return None  # message items are walked into anyway


def _hashable(value: Any) -> Any:
    return value.SerializeToString(deterministic=True) if isinstance(value, Message) else value


# -- scalar rules ----------------------------------------------------------------------------------


def _scalar_check(field: FieldDescriptor, rules: validate_pb2.FieldRules) -> _Check | None:
    kind = rules.WhichOneof("type")
    if kind is None:
        return None
    typed = getattr(rules, kind)
    if kind == "string":
        return _string_check(typed)
    if kind == "bytes":
        return _bytes_check(typed)
    if kind == "enum":
        return _enum_check(typed, field)
    if kind == "bool":
        expected = typed.const if typed.HasField("const") else None
        return None if expected is None else lambda value: "" if value == expected else f"must be {expected}"
    if kind in ("message", "repeated", "map", "any", "duration", "timestamp"):
        return None
    return _number_check(typed)


def _number_check(rules: Any) -> _Check | None:
    conditions: list[tuple[Callable[[Any], bool], str]] = []
    for rule, test, words in (
        ("const", lambda v, bound: v == bound, "must equal"),
        ("lt", lambda v, bound: v < bound, "must be less than"),
        ("lte", lambda v, bound: v <= bound, "must be at most"),
        ("gt", lambda v, bound: v > bound, "must be greater than"),
        ("gte", lambda v, bound: v >= bound, "must be at least"),
    ):
        if rules.HasField(rule):
            bound = getattr(rules, rule)
            conditions.append((functools.partial(test, bound=bound), f"{words} {bound}"))
    allowed = tuple(getattr(rules, "in"))
    banned = tuple(rules.not_in)
    if allowed:
        conditions.append((lambda v: v in allowed, f"must be one of {list(allowed)}"))
    if banned:
        conditions.append((lambda v: v not in banned, f"must not be one of {list(banned)}"))
    ignore_empty = rules.ignore_empty if rules.DESCRIPTOR.fields_by_name.get("ignore_empty") else False
    return _all_of(conditions, ignore_empty=ignore_empty, show=repr)


def _string_check(rules: validate_pb2.StringRules) -> _Check | None:
    conditions: list[tuple[Callable[[str], bool], str]] = []
    has = rules.HasField
    if has("const"):
        conditions.append((lambda v: v == rules.const, f"must equal {rules.const!r}"))
    if has("len"):
        conditions.append((lambda v: len(v) == rules.len, f"must be {rules.len} characters long"))
    if has("min_len"):
        conditions.append((lambda v: len(v) >= rules.min_len, f"must be at least {rules.min_len} character(s) long"))
    if has("max_len"):
        conditions.append((lambda v: len(v) <= rules.max_len, f"must be at most {rules.max_len} characters long"))
    if has("len_bytes"):
        conditions.append((lambda v: len(v.encode()) == rules.len_bytes, f"must be {rules.len_bytes} bytes long"))
    if has("min_bytes"):
        conditions.append((lambda v: len(v.encode()) >= rules.min_bytes, f"must be at least {rules.min_bytes} bytes"))
    if has("max_bytes"):
        conditions.append(
            (lambda v: len(v.encode()) <= rules.max_bytes, f"must be at most {rules.max_bytes} bytes long")
        )
    if has("pattern"):
        pattern = re2.compile(rules.pattern)
        conditions.append((lambda v: pattern.search(v) is not None, f"must match the pattern {rules.pattern!r}"))
    if has("prefix"):
        conditions.append((lambda v: v.startswith(rules.prefix), f"must start with {rules.prefix!r}"))
    if has("suffix"):
        conditions.append((lambda v: v.endswith(rules.suffix), f"must end with {rules.suffix!r}"))
    if has("contains"):
        conditions.append((lambda v: rules.contains in v, f"must contain {rules.contains!r}"))
    if has("not_contains"):
        conditions.append((lambda v: rules.not_contains not in v, f"must not contain {rules.not_contains!r}"))
    allowed, banned = tuple(getattr(rules, "in")), tuple(rules.not_in)
    if allowed:
        conditions.append((lambda v: v in allowed, f"must be one of {list(allowed)}"))
    if banned:
        conditions.append((lambda v: v not in banned, f"must not be one of {list(banned)}"))
    well_known = rules.WhichOneof("well_known")
    if well_known is not None:
        conditions.append(_well_known(rules, well_known))
    return _all_of(conditions, ignore_empty=rules.ignore_empty, show=_shown)


def _well_known(rules: validate_pb2.StringRules, which: str) -> tuple[Callable[[str], bool], str]:
    if which == "well_known_regex":
        # PGV's default is strict; Envoy's annotations mostly say strict: false.
        strict = rules.strict if rules.HasField("strict") else True
        if rules.well_known_regex == validate_pb2.HTTP_HEADER_NAME:
            if strict:
                return (lambda v: HEADER_NAME.fullmatch(v) is not None, "must be a valid HTTP header name")
            return (lambda v: _HEADER_LOOSE.match(v) is not None, "must be a valid HTTP header name")
        if rules.well_known_regex == validate_pb2.HTTP_HEADER_VALUE:
            regex = _HEADER_VALUE_STRICT if strict else _HEADER_LOOSE
            return (lambda v: regex.match(v) is not None, "must be a valid HTTP header value (no NUL, CR or LF)")
        return (lambda v: True, "")
    return {
        "ip": (_is_ip, "must be an IP address"),
        "ipv4": (lambda v: _is_ip(v, version=4), "must be an IPv4 address"),
        "ipv6": (lambda v: _is_ip(v, version=6), "must be an IPv6 address"),
        "hostname": (_is_hostname, "must be a host name"),
        "address": (lambda v: _is_ip(v) or _is_hostname(v), "must be an IP address or a host name"),
    }.get(which, (lambda v: True, ""))


def _is_ip(value: str, *, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return version is None or address.version == version


def _is_hostname(value: str) -> bool:
    name = value.removesuffix(".")
    return 0 < len(name) <= 253 and all(_HOSTNAME_LABEL.match(label) and len(label) <= 63 for label in name.split("."))


def _bytes_check(rules: validate_pb2.BytesRules) -> _Check | None:
    conditions: list[tuple[Callable[[bytes], bool], str]] = []
    has = rules.HasField
    if has("const"):
        conditions.append((lambda v: v == rules.const, "must equal the required bytes"))
    if has("len"):
        conditions.append((lambda v: len(v) == rules.len, f"must be {rules.len} bytes long"))
    if has("min_len"):
        conditions.append((lambda v: len(v) >= rules.min_len, f"must be at least {rules.min_len} bytes long"))
    if has("max_len"):
        conditions.append((lambda v: len(v) <= rules.max_len, f"must be at most {rules.max_len} bytes long"))
    if has("prefix"):
        conditions.append((lambda v: v.startswith(rules.prefix), "must start with the required bytes"))
    if has("suffix"):
        conditions.append((lambda v: v.endswith(rules.suffix), "must end with the required bytes"))
    if has("contains"):
        conditions.append((lambda v: rules.contains in v, "must contain the required bytes"))
    allowed, banned = tuple(getattr(rules, "in")), tuple(rules.not_in)
    if allowed:
        conditions.append((lambda v: v in allowed, "must be one of the allowed values"))
    if banned:
        conditions.append((lambda v: v not in banned, "must not be one of the banned values"))
    return _all_of(conditions, ignore_empty=False, show=lambda v: f"{len(v)} bytes")


def _enum_check(rules: validate_pb2.EnumRules, field: FieldDescriptor) -> _Check | None:
    conditions: list[tuple[Callable[[int], bool], str]] = []
    if rules.HasField("const"):
        conditions.append((lambda v: v == rules.const, f"must be {rules.const}"))
    if rules.defined_only:
        enum_type = field.enum_type
        assert enum_type is not None
        defined = frozenset(value.number for value in enum_type.values)
        conditions.append((lambda v: v in defined, f"must be a defined {enum_type.name} value"))
    allowed, banned = tuple(getattr(rules, "in")), tuple(rules.not_in)
    if allowed:
        conditions.append((lambda v: v in allowed, f"must be one of {list(allowed)}"))
    if banned:
        conditions.append((lambda v: v not in banned, f"must not be one of {list(banned)}"))
    return _all_of(conditions, ignore_empty=False, show=repr)


def _all_of(
    conditions: list[tuple[Callable[[Any], bool], str]], *, ignore_empty: bool, show: Callable[[Any], str]
) -> _Check | None:
    if not conditions:
        return None

    def check(value: Any) -> str:
        if ignore_empty and not value:
            return ""
        for test, words in conditions:
            if not test(value):
                return f"{words} (is {show(value)})"
        return ""

    return check


def _shown(value: str) -> str:
    # A 16 KiB header value would drown the message; its length is what matters.
    return repr(value) if len(value) <= 60 else f"{len(value.encode())} bytes: {value[:20]!r}..."


# -- message-typed rules ---------------------------------------------------------------------------


def _nanos(value: duration_pb2.Duration) -> int:
    return int(value.seconds) * 10**9 + int(value.nanos)


def _duration_check(rules: validate_pb2.DurationRules) -> _Check | None:
    conditions: list[tuple[Callable[[int], bool], str]] = []
    for rule, test, words in (
        ("const", lambda v, bound: v == bound, "must equal"),
        ("lt", lambda v, bound: v < bound, "must be shorter than"),
        ("lte", lambda v, bound: v <= bound, "must be at most"),
        ("gt", lambda v, bound: v > bound, "must be longer than"),
        ("gte", lambda v, bound: v >= bound, "must be at least"),
    ):
        if rules.HasField(rule):
            bound = getattr(rules, rule)
            conditions.append((functools.partial(test, bound=_nanos(bound)), f"{words} {_format_duration(bound)}"))
    allowed = frozenset(_nanos(value) for value in getattr(rules, "in"))
    banned = frozenset(_nanos(value) for value in rules.not_in)
    if allowed:
        conditions.append((lambda v: v in allowed, "must be one of the allowed durations"))
    if banned:
        conditions.append((lambda v: v not in banned, "must not be one of the banned durations"))
    check = _all_of(conditions, ignore_empty=False, show=lambda nanos: f"{nanos / 1e9:g}s")
    return None if check is None else lambda value: check(_nanos(value))


def _format_duration(value: duration_pb2.Duration) -> str:
    return f"{_nanos(value) / 1e9:g}s"


def _any_check(rules: validate_pb2.AnyRules) -> _Check | None:
    allowed, banned = frozenset(getattr(rules, "in")), frozenset(rules.not_in)
    if not allowed and not banned:
        return None

    def check(value: any_pb2.Any) -> str:
        if allowed and value.type_url not in allowed:
            return f"type {value.type_url} is not one of {sorted(allowed)}"
        if value.type_url in banned:
            return f"type {value.type_url} is not allowed here"
        return ""

    return check


# -- Envoy's checks beyond the annotations ---------------------------------------------------------


def _check_duration(message: Message, path: _Path, found: _Found) -> None:
    """Envoy refuses any Duration whose seconds do not fit in int64 nanoseconds ("Duration out-of-range")."""
    assert isinstance(message, duration_pb2.Duration)
    seconds, nanos = int(message.seconds), int(message.nanos)
    if not -MAX_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS:
        found.append((path, f"duration of {seconds}s is outside Envoy's range (at most {MAX_DURATION_SECONDS}s)"))
    elif not -_MAX_DURATION_NANOS <= nanos <= _MAX_DURATION_NANOS or (seconds * nanos < 0):
        found.append((path, f"duration nanos {nanos} are out of range or of the wrong sign"))


def _check_weights(message: Message, path: _Path, found: _Found) -> None:
    """Envoy refuses weighted clusters whose weights sum above the uint32 range."""
    total = sum(cluster.weight.value for cluster in message.clusters)  # type: ignore[attr-defined]
    if total > MAX_UINT32:
        found.append(((path, "clusters"), f"the weights sum to {total}, more than {MAX_UINT32}"))


def _unpacked(value: any_pb2.Any) -> Message | None:
    """The message an ``Any`` holds; None for a type this process does not know (Envoy's to judge)."""
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(value.TypeName())
    except KeyError:
        return None
    inner = message_factory.GetMessageClass(descriptor)()
    value.Unpack(inner)
    return inner


_SPECIAL: dict[str, Callable[[Message, _Path, _Found], None]] = {
    _DURATION: _check_duration,
    _WEIGHTED_CLUSTER: _check_weights,
}
