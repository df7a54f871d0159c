"""The test and demo harness: real Envoys, upstreams and traffic on 127.0.0.1 (an I/O edge).

Used by the tests, ``make demo`` (:mod:`reconciler.demo`) and the benchmarks; no layer of
the daemon may import it (an import-linter contract in ``pyproject.toml``). It starts and
stops real processes and sockets on 127.0.0.1 only:

* :mod:`reconciler.harness.envoy` runs the real ``envoy`` binary serving a bootstrap and
  reads its admin API (finding the binary and ``--mode validate`` are :mod:`reconciler.envoy`'s);
* :mod:`reconciler.harness.upstream` runs tiny HTTP/1.1 servers that answer with their
  version (``v1``, ``v2``) and can be told to fail or slow down;
* :mod:`reconciler.harness.traffic` drives bounded keep-alive traffic through an Envoy
  listener and counts who answered, with which status, how fast;
* :mod:`reconciler.harness.lifecycle` is the start/stop context-manager contract the
  processes and servers share.

Failures surface as :class:`reconciler.errors.EnvoyError` (Envoy) or
:class:`reconciler.errors.UsageError` (bad arguments), with the context needed to debug them.
"""

__all__: list[str] = []
