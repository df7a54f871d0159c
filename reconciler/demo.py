"""``make demo``: the whole GitOps loop on this machine, narrated.

Creates a git repo from ``repo-template/``, starts two upstream versions, the daemon
and a real Envoy gateway, then: shows the live split, pushes a weight change and shows
traffic move, pushes a bad commit and shows it refused while traffic stays put, and
reverts. Every process it starts is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.api.document import StatusDocument
from reconciler.cli.status import render_status
from reconciler.errors import ReconcilerError
from reconciler.harness.envoy import EnvoyProcess, free_port
from reconciler.harness.traffic import TrafficResult, send_at_rate
from reconciler.harness.upstream import UpstreamServer
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

__all__ = ["main"]

TEMPLATE = Path(__file__).resolve().parent.parent / "repo-template"
HOST = "reviews.example.com"
BAR = 40


def _say(text: str = "") -> None:
    print(text, flush=True)


def _git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=Demo", "-c", "user.email=demo@example.com", "-c", "init.defaultBranch=main"]
    done = subprocess.run([*command, *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _get_json(url: str, *, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def _wait_for(what: str, predicate: Any, *, timeout: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(OSError, ValueError):
            if predicate():
                return time.monotonic() - started
        time.sleep(0.05)
    raise ReconcilerError(f"timed out after {timeout:.0f}s waiting for {what}")


def _bar(result: TrafficResult) -> str:
    v1, v2 = result.share("v1"), result.share("v2")
    filled = round(BAR * v1 / 100) if result.responses else 0
    errors = result.responses - sum(result.by_version.values()) + sum(result.errors.values())
    return f"  v1 {'█' * filled}{'░' * (BAR - filled)} v2   {v1:5.1f}% / {v2:5.1f}%   errors {errors}"


def _show_traffic(port: int, seconds: int) -> TrafficResult:
    last: TrafficResult | None = None
    for _ in range(seconds):
        last = send_at_rate(port=port, rate=100, duration=1.0, authority=HOST, workers=4)
        _say(_bar(last))
    assert last is not None
    return last


@contextlib.contextmanager
def _daemon(
    *, remote: Path, state: Path, xds_port: int, http_port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        sys.executable, "-m", "reconciler.cli.main", "run",
        "--repo", str(remote), "--path", "mesh", "--poll-interval", "30s", "--state-dir", str(state),
        "--xds-address", f"127.0.0.1:{xds_port}", "--http-address", f"127.0.0.1:{http_port}",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def _status(api: str) -> StatusDocument:
    return StatusDocument.from_json(_get_json(f"{api}/api/v1/status"))


def _push_and_sync(*, work: Path, api: str) -> float:
    """Push, poke the daemon, and return seconds until it refused the head or every proxy ACKed it."""
    started = time.monotonic()
    _git(work, "push", "-q", "origin", "main")
    sha = _git(work, "rev-parse", "HEAD")
    _get_json(f"{api}/api/v1/sync", method="POST")

    def settled() -> bool:
        engine = _status(api).engine
        return engine.head_sha == sha and (engine.last_error is not None or engine.synced)

    _wait_for("the daemon to take the push", settled)
    return time.monotonic() - started


def run(workdir: Path) -> None:
    remote, work = workdir / "remote.git", workdir / "work"
    gateway_port, xds_port, http_port = free_port(), free_port(), free_port()
    with UpstreamServer("v1") as v1, UpstreamServer("v2") as v2:
        _say(f"▶ upstreams: v1 on 127.0.0.1:{v1.port}, v2 on 127.0.0.1:{v2.port}")
        _git(workdir, "init", "-q", "--bare", str(remote))
        _git(workdir, "clone", "-q", str(remote), str(work))
        shutil.copytree(TEMPLATE, work, dirs_exist_ok=True)
        mesh = work / "mesh"
        for name, old, new in (
            ("serviceentry.yaml", "http: 9081", f"http: {v1.port}"),
            ("serviceentry.yaml", "http: 9082", f"http: {v2.port}"),
            ("gateway.yaml", "number: 8080", f"number: {gateway_port}"),
        ):
            path = mesh / name
            path.write_text(path.read_text().replace(old, new))
        _git(work, "add", "-A")
        _git(work, "commit", "-qm", "mesh: reviews on v1")
        _git(work, "push", "-q", "origin", "main")
        _say(f"▶ config repo: {remote} (working clone {work})")
        api = f"http://127.0.0.1:{http_port}"
        log = workdir / "daemon.log"
        with _daemon(remote=remote, state=workdir / "state", xds_port=xds_port, http_port=http_port,
                     log=log) as daemon:  # fmt: skip
            _wait_for("the daemon to serve the first revision", lambda: _serving(daemon, api, log))
            _say(f"▶ daemon: ADS on 127.0.0.1:{xds_port}, status on {api}  (log: {workdir / 'daemon.log'})")
            identity = ProxyIdentity(node_id="ingress-1", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY)
            bootstrap = build_bootstrap(proxy=identity, xds_host="127.0.0.1", xds_port=xds_port, admin_port=0)
            with EnvoyProcess(bootstrap, workdir=workdir / "envoy"):
                _wait_for("Envoy's gateway listener", lambda: _probe(gateway_port))
                _say(f"▶ envoy gateway 'ingress-1' listening on 127.0.0.1:{gateway_port}\n")
                _steps(work=work, mesh=mesh, api=api, port=gateway_port)


def _serving(daemon: subprocess.Popen[bytes], api: str, log: Path) -> bool:
    """Whether the daemon is ready; fails at once, with its last words, if it exited instead."""
    if daemon.poll() is not None:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
        raise ReconcilerError(f"the daemon exited with status {daemon.returncode}:\n{tail}")
    return bool(_get_json(f"{api}/readyz")["ready"])


def _probe(port: int) -> bool:
    return send_at_rate(port=port, rate=20, duration=0.1, authority=HOST, workers=1).share("v1") > 0


def _steps(*, work: Path, mesh: Path, api: str, port: int) -> None:
    vs = mesh / "virtualservice.yaml"
    _say("① Live traffic through Envoy (100 req/s), weights v1=100 v2=0:")
    _show_traffic(port, 3)

    _say("\n② git commit -am 'reviews: canary 20% to v2' && git push")
    text = vs.read_text()
    vs.write_text(text.replace("weight: 100", "weight: 80").replace("weight: 0", "weight: 20"))
    _git(work, "commit", "-qam", "reviews: canary 20% to v2")
    took = _push_and_sync(work=work, api=api)
    _say(f"   pushed → every proxy ACKed in {took * 1000:.0f} ms")
    _show_traffic(port, 4)

    _say("\n③ A bad commit: subset 'v3' does not exist")
    vs.write_text(vs.read_text().replace("subset: v2\n      weight: 20", "subset: v3\n      weight: 20"))
    _git(work, "commit", "-qam", "reviews: typo")
    _push_and_sync(work=work, api=api)
    error = _status(api).engine.last_error
    _say("   refused — status says:")
    for finding in error.findings if error else ():
        _say(f"   {finding.file}:{finding.line}: {finding.code.value} {finding.message}")
    _say("   traffic is unchanged (still the last good revision):")
    _show_traffic(port, 3)

    _say("\n④ git revert HEAD HEAD~1 && git push — back to 100/0")
    _git(work, "revert", "--no-edit", "HEAD")
    _git(work, "revert", "--no-edit", "HEAD~2")
    took = _push_and_sync(work=work, api=api)
    _say(f"   pushed → every proxy ACKed in {took * 1000:.0f} ms")
    _show_traffic(port, 3)

    _say("\n⑤ reconciler status")
    _say(render_status(_status(api), now=datetime.now(UTC)))


def main() -> int:
    keep = os.environ.get("DEMO_KEEP")
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    _say("reconciler demo — GitOps for mesh routing: git push changes traffic, git revert undoes it\n")
    try:
        run(workdir)
    except KeyboardInterrupt:
        _say("\ninterrupted — stopping everything")
        return 130
    except (ReconcilerError, subprocess.CalledProcessError) as error:
        keep = "1"  # what failed is worth a look: keep the repo and the logs
        _say(f"\ndemo failed: {error}\n(daemon log: {workdir / 'daemon.log'}; kept {workdir})")
        return 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    _say("\nDone. Every process was stopped. Set DEMO_KEEP=1 to keep the repo and logs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
