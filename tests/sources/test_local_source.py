"""LocalDirSource on a real directory, with watchdog's real observer."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from reconciler.errors import Cancelled, SourceAborted, SourceError
from reconciler.sources.local import LocalDirSource
from reconciler.sources.revision import content_hash

DEBOUNCE = 0.3
# Long enough after the debounce for a loaded CI machine's inotify thread to deliver.
SETTLE = DEBOUNCE + 0.5


class _Counter:
    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self.event = threading.Event()

    def __call__(self) -> None:
        with self._lock:
            self.calls += 1
        self.event.set()

    def wait_for_call(self, timeout: float = 5.0) -> None:
        assert self.event.wait(timeout), "callback was never called"
        self.event.clear()


@pytest.fixture
def mesh(tmp_path: Path) -> Path:
    root = tmp_path / "mesh"
    (root / "routes").mkdir(parents=True)
    (root / "gateway.yaml").write_bytes(b"kind: Gateway\n")
    (root / "routes" / "vs.yml").write_bytes(b"kind: VirtualService\n")
    (root / "README.md").write_text("docs")
    (root / ".git").mkdir()
    (root / ".git" / "config.yaml").write_text("not config")
    return root


def test_read_returns_yaml_files_with_content_hash_as_sha(mesh: Path) -> None:
    revision = LocalDirSource(mesh).read()

    assert dict(revision.files) == {
        "gateway.yaml": b"kind: Gateway\n",
        "routes/vs.yml": b"kind: VirtualService\n",
    }
    assert revision.sha == content_hash(revision.files) == revision.config_tree
    assert revision.committed_at is None


def test_content_hash_ignores_file_order_and_separates_path_from_content() -> None:
    assert content_hash({"a.yaml": b"1", "b.yaml": b"2"}) == content_hash({"b.yaml": b"2", "a.yaml": b"1"})
    assert content_hash({"a.yaml": b"x"}) != content_hash({"a.yamlx": b""})


def test_poll_returns_revision_only_when_content_changes(mesh: Path) -> None:
    source = LocalDirSource(mesh)

    first = source.poll()
    unchanged = source.poll()
    (mesh / "README.md").write_text("more docs")
    still_unchanged = source.poll()
    (mesh / "gateway.yaml").write_bytes(b"kind: Gateway\nname: edited\n")
    changed = source.poll()

    assert first is not None
    assert unchanged is None
    assert still_unchanged is None
    assert changed is not None
    assert changed.sha != first.sha
    assert source.head_sha == changed.sha


def test_adding_the_removal_marker_is_a_new_revision_that_opts_in(mesh: Path) -> None:
    source = LocalDirSource(mesh)
    first = source.poll()
    (mesh / "reconciler-allow-removal").touch()

    marked = source.poll()

    assert first is not None
    assert marked is not None
    assert (first.allow_removal, marked.allow_removal) == (False, True)
    assert dict(marked.files) == dict(first.files)


def test_missing_directory_is_path_not_found(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as excinfo:
        LocalDirSource(tmp_path / "absent").read()
    assert excinfo.value.reason == "PathNotFound"


def test_local_watch_coalesces_burst_of_saves_into_one_callback(mesh: Path) -> None:
    counter = _Counter()
    # Longer than a stalled test thread or watchdog's 0.5 s wait to pair a rename's two events.
    burst_debounce = 1.0
    with LocalDirSource(mesh).watch(counter, debounce_seconds=burst_debounce):
        # What an editor's "save all" looks like: temp file, rename over, rewrite, new file.
        for round_ in range(5):
            tmp = mesh / f".gateway.yaml.tmp{round_}"
            tmp.write_bytes(b"kind: Gateway\nround: %d\n" % round_)
            os.replace(tmp, mesh / "gateway.yaml")
            (mesh / "routes" / "vs.yml").write_bytes(b"kind: VirtualService\nround: %d\n" % round_)
            time.sleep(0.01)
        (mesh / "routes" / "new.yaml").write_bytes(b"kind: DestinationRule\n")

        counter.wait_for_call()
        time.sleep(burst_debounce + 0.5)
        assert counter.calls == 1

        # A second, separate burst is a second callback.
        (mesh / "gateway.yaml").write_bytes(b"kind: Gateway\nround: final\n")
        counter.wait_for_call()
        time.sleep(burst_debounce + 0.5)
        assert counter.calls == 2

        # The watch is still alive after the quiet spell: a third change is seen.
        (mesh / "routes" / "vs.yml").write_bytes(b"kind: VirtualService\nround: final\n")
        counter.wait_for_call()
        assert counter.calls == 3


def _assert_watch_still_sees_yaml_changes(counter: _Counter, yaml_file: Path) -> None:
    """Positive control after "nothing happened": a YAML change in the same watch is seen, so the watch was alive."""
    before = counter.calls
    yaml_file.write_bytes(b"kind: Gateway\nname: control\n")
    counter.wait_for_call()
    assert counter.calls == before + 1


def test_watch_ignores_git_dir_and_non_yaml_files(mesh: Path) -> None:
    counter = _Counter()
    with LocalDirSource(mesh).watch(counter, debounce_seconds=DEBOUNCE):
        (mesh / ".git" / "config.yaml").write_text("changed")
        (mesh / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
        (mesh / "README.md").write_text("changed")
        (mesh / "gateway.yaml.swp").write_text("vim swap")
        time.sleep(SETTLE)
        assert counter.calls == 0

        _assert_watch_still_sees_yaml_changes(counter, mesh / "gateway.yaml")


def test_watch_ignores_non_yaml_files_in_subdirectories(mesh: Path) -> None:
    counter = _Counter()
    with LocalDirSource(mesh).watch(counter, debounce_seconds=DEBOUNCE):
        (mesh / "routes" / "README.md").write_text("route docs")
        (mesh / "routes" / "notes.txt").write_text("notes")
        time.sleep(SETTLE)
        assert counter.calls == 0

        _assert_watch_still_sees_yaml_changes(counter, mesh / "routes" / "vs.yml")


def test_kubernetes_configmap_update_triggers_and_reads_new_content(tmp_path: Path) -> None:
    # The layout kubelet writes for a ConfigMap volume, and its atomic update.
    root = tmp_path / "configmap"
    (root / "..2024_01").mkdir(parents=True)
    (root / "..2024_01" / "gateway.yaml").write_bytes(b"kind: Gateway\nversion: 1\n")
    (root / "..data").symlink_to("..2024_01")
    (root / "gateway.yaml").symlink_to("..data/gateway.yaml")
    source = LocalDirSource(root)
    assert dict(source.read().files) == {"gateway.yaml": b"kind: Gateway\nversion: 1\n"}

    counter = _Counter()
    with source.watch(counter, debounce_seconds=DEBOUNCE):
        (root / "..2024_02").mkdir()
        (root / "..2024_02" / "gateway.yaml").write_bytes(b"kind: Gateway\nversion: 2\n")
        (root / "..data_tmp").symlink_to("..2024_02")
        os.replace(root / "..data_tmp", root / "..data")
        counter.wait_for_call()

    assert dict(source.read().files) == {"gateway.yaml": b"kind: Gateway\nversion: 2\n"}


def test_reading_in_the_callback_does_not_retrigger_the_watch(mesh: Path) -> None:
    source = LocalDirSource(mesh)
    revisions: list[object] = []
    done = threading.Event()

    def on_change() -> None:
        revisions.append(source.read())  # opens every file: must not count as a change
        done.set()

    with source.watch(on_change, debounce_seconds=DEBOUNCE):
        (mesh / "gateway.yaml").write_bytes(b"kind: Gateway\nname: x\n")
        assert done.wait(5)
        done.clear()
        time.sleep(SETTLE)
        assert len(revisions) == 1

        # The watch is alive (and reading again would not retrigger): a real change is the second callback.
        (mesh / "gateway.yaml").write_bytes(b"kind: Gateway\nname: y\n")
        assert done.wait(5)
        time.sleep(SETTLE)
        assert len(revisions) == 2


def test_deleting_a_config_directory_triggers(mesh: Path) -> None:
    counter = _Counter()
    with LocalDirSource(mesh).watch(counter, debounce_seconds=DEBOUNCE):
        (mesh / "routes" / "vs.yml").unlink()
        (mesh / "routes").rmdir()
        counter.wait_for_call()


def test_stop_is_clean_and_drops_pending_callback(mesh: Path) -> None:
    counter = _Counter()
    # Positive control: with the same debounce, the same kind of write is a callback when the watch is not stopped.
    with LocalDirSource(mesh).watch(counter, debounce_seconds=2.0):
        (mesh / "gateway.yaml").write_bytes(b"kind: Gateway\nname: seen\n")
        counter.wait_for_call(timeout=10.0)
    assert counter.calls == 1

    threads_before = threading.active_count()
    # Long enough that even a stalled test thread stops the watch before the callback is due.
    watch = LocalDirSource(mesh).watch(counter, debounce_seconds=2.0)
    (mesh / "gateway.yaml").write_bytes(b"kind: Gateway\nname: pending\n")
    time.sleep(0.1)

    watch.start()  # already started by watch(): a no-op, not a second thread
    watch.stop()
    watch.stop()  # idempotent
    time.sleep(2.2)

    assert counter.calls == 1  # only the control's
    assert threading.active_count() <= threads_before


def test_a_failing_callback_does_not_stop_the_watch(mesh: Path) -> None:
    calls: list[int] = []
    second = threading.Event()

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("engine hiccup")
        second.set()

    with LocalDirSource(mesh).watch(flaky, debounce_seconds=DEBOUNCE):
        (mesh / "gateway.yaml").write_bytes(b"one")
        time.sleep(SETTLE)
        (mesh / "gateway.yaml").write_bytes(b"two")
        assert second.wait(5)


def test_watching_a_missing_directory_is_path_not_found(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as excinfo:
        LocalDirSource(tmp_path / "absent").watch(lambda: None)
    assert excinfo.value.reason == "PathNotFound"


def test_a_stopping_source_and_a_stopping_pass_are_the_same_failure_class() -> None:
    # An aborted poll is a source failure to whoever catches SourceError, and "stopping" to the engine.
    assert issubclass(SourceAborted, SourceError)
    assert issubclass(SourceAborted, Cancelled)


def test_a_watch_waits_the_settle_its_source_was_made_with(mesh: Path) -> None:
    counter = _Counter()
    with LocalDirSource(mesh, settle_seconds=2.0).watch(counter):
        (mesh / "gateway.yaml").write_bytes(b"kind: Gateway\nround: settle\n")
        time.sleep(DEBOUNCE)
        # Well inside the settle: a call now would mean the default (or none) was used.
        assert counter.calls == 0
        counter.wait_for_call()
        assert counter.calls == 1
