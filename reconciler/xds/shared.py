"""What every ADS stream of one server has in common, computed once for all of them.

Proxies of a shape get the same snapshot objects, and their subscriptions name the same
resources; a stream deciding what to push asks the same questions of the same objects as
a thousand others. :class:`Shared` answers each question once per distinct set of objects:
response bodies (:class:`~reconciler.xds.wire.Encoder`), one frozenset per distinct set of
names (subscribed, or referenced by routes), and set relations (is every resource here
subscribed, which clusters do these routes use). Facts are keyed by the identity of
immutable objects, held while cached, so an answer can never belong to another object that
reused an address. Holding them keeps them alive, so facts age with the cache's publishes: one
not asked since the publish before last is dropped (a stream still converging from the previous
revision keeps its facts; a route table twenty revisions old is not kept for an idle one).

Proxies of different shapes (each sidecar its own outbound port) get route configurations
of their own that name the same clusters, revision after revision: the clusters they use
are one interned frozenset, so what follows from it (is any of them missing from CDS) is
answered once for every shape and every weight change, not once per proxy.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TypeVar

from reconciler.translate.snapshot import Resource
from reconciler.xds.wire import Encoder

__all__ = ["MAX_FACTS", "Shared"]

#: Facts kept (least recently used dropped first): about ten per proxy shape served at once (questions about
#: its route set, what it subscribes to and what it was sent and ACKed), for a few hundred shapes. Each holds
#: the objects it is about; the cache shares unchanged sets across publishes, so only changed ones churn.
MAX_FACTS = 4096

T = TypeVar("T")


class Shared:
    """One per server; every session of the server asks it."""

    def __init__(self, *, max_facts: int = MAX_FACTS, generation: Callable[[], int] = lambda: 0) -> None:
        """``generation``: the number of the cache's latest publish (facts older than the one before are dropped)."""
        self.encoder = Encoder()
        self._generation = generation
        self._pruned_at = generation()
        # Interned name sets by hash: a hit is only used when equal (two sets may share a hash).
        self._names: weakref.WeakValueDictionary[int, frozenset[str]] = weakref.WeakValueDictionary()
        # key → (the objects it is about, the answer, the generation it was last asked in)
        self._facts: OrderedDict[tuple[object, ...], tuple[tuple[object, ...], object, int]] = OrderedDict()
        self._max_facts = max_facts

    def names(self, names: Iterable[str]) -> frozenset[str]:
        """``names`` as the one frozenset every stream subscribing to (or referring to) exactly them shares."""
        fresh = frozenset(names)  # the same object when given a frozenset
        key = hash(fresh)
        known = self._names.get(key)
        if known is not None and known == fresh:
            return known
        self._names[key] = fresh
        return fresh

    def covers(self, container: Collection[str], names: Collection[str]) -> bool:
        """Whether every one of ``names`` is in ``container`` (both immutable)."""
        if container is names:
            return True
        return self._fact("covers", (container, names), lambda: all(name in container for name in names))

    def references(self, resources: Mapping[str, Resource], names: Collection[str]) -> frozenset[str]:
        """What the resources among ``names`` point at (both immutable), as an interned frozenset."""

        def compute() -> frozenset[str]:
            pointed = [item.references for name, item in resources.items() if name in names]
            return self.names(pointed[0] if len(pointed) == 1 else frozenset().union(*pointed))

        return self._fact("references", (resources, names), compute)

    def missing(self, names: Collection[str], container: Collection[str]) -> tuple[str, ...]:
        """Those of ``names`` not in ``container``, sorted (both immutable)."""
        return self._fact("missing", (names, container), lambda: tuple(sorted(n for n in names if n not in container)))

    def delta(
        self, base: Mapping[str, Resource], resources: Mapping[str, Resource]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The names in ``resources`` new or changed since ``base``, and the names gone from it, sorted."""

        def compute() -> tuple[tuple[str, ...], tuple[str, ...]]:
            changed = tuple(
                name
                for name, item in resources.items()
                if (old := base.get(name)) is not item and (old is None or old.version != item.version)
            )
            return changed, tuple(sorted(name for name in base if name not in resources))

        return self._fact("delta", (base, resources), compute)

    def _fact(self, kind: str, objects: tuple[object, ...], compute: Callable[[], T]) -> T:
        generation = self._generation()
        if generation != self._pruned_at:
            self._prune(generation)
        key = (kind, *(id(item) for item in objects))
        found = self._facts.get(key)
        if found is not None and all(a is b for a, b in zip(found[0], objects, strict=True)):
            self._facts[key] = (found[0], found[1], generation)
            self._facts.move_to_end(key)
            return found[1]  # type: ignore[return-value]
        value = compute()
        self._facts[key] = (objects, value, generation)
        while len(self._facts) > self._max_facts:
            self._facts.popitem(last=False)
        return value

    def _prune(self, generation: int) -> None:
        """Drop the facts last asked before the previous publish (and the objects they hold)."""
        self._pruned_at = generation
        stale = [key for key, (_, _, asked) in self._facts.items() if asked < generation - 1]
        for key in stale:
            del self._facts[key]
