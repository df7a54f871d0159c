"""GitSource against a private remote over smart HTTP: tokens from a file, the environment or the URL.

The remote (``git http-backend`` behind :class:`~githttp.PrivateGitServer`) refuses any request
without the token. Each test proves the fetch works *and* that the token is nowhere git keeps
text: the clone's config, FETCH_HEAD, any file under the state dir.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from githttp import PrivateGitServer
from gitrepo import GitRemote

from reconciler.errors import AuthError
from reconciler.sources.git import GitSource
from reconciler.sources.git.credentials import GitCredentials, git_environment, split_credentials

pytestmark = pytest.mark.git

TOKEN = "tok-3f9a1c-secret-value"
USER = "deploy-bot"


@pytest.fixture(autouse=True)
def _hermetic_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def private(remote: GitRemote) -> Iterator[PrivateGitServer]:
    with PrivateGitServer(remote.bare.parent, user=USER, token=TOKEN) as server:
        yield server


def _files_mentioning(root: Path, secret: str) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]


def _poll(url: str, state_dir: Path, credentials: GitCredentials) -> str:
    with GitSource(url=url, path="mesh", state_dir=state_dir, timeout_seconds=30, credentials=credentials) as source:
        revision = source.poll()
        assert revision is not None
        return revision.sha


def test_a_token_file_opens_a_private_remote_and_stays_out_of_the_state_dir(
    private: PrivateGitServer, remote: GitRemote, state_dir: Path, tmp_path: Path
) -> None:
    token_file = tmp_path / "git-token"
    token_file.write_text(TOKEN + "\n")  # as `echo` and Kubernetes Secrets write it
    sha = _poll(private.url("remote.git"), state_dir, GitCredentials(token_file=token_file, username=USER))
    assert sha == remote.head()
    assert private.served > 0
    assert _files_mentioning(state_dir, TOKEN) == []


def test_a_token_from_the_environment_opens_a_private_remote(
    private: PrivateGitServer, remote: GitRemote, state_dir: Path
) -> None:
    sha = _poll(private.url("remote.git"), state_dir, GitCredentials(token=TOKEN, username=USER))
    assert sha == remote.head()
    assert _files_mentioning(state_dir, TOKEN) == []


def test_a_token_in_the_url_still_works_but_the_clone_s_config_keeps_the_url_without_it(
    private: PrivateGitServer, remote: GitRemote, state_dir: Path
) -> None:
    url = private.url("remote.git").replace("http://", f"http://{USER}:{TOKEN}@")
    assert _poll(url, state_dir, GitCredentials()) == remote.head()
    config = (state_dir / "repo" / "config").read_text()
    assert f"url = {private.url('remote.git')}" in config
    assert _files_mentioning(state_dir, TOKEN) == []


def test_a_wrong_token_is_an_auth_error_whose_message_names_neither_token(
    private: PrivateGitServer, state_dir: Path, tmp_path: Path
) -> None:
    url = private.url("remote.git").replace("http://", f"http://{USER}:wrong-{TOKEN}@")
    with pytest.raises(AuthError) as excinfo:
        _poll(url, state_dir, GitCredentials())
    assert private.refused > 0
    assert TOKEN not in str(excinfo.value)
    assert "wrong-" not in str(excinfo.value)


def test_without_a_token_the_remote_refuses_and_the_fetch_is_an_auth_error(
    private: PrivateGitServer, state_dir: Path
) -> None:
    with pytest.raises(AuthError):
        _poll(private.url("remote.git"), state_dir, GitCredentials())


def test_the_token_is_offered_only_to_the_remote_s_own_scheme_and_host() -> None:
    env = git_environment("https://git.example.com:8443/mesh.git", GitCredentials(token=TOKEN))
    assert env["GIT_CONFIG_KEY_1"] == "credential.https://git.example.com:8443.helper"
    # The helper list is reset first: a `store` helper in the user's config never sees the token.
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("credential.helper", "")
    assert TOKEN not in env["GIT_CONFIG_VALUE_1"]


def test_a_deploy_key_is_the_only_key_offered_and_the_host_key_must_be_known(tmp_path: Path) -> None:
    key, known = tmp_path / "deploy key", tmp_path / "known_hosts"
    env = git_environment("ssh://git@git.example.com/mesh.git", GitCredentials(ssh_key=key, known_hosts=known))
    command = shlex.split(env["GIT_SSH_COMMAND"])
    assert command[0] == "ssh"
    assert ["-i", str(key)] == command[command.index("-i") : command.index("-i") + 2]
    for option in ("IdentitiesOnly=yes", "StrictHostKeyChecking=yes", f"UserKnownHostsFile={known}", "BatchMode=yes"):
        assert option in command
    assert "GIT_CONFIG_COUNT" not in env  # no HTTPS helper for an ssh remote


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:p%40ss@host/r.git", ("https://host/r.git", "u", "p@ss")),
        ("https://TOKEN@host/r.git", ("https://host/r.git", "TOKEN", "")),
        ("https://host/r.git", ("https://host/r.git", None, None)),
        ("git@host:r.git", ("git@host:r.git", None, None)),
        ("ssh://git@host/r.git", ("ssh://git@host/r.git", None, None)),
    ],
)
def test_credentials_are_split_out_of_http_urls_only(url: str, expected: tuple[str, str | None, str | None]) -> None:
    assert split_credentials(url) == expected
