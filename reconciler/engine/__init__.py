"""The imperative shell: one reconcile pass, the daemon loop, the state store, wiring.

The pass and the loop do I/O and keep time on purpose; the decisions they act on come
from the pure core (validate, translate) and from :mod:`~reconciler.engine.guard`, the
pure removal guard. Entry points: :func:`run_daemon` with its :class:`Settings` for
``reconciler run``/``serve``, and :class:`Engine` for one pass at a time.
"""

from reconciler.engine.daemon import run_daemon
from reconciler.engine.reconcile import Engine
from reconciler.engine.settings import Settings
from reconciler.engine.state import SqliteStateStore, StateStore
from reconciler.engine.status import EngineStatus, Reason

__all__ = ["Engine", "EngineStatus", "Reason", "Settings", "SqliteStateStore", "StateStore", "run_daemon"]
