"""The removal guard: a revision that would take away all routing, or most of it, is refused.

A commit that deletes every YAML file validates fine (nothing left, nothing wrong), and so
does a bad merge, a moved directory or a generator bug that drops most files; served, each
removes listeners and routes from every proxy at once and traffic stops. Like Argo CD's
``allowEmpty``, such a revision needs an explicit opt-in: the daemon's flags, or the marker
file :data:`~reconciler.sources.revision.ALLOW_REMOVAL_FILE` committed in the config directory.

Pure: resource keys in, a refusal message (or ``None``) out.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.model.config import Kind, MeshConfig

__all__ = ["DEFAULT_MAX_REMOVAL_PERCENT", "RemovalGuard", "ResourceKey", "resource_keys"]

#: A routine change (weights, a service added or retired) removes a small share of what is served;
#: losing more than half in one commit is almost always a mistake, and a planned teardown can say so.
DEFAULT_MAX_REMOVAL_PERCENT = 50
#: Removed resources a refusal names; the count says how many there are.
_NAMED = 3

ResourceKey = tuple[Kind, str, str]


def resource_keys(config: MeshConfig) -> frozenset[ResourceKey]:
    """``(kind, namespace, name)`` of every resource of ``config``: a rename counts as a removal."""
    return frozenset((resource.kind, resource.namespace, resource.name) for resource in config.resources())


@dataclass(frozen=True, slots=True)
class RemovalGuard:
    """What a revision may remove from the served config without an opt-in."""

    #: A revision removing more than this share (percent) of the served resources is refused; 100 turns it off.
    max_removal_percent: int = DEFAULT_MAX_REMOVAL_PERCENT
    #: Serve a revision with no Istio resources at all.
    allow_empty: bool = False

    def refusal(self, *, served: frozenset[ResourceKey], proposed: frozenset[ResourceKey]) -> str | None:
        """Why ``proposed`` must not replace ``served`` (empty when nothing is served yet), or ``None``.

        The share rule needs something served; the empty rule holds even then, because proxies
        may still run an older daemon's config that an empty first revision would wipe out.
        """
        if not proposed and not self.allow_empty:
            if served:
                return f"would remove all {len(served)} served resources: the revision has no Istio resources"
            return "the revision has no Istio resources: serving it would leave every proxy without routing"
        removed = served - proposed
        if not served or len(removed) * 100 <= self.max_removal_percent * len(served):
            return None
        percent = len(removed) * 100 / len(served)
        # Whole percent, unless rounding would make the share read as within the limit (50.3% as 50%).
        share = f"{percent:.0f}" if round(percent) > self.max_removal_percent else f"{percent:.1f}"
        named = ", ".join(f"{kind} {namespace}/{name}" for kind, namespace, name in sorted(removed)[:_NAMED])
        more = f" and {len(removed) - _NAMED} more" if len(removed) > _NAMED else ""
        return (
            f"would remove {len(removed)} of {len(served)} served resources ({share}%) > "
            f"{self.max_removal_percent}% ({named}{more})"
        )
