"""Secrets stay secret: a daemon with a private git remote, a webhook secret and an API token, end to end.

Known secret values go in; every output the daemon makes is then searched for them: its log,
``/api/v1/status``, ``/metrics``, the error bodies of refused requests, the command lines of
the daemon and of its git children (sampled from /proc while it runs), and every file under
its state dir. The git remote is ``git http-backend`` behind a server that demands the token.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from command_lines import CommandLines
from daemon_harness import CLI, REPO_ROOT, Daemon, Mesh, github_signature
from githttp import PrivateGitServer
from gitrepo import git_env
from waiting import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads command lines from /proc")

USER = "deploy-bot"


def _call(daemon: Daemon, method: str, path: str, *, token: str | None, body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(daemon.url + path, method=method, data=body if body is not None else None)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def _status(daemon: Daemon, token: str) -> dict[str, Any]:
    code, text = _call(daemon, "GET", "/api/v1/status", token=token)
    assert code == 200, text
    status: dict[str, Any] = json.loads(text)
    return status


def _state_files(root: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def _write(path: Path, secret: str) -> Path:
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


def test_no_secret_reaches_logs_status_metrics_errors_command_lines_or_the_state_dir(
    mesh: Mesh, daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    git_token, api_token, hook_secret = (f"{kind}-{secrets.token_hex(12)}" for kind in ("gittok", "apitok", "whsec"))
    basic = base64.b64encode(f"{USER}:{git_token}".encode()).decode()  # what git puts on the wire
    outputs: dict[str, str] = {}

    with PrivateGitServer(mesh.repo.bare.parent, user=USER, token=git_token) as remote, CommandLines().running() as ps:
        daemon = daemons(
            repo=remote.url(mesh.repo.bare.name),
            webhook_secret_file=_write(tmp_path / "hook-secret", hook_secret),
            extra_args=[
                "--git-token-file",
                str(_write(tmp_path / "git-token", git_token)),
                "--git-username",
                USER,
                "--api-token-file",
                str(_write(tmp_path / "api-token", api_token)),
            ],
        ).start()
        outputs["daemon cmdline"] = Path(f"/proc/{daemon.pid}/cmdline").read_bytes().decode(errors="replace")
        wait_for("the first commit served", lambda: _status(daemon, api_token)["served"], timeout=60)

        # A push, announced by a signed webhook.
        sha = mesh.push_weights(80, 20)
        body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
        hook = urllib.request.Request(daemon.url + "/hooks/git", data=body, method="POST")
        for name, value in {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": github_signature(body, hook_secret.encode()),
        }.items():
            hook.add_header(name, value)
        with urllib.request.urlopen(hook, timeout=10) as answer:
            assert answer.status == 202
        wait_for("the push served", lambda: (_status(daemon, api_token)["served"] or {}).get("sha") == sha, timeout=60)

        # Refused requests, with and near the real values.
        for name, (method, path, token) in {
            "sync without token": ("POST", "/api/v1/sync", None),
            "sync with a wrong token": ("POST", "/api/v1/sync", api_token[:-1]),
            "status without token": ("GET", "/api/v1/status", None),
        }.items():
            code, outputs[name] = _call(daemon, method, path, token=token)
            assert code == 401, outputs[name]
        code, outputs["gitlab hook with a wrong token"] = 0, ""
        gitlab = urllib.request.Request(daemon.url + "/hooks/git", data=b"{}", method="POST")
        gitlab.add_header("X-Gitlab-Token", hook_secret[:-1])
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(gitlab, timeout=10)
        outputs["gitlab hook with a wrong token"] = refused.value.read().decode()

        # The remote stops accepting the token: the fetch fails, and status says why.
        remote.token = "rotated-" + git_token
        assert _call(daemon, "POST", "/api/v1/sync", token=api_token)[0] == 202
        failed = wait_for(
            "the auth failure in status",
            lambda: (s := _status(daemon, api_token))["lastError"] and "AuthFailed" in s["lastError"]["message"] and s,
            timeout=60,
        )
        assert failed["served"]["sha"] == sha  # serving continues
        remote.token = git_token

        outputs["status"] = json.dumps(_status(daemon, api_token))
        outputs["metrics"] = _call(daemon, "GET", "/metrics", token=None)[1]
        outputs["cli status"] = subprocess.run(
            [*CLI, "status", "--server", daemon.url, "--token-file", str(tmp_path / "api-token"), "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=git_env(),
            cwd=REPO_ROOT,
            check=True,
        ).stdout
        assert json.loads(outputs["cli status"])["served"]["sha"] == sha
        daemon.stop()

    outputs["log"] = daemon.log_since_start()
    assert "git.fetch_failed" in outputs["log"]  # the failure was logged, without the token
    outputs.update(
        {f"state file {name}": data.decode(errors="replace") for name, data in _state_files(daemon.state_dir).items()}
    )
    outputs.update({f"command line {number}": line for number, line in enumerate(sorted(ps.seen))})
    assert ps.git_children(), "no git child was seen: the command lines were not sampled"
    assert remote.served > 0
    assert remote.refused > 0

    for secret in (git_token, api_token, hook_secret, basic, api_token[:-1], hook_secret[:-1]):
        leaks = [name for name, text in outputs.items() if secret in text]
        assert leaks == [], f"{secret[:6]}... appears in {leaks}"


def test_a_token_in_the_repo_url_works_is_warned_about_and_never_reaches_git_s_command_line_or_the_state_dir(
    mesh: Mesh, daemons: Callable[..., Daemon]
) -> None:
    token = f"urltok-{secrets.token_hex(12)}"
    with PrivateGitServer(mesh.repo.bare.parent, user=USER, token=token) as remote, CommandLines().running() as ps:
        url = remote.url(mesh.repo.bare.name).replace("http://", f"http://{USER}:{token}@")
        daemon = daemons(repo=url).start()
        status = daemon.wait_status("the first commit served", lambda s: s["served"], timeout=60)
        daemon.stop()

    log = daemon.log_since_start()
    assert "git.credentials_in_url" in log
    assert "--git-token-file" in log
    assert status["repo"] == remote.url(mesh.repo.bare.name).replace("http://", f"http://{USER}:***@")
    assert token not in log
    assert token not in json.dumps(status)
    assert [name for name, data in _state_files(daemon.state_dir).items() if token.encode() in data] == []
    assert ps.git_children()
    assert [line for line in ps.git_children() if token in line] == []


def test_the_api_over_https_answers_the_cli_with_its_ca_and_token_and_refuses_it_without_the_token(
    mesh: Mesh, daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    cert, key = tmp_path / "api.crt", tmp_path / "api.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        check=True,
        timeout=60,
    )  # fmt: skip
    api_token = f"apitok-{secrets.token_hex(12)}"
    daemon = daemons(
        repo=mesh.repo.url,
        extra_args=["--api-token-file", str(_write(tmp_path / "api-token", api_token)),
                    "--api-tls-cert", str(cert), "--api-tls-key", str(key)],
    ).start()  # fmt: skip
    server = f"https://127.0.0.1:{daemon.http_port}"

    def status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        command = [*CLI, "status", "--server", server, "--ca-file", str(cert), "-o", "json"]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, cwd=REPO_ROOT, check=False)

    served = wait_for(
        "status over HTTPS",
        lambda: (
            (answer := status({**git_env(), "RECONCILER_API_TOKEN": api_token})).returncode == 0
            and json.loads(answer.stdout)["served"]
        ),
        timeout=60,
    )
    assert served["sha"] == mesh.initial_sha
    refused = status(git_env())
    assert refused.returncode == 4  # ExitCode.DENIED: the daemon answered, and wants a token
    assert "needs an API token (401 Unauthorized)" in refused.stderr
