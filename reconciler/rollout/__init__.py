"""Progressive delivery's pure core: step weights (``plan``), count-based checks (``analysis``) and
the rollout state machine (``decide``). No I/O and no clock: the engine passes the time in.
"""

__all__: list[str] = []
