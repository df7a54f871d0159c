"""The commands that ask the daemon, against a real daemon guarding its API with a token.

A 401 or 403 is not "cannot reach the daemon" (exit 3) nor "not in sync" (exit 1): every such
command exits 4 (``ExitCode.DENIED``), saying which token is missing or wrong by where it came
from, never what it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_thread import daemon_thread
from memsource import template_dir

from reconciler.api.access import TOKEN_ENV
from reconciler.cli.exitcode import ExitCode
from reconciler.cli.main import main
from reconciler.engine.settings import ApiSettings, Settings, SourceSettings, StateSettings, XdsSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TOKEN = "api-token-5f0c9d2e7b"
WRONG = "api-token-not-the-one"


def _daemon(root: Path, *, api: ApiSettings) -> Iterator[str]:
    settings = Settings(
        state=StateSettings(dir=root / "state"),
        source=SourceSettings(repo_dir=template_dir(root), poll_interval=60.0),
        xds=XdsSettings(address="127.0.0.1:0"),
        api=api,
    )
    with daemon_thread(settings) as (_, http_port):
        yield f"http://127.0.0.1:{http_port}"


@pytest.fixture
def guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A daemon whose API needs ``TOKEN``; its URL. The caller's environment holds no token."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    yield from _daemon(tmp_path, api=ApiSettings(address="127.0.0.1:0", token=TOKEN.encode()))


def _commands(url: str, mesh: Path) -> list[list[str]]:
    return [
        ["status", "--server", url],
        ["status", "--server", url, "--wait", "0123456", "--timeout", "2m"],
        ["rollout", "list", "--server", url],
        ["rollout", "status", "reviews", "--server", url, "--watch"],
        ["rollout", "pause", "reviews", "--server", url],
        ["diff", str(mesh), "--server", url],
        ["diff", "--server", url, "--proxy", "ingress-1"],
    ]


def test_without_a_token_every_command_that_asks_the_daemon_exits_4_saying_how_to_give_one(
    guarded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in _commands(guarded, tmp_path / "mesh"):
        assert main(argv) == ExitCode.DENIED == 4, argv
        err = capsys.readouterr().err
        assert err.startswith(f"reconciler: the daemon at {guarded} needs an API token (401 Unauthorized)"), argv
        assert f"--token-file FILE or set ${TOKEN_ENV}" in err
        assert "cannot reach" not in err


def test_a_wrong_token_from_a_file_exits_4_naming_the_file_and_showing_neither_token(
    guarded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "api-token"
    token_file.write_text(WRONG + "\n")

    for argv in _commands(guarded, tmp_path / "mesh"):
        assert main([*argv, "--token-file", str(token_file)]) == ExitCode.DENIED, argv
        captured = capsys.readouterr()
        assert f"did not accept the API token from --token-file {token_file} (401 Unauthorized)" in captured.err
        assert WRONG not in captured.err + captured.out
        assert TOKEN not in captured.err + captured.out


def test_a_wrong_token_from_the_environment_is_named_as_the_variable(
    guarded: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(TOKEN_ENV, WRONG)

    assert main(["status", "--server", guarded]) == ExitCode.DENIED
    err = capsys.readouterr().err
    assert f"did not accept the API token from ${TOKEN_ENV} (401 Unauthorized)" in err
    assert WRONG not in err


def test_the_right_token_gets_the_status(
    guarded: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)

    code = main(["status", "--server", guarded, "--wait", "0000000", "--timeout", "1s"])

    # Answered (the commit is unknown, so it is not served: 1), not refused (4).
    assert code == ExitCode.FAILED
    assert "0000000: not served after 1s" in capsys.readouterr().out


def test_a_daemon_beyond_loopback_without_a_token_answers_403_and_the_command_exits_4_with_its_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in _daemon(tmp_path, api=ApiSettings(address="0.0.0.0:0")):
        assert main(["rollout", "list", "--server", url]) == ExitCode.DENIED
        err = capsys.readouterr().err
        assert f"the daemon at {url} refused the request (403 Forbidden): the API has no token configured" in err
        assert "--api-token-file FILE" in err
