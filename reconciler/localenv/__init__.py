"""Local processes for tests, the demo (``make demo``) and benchmarks: an I/O edge.

Nothing in the daemon's serving path imports this package. It starts and stops real
processes and sockets on 127.0.0.1 only:

* :mod:`reconciler.localenv.envoy` runs the real ``envoy`` binary (serve or ``--mode validate``)
  and reads its admin API;
* :mod:`reconciler.localenv.upstream` runs tiny HTTP/1.1 servers that answer with their
  version (``v1``, ``v2``) and can be told to fail or slow down;
* :mod:`reconciler.localenv.traffic` drives bounded keep-alive traffic through an Envoy
  listener and counts who answered, with which status, how fast;
* :mod:`reconciler.localenv.lifecycle` is the start/stop context-manager contract the
  processes and servers share.

Failures surface as :class:`reconciler.errors.EnvoyError` (Envoy) or
:class:`reconciler.errors.UsageError` (bad arguments), with the context needed to debug them.
"""

__all__: list[str] = []
