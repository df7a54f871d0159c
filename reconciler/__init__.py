"""reconciler: GitOps for service-mesh routing.

Istio networking YAML in git becomes Envoy xDS served over ADS; weight changes roll out
as self-checking canaries; ``git revert`` takes traffic back.
"""

from reconciler.errors import ReconcilerError

__all__ = ["ReconcilerError", "__version__"]

__version__ = "0.1.0"
