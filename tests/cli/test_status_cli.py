"""``reconciler status`` when it cannot read the daemon's status: its own message and exit code."""

from __future__ import annotations

import pytest

from reconciler.cli.main import EXIT_FAILED, EXIT_USAGE, main
from reconciler.cli.status import EXIT_UNREACHABLE
from reconciler.localenv.envoy import free_port


def test_a_daemon_that_is_not_running_is_reported_as_unreachable_with_its_own_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = f"http://127.0.0.1:{free_port()}"

    code = main(["status", "--server", server])

    assert code == EXIT_UNREACHABLE
    assert code not in {EXIT_FAILED, EXIT_USAGE}
    assert f"cannot reach the daemon at {server}" in capsys.readouterr().err
