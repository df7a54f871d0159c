"""reconciler: GitOps for service-mesh routing.

Istio networking YAML in git is validated (``file:line`` findings), translated to Envoy
xDS and served over ADS to real Envoy proxies, which ACK or NACK it; a refused commit
leaves the last good revision serving, and ``git revert`` takes traffic back. The status
API and ``reconciler status`` show what each proxy accepted.
"""

from reconciler.errors import ReconcilerError

__all__ = ["ReconcilerError", "__version__"]

__version__ = "0.1.0"
