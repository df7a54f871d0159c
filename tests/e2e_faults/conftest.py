"""The fault suite reuses the daemon end-to-end fixtures (upstreams, a mesh repo, daemons, a gateway).

They live in tests/e2e_daemon (its conftest and ``daemon_harness``); they are loaded from there rather
than copied, so both suites drive the daemon one way.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_E2E_DAEMON = Path(__file__).resolve().parent.parent / "e2e_daemon"
sys.path.insert(0, str(_E2E_DAEMON))  # daemon_harness, as tests/e2e_daemon imports it

_spec = importlib.util.spec_from_file_location("e2e_daemon_fixtures", _E2E_DAEMON / "conftest.py")
assert _spec is not None
assert _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

mesh = _fixtures.mesh
webhook_secret = _fixtures.webhook_secret
daemons = _fixtures.daemons
gateway = _fixtures.gateway
served = _fixtures.served
