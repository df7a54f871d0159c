"""Process lifecycle of ``reconciler run``: one daemon per state dir, and a prompt stop even mid-fetch."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, Mesh
from gitrepo import GitRemote
from waiting import wait_for

pytestmark = [pytest.mark.git, pytest.mark.slow, pytest.mark.timeout(120)]

#: Kubernetes sends SIGKILL 30 s after SIGTERM; a stopping daemon must be well inside that.
STOP_DEADLINE = 10.0


def test_a_second_daemon_on_the_same_state_dir_exits_at_once_naming_the_first(
    mesh: Mesh, daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    state = tmp_path / "shared-state"
    first = daemons(repo=mesh.repo.url, state_dir=state).start()
    first.wait_synced(mesh.initial_sha)

    second = daemons(repo=mesh.repo.url, state_dir=state)
    second.launch()
    code = second.wait_exit(timeout=15)

    output = second.log_since_start()
    assert code == 1, output
    assert f"state dir {state} is in use by another reconciler (pid {first.pid})" in output
    assert "daemon.started" not in output
    # The refused daemon left the clone alone: the first one still follows the branch.
    sha = mesh.push_weights(50, 50)
    first.sync()
    first.wait_synced(sha)


@pytest.mark.parametrize("ending", ["sigterm", "kill9"])
def test_the_state_dir_is_free_again_once_its_daemon_is_gone(
    ending: str, mesh: Mesh, daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    state = tmp_path / "shared-state"
    first = daemons(repo=mesh.repo.url, state_dir=state).start()
    first.wait_synced(mesh.initial_sha)
    if ending == "sigterm":
        assert first.signal_and_wait(signal.SIGTERM, timeout=STOP_DEADLINE) == 0
    else:
        first.kill9()  # the kernel drops a flock with its process: no stale lock to clean up

    successor = daemons(repo=mesh.repo.url, state_dir=state).start()

    successor.wait_synced(mesh.initial_sha)
    assert successor.running


@pytest.fixture
def silent_remote() -> Iterator[socket.socket]:
    """A TCP listener on 127.0.0.1 that accepts connections and never says a word (a hung git server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(30)
        yield listener


@pytest.mark.parametrize(
    ("scheme", "signum"),
    [("git", signal.SIGTERM), ("http", signal.SIGTERM), ("git", signal.SIGINT)],
    ids=["git-sigterm", "http-sigterm", "git-sigint"],
)
def test_a_daemon_stuck_in_a_clone_from_a_hung_remote_exits_0_promptly_on_a_stop_signal(
    scheme: str, signum: int, silent_remote: socket.socket, daemons: Callable[..., Daemon]
) -> None:
    port = silent_remote.getsockname()[1]
    daemon = daemons(repo=f"{scheme}://127.0.0.1:{port}/mesh.git").start()
    connection, _ = silent_remote.accept()
    with connection:
        connection.settimeout(10)
        assert connection.recv(4096), "git connected but sent no request"  # git now waits for an answer

        code = daemon.signal_and_wait(signum, timeout=STOP_DEADLINE)

        assert code == 0, daemon.log_tail()
        assert "daemon.stopped" in daemon.log_since_start()
        # git was ended with the daemon, not orphaned still holding the connection for its 2-minute timeout.
        connection.settimeout(5)
        try:
            while connection.recv(4096):
                pass
        except TimeoutError:
            pytest.fail("the daemon exited but git still holds its connection to the remote")


def _service(i: int) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{i}}}
spec:
  hosts: [svc-{i}.example.com]
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{{address: 10.0.{i // 250 % 250}.{i % 250 + 1}, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{i}}}
spec:
  host: svc-{i}.example.com
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{i}}}
spec:
  hosts: [svc-{i}.example.com]
  http:
  - route: [{{destination: {{host: svc-{i}.example.com, subset: v1}}}}]
"""


#: 20,000 services: far more than STOP_DEADLINE of validation on any machine, stopped within a file of it.
_FILES, _SERVICES_PER_FILE = 2_000, 10


def test_sigterm_in_the_middle_of_validating_a_huge_revision_stops_the_daemon_promptly(
    tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    repo = GitRemote.create(tmp_path / "git")
    services = iter(range(_FILES * _SERVICES_PER_FILE))
    files = {
        f"mesh/svc-{n:04d}.yaml": "---\n".join(_service(next(services)) for _ in range(_SERVICES_PER_FILE))
        for n in range(_FILES)
    }
    repo.commit(files, "twenty thousand services")
    daemon = daemons(repo=repo.url).start()
    wait_for("the pass to start validating", lambda: '"event": "engine.revision"' in daemon.log_since_start())

    code = daemon.signal_and_wait(signal.SIGTERM, timeout=STOP_DEADLINE)

    log = daemon.log_since_start()
    assert code == 0, daemon.log_tail()
    assert '"event": "engine.pass_aborted"' in log
    assert '"event": "engine.published"' not in log
    assert "daemon.stopped" in log
