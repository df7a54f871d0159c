"""``make demo``: the whole GitOps loop on this machine, narrated.

Creates a git repo from ``repo-template/``, starts two upstream versions, the daemon
and a real Envoy gateway, then: shows the live split, pushes a weight change and shows
traffic move, pushes a bad commit and shows it refused while traffic stays put, and
reverts. Then the canary act: with the template's RolloutPolicy committed (at demo speed),
a move to v2 walks in steps until it succeeds, and a move to a v2 that fails 40% of its
requests is rolled back by the daemon itself. Every process it starts is stopped on exit
or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.api.document import RolloutDocument, StatusDocument
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
POLICY = "rolloutpolicy.yaml"
#: The template's policy at demo speed: two steps, each judged after 2 s and 20 requests to the canary.
STEPS = (20, 50)
DEMO_POLICY = (
    ("steps: [20, 50, 80]", f"steps: [{', '.join(map(str, STEPS))}]"),
    ("interval: 15s", "interval: 2s"),
    ("minRequests: 50", "minRequests: 20"),
    ("maxInterval: 2m", "maxInterval: 20s"),
)
#: The broken v2 build of the last act: this share of its answers are 500 (not retried: the route retries 503).
V2_FAILING = 0.4


_SAYING = threading.Lock()


def _say(text: str = "") -> None:
    with _SAYING:  # the canary act's watcher prints between the bars
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


def _edit(path: Path, *replacements: tuple[str, str]) -> None:
    """Replace text in a template file; a template that no longer has the text fails the demo loudly."""
    text = path.read_text()
    for old, new in replacements:
        if old not in text:
            raise ReconcilerError(f"{path.name} no longer contains {old!r}: update reconciler/demo.py")
        text = text.replace(old, new)
    path.write_text(text)


def _set_weights(virtualservice: Path, *, v1: int, v2: int) -> None:
    """Set the template's default route to ``v1``/``v2``."""
    text = virtualservice.read_text()
    for subset, weight in (("v1", v1), ("v2", v2)):
        text, found = re.subn(rf"(subset: {subset}\n\s+weight:) \d+", rf"\g<1> {weight}", text)
        if found != 1:
            raise ReconcilerError(f"{virtualservice.name} no longer has one weighted subset {subset}")
    virtualservice.write_text(text)


def _bar(result: TrafficResult) -> str:
    v1, v2 = result.share("v1"), result.share("v2")
    filled = round(BAR * v1 / 100) if result.responses else 0
    # Envoy's own replies (no route, no healthy upstream) and upstream failures alike, as a user sees them.
    errors = sum(count for status, count in result.by_status.items() if status >= 400) + sum(result.errors.values())
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
        _edit(mesh / "serviceentry.yaml", ("http: 9081", f"http: {v1.port}"), ("http: 9082", f"http: {v2.port}"))
        _edit(mesh / "gateway.yaml", ("number: 8080", f"number: {gateway_port}"))
        # The template's policy is held back until the canary act: weight changes before it are served at once.
        policy = (mesh / POLICY).read_text()
        (mesh / POLICY).unlink()
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
                _canary(work=work, mesh=mesh, api=api, port=gateway_port, policy=policy, v2=v2)
                _say("\n⑧ reconciler status")
                _say(render_status(_status(api), now=datetime.now(UTC)))


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
    _set_weights(vs, v1=80, v2=20)
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


def _canary(*, work: Path, mesh: Path, api: str, port: int, policy: str, v2: UpstreamServer) -> None:
    """Acts ⑤ to ⑦: a walk that succeeds, a move at once without the policy, a walk the daemon rolls back."""
    vs = mesh / "virtualservice.yaml"
    steps = " → ".join(f"{step}%" for step in STEPS)
    _say(f"\n⑤ Canary: commit the template's {POLICY} (at demo speed: {steps}, each judged after 2 s")
    _say("   and 20 requests to the new version, error rate ≤ 1%), then move everything to v2 (healthy)")
    (mesh / POLICY).write_text(policy)
    _edit(mesh / POLICY, *DEMO_POLICY)
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "reviews: walk weight changes in steps")
    took = _push_and_sync(work=work, api=api)
    _say(f"   git push (the policy) → served at once, no weights changed: every proxy ACKed in {took * 1000:.0f} ms")
    _set_weights(vs, v1=0, v2=100)
    _git(work, "commit", "-qam", "reviews: all traffic to v2")
    _say("   git commit -am 'reviews: all traffic to v2' && git push — the live view:")
    _walk(work=work, api=api, port=port, until="Succeeded")

    _say("\n⑥ Back to v1 at once: skip the walk by deleting the policy in the same commit")
    _say(f"   git rm mesh/{POLICY} && git commit -am 'reviews: all traffic to v1 now' && git push")
    (mesh / POLICY).unlink()
    _set_weights(vs, v1=100, v2=0)
    _git(work, "commit", "-qam", "reviews: all traffic to v1 now")
    took = _push_and_sync(work=work, api=api)
    _say(f"   pushed → every proxy ACKed in {took * 1000:.0f} ms")
    _show_traffic(port, 2)

    _say(f"\n⑦ v2's next build is broken: {V2_FAILING:.0%} of its answers are 500.")
    _say("   git revert HEAD && git push — the policy is back, and so is the move to v2: a new rollout")
    v2.fail(status=500, fraction=V2_FAILING)
    _git(work, "revert", "--no-edit", "HEAD")
    rollout = _walk(work=work, api=api, port=port, until="RolledBack")
    _say(f"   the decision: step {rollout.step + 1} ({STEPS[rollout.step]}%): {rollout.message}")


@dataclass(frozen=True, slots=True)
class _Seen:
    """The rollout as one status document shows it: phase, step, the served split, whether every proxy ACKed it."""

    phase: str
    step: int
    steps: int
    v1: int
    v2: int
    acked: bool

    @classmethod
    def of(cls, status: StatusDocument) -> _Seen | None:
        rollout = next(iter(status.rollouts), None)
        if rollout is None:
            return None
        split = next(split for split in rollout.served.values() if f"{HOST}:v1" in split)
        v1, v2 = split[f"{HOST}:v1"], split[f"{HOST}:v2"]
        return cls(rollout.phase, rollout.step, rollout.steps, v1, v2, acked=status.engine.synced)

    @property
    def label(self) -> str:
        return f"step {self.step + 1} of {self.steps}" if self.phase == "Progressing" else self.phase

    @property
    def news(self) -> bool:
        """Worth a line once every proxy ACKed it; git's weights while still Progressing turn Succeeded at once."""
        return self.acked and not (self.phase == "Progressing" and self.step == self.steps)


class _Watch:
    """Polls the rollout in a thread, printing each step once every proxy ACKed it, while the bars run."""

    def __init__(self, api: str) -> None:
        self._api = api
        self._started = time.monotonic()
        self._changed = threading.Condition()
        self._polls = 0
        self._changes = 0
        self.seen: _Seen | None = None
        self.rollout: RolloutDocument | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="demo-watch", daemon=True)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def fresh(self) -> tuple[int, _Seen | None]:
        """After a poll that began after this call: how many times the rollout changed so far, and how it is."""
        with self._changed:
            wanted = self._polls + 2  # the poll running now may have read the document before this call
            if not self._changed.wait_for(lambda: self._polls >= wanted or self._stop.is_set(), timeout=30):
                raise ReconcilerError("the status API stopped answering")
            return self._changes, self.seen

    def _poll(self) -> None:
        announced: set[_Seen] = set()
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError, ValueError):
                status = _status(self._api)
                seen = _Seen.of(status)
                if seen is not None and seen.news and seen not in announced:
                    announced.add(seen)
                    mark = "✗" if seen.phase == "RolledBack" else "✓"
                    after = time.monotonic() - self._started
                    split = f"v1 {seen.v1} / v2 {seen.v2}"
                    _say(f"   {mark} {seen.label}: {split}, all proxies ACKed {after:.1f} s after the push")
                with self._changed:
                    self._changes += seen != self.seen
                    self.seen, self.rollout = seen, next(iter(status.rollouts), None)
                    self._polls += 1
                    self._changed.notify_all()


def _walk(*, work: Path, api: str, port: int, until: str, timeout: float = 40.0) -> RolloutDocument:
    """Push, then show the live split every second until two bars ran wholly in phase ``until``; the rollout then.

    A bar that ran wholly in one ACKed step (no change seen from a poll before it to a poll after it) is
    tagged with that step; a bar during which the step changed is not.
    """
    with _Watch(api) as watch:
        _push_and_sync(work=work, api=api)
        deadline = time.monotonic() + timeout
        ended = 0
        changes, seen = watch.fresh()
        while ended < 2:
            if time.monotonic() > deadline:
                raise ReconcilerError(f"the rollout was not {until} within {timeout:.0f} s (last seen: {seen})")
            result = send_at_rate(port=port, rate=100, duration=1.0, authority=HOST, workers=4)
            before, changes_before = seen, changes
            changes, seen = watch.fresh()
            if changes == changes_before and before is not None and before.news:
                _say(f"{_bar(result)}   {before.label}")
                ended += before.phase == until
            else:
                _say(_bar(result))
        assert watch.rollout is not None
        return watch.rollout


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
