"""The exit codes of every ``reconciler`` command: one rule, one place."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    """What a command's exit status means; the same number means the same thing in every command."""

    #: Success: the thing checked is OK, or the command did what it was asked.
    OK = 0
    #: The thing checked is not OK: config errors, Envoy rejected it, proxies not synced, the daemon failed.
    FAILED = 1
    #: The command was used wrongly (bad flag, malformed address); the message says how to fix it.
    USAGE = 2
    #: Commands that ask the daemon (``status``, ``rollout``, ``diff --server``): the daemon could not be reached,
    #: which is not "not in sync" or "failed".
    UNREACHABLE = 3
    #: The same commands: the daemon answered and turned the caller away (401: no API token or not its token;
    #: 403: it has none configured and listens beyond loopback). Fix the token, not the daemon or the config.
    DENIED = 4
    #: The same commands: the daemon is a follower replica (leader election) and named the leader, which alone
    #: takes rollout commands and syncs and holds the rollouts. Ask the leader (or the Service in front of both).
    STANDBY = 5
    #: Stopped by Ctrl-C (128 + SIGINT, as shells report it).
    INTERRUPTED = 130
