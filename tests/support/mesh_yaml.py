"""Small Istio YAML builders shared by tests in several folders."""

from __future__ import annotations

__all__ = ["service_entry"]

_SERVICE_ENTRY = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}.example.com]
  resolution: STATIC
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1}}]
"""


def service_entry(name: str, *, port: int = 80) -> str:
    """A valid STATIC ServiceEntry for ``NAME.example.com`` on one HTTP port."""
    return _SERVICE_ENTRY.format(name=name, port=port)
