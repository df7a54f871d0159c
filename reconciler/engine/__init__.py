"""The imperative shell: one reconcile pass, the daemon loop, the state store, wiring.

Everything here does I/O or keeps time on purpose; the decisions it acts on come from
the pure core (loader/validate/translate). Entry points: :func:`run_daemon` with its
:class:`Settings` for ``reconciler run``/``serve``, and :class:`Engine` for one pass at a time.
"""

from reconciler.engine.daemon import run_daemon
from reconciler.engine.reconcile import Engine
from reconciler.engine.settings import Settings
from reconciler.engine.state import SqliteStateStore, StateStore
from reconciler.engine.status import EngineStatus, Reason

__all__ = ["Engine", "EngineStatus", "Reason", "Settings", "SqliteStateStore", "StateStore", "run_daemon"]
