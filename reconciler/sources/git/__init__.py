"""The git edge: keep a local clone of one branch and turn new commits into Revisions.

:class:`GitSource` owns a bare clone at ``state_dir/repo``. Each :meth:`GitSource.poll`
fetches the one branch and, when its head moved *and* the config directory's tree
changed, reads the config files straight from the commit's tree. Every gitpython or OS
failure leaves as one :class:`~reconciler.errors.SourceError` subclass per failure
(``FetchError``, ``AuthError``, ``CloneError``, ...); the last good clone is never removed
because a fetch failed. Calls block on the network and on git subprocesses: the engine
runs them with ``asyncio.to_thread``.

One room per part:

- :mod:`~reconciler.sources.git.source`: :class:`GitSource`, reading config out of commits;
- :mod:`~reconciler.sources.git.clone`: the bare clone (make, open, fetch, replace when corrupt);
- :mod:`~reconciler.sources.git.process`: one network command, bounded by a timeout and abortable;
- :mod:`~reconciler.sources.git.stderr`: which failure git's stderr describes;
- :mod:`~reconciler.sources.git.url`: URL checks and credential redaction.
"""

from reconciler.sources.git.source import DEFAULT_TIMEOUT_SECONDS, GitSource
from reconciler.sources.git.url import redact_url

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "GitSource", "redact_url"]
