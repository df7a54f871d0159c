"""Webhook verification (pure): GitHub signatures, GitLab tokens, push payloads, the secret's source."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from webhooks import PUSH, SECRET, SHA, sign

from reconciler.errors import SignatureError, SourceError, UsageError
from reconciler.sources.webhook import (
    Provider,
    PushEvent,
    detect_provider,
    load_secret,
    loads_bounded,
    parse_push_event,
    verify_github_signature,
    verify_gitlab_token,
)


def test_github_signature_example_from_the_docs_verifies() -> None:
    # The worked example in GitHub's "Validating webhook deliveries" documentation.
    verify_github_signature(
        b"Hello, World!",
        header="sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        secret=SECRET,
    )


@pytest.mark.parametrize(
    "header",
    [None, "", "sha1=abc", "sha256=", "sha256=" + "0" * 64, "sha256=zz", "sha256=é"],
)
def test_bad_github_signatures_raise(header: str | None) -> None:
    with pytest.raises(SignatureError) as excinfo:
        verify_github_signature(PUSH, header=header, secret=SECRET)
    assert excinfo.value.reason == "BadSignature"


def test_github_signature_from_another_secret_raises() -> None:
    with pytest.raises(SignatureError):
        verify_github_signature(PUSH, header=sign(PUSH, b"other"), secret=SECRET)


def test_empty_secret_never_verifies() -> None:
    with pytest.raises(SignatureError):
        verify_github_signature(PUSH, header=sign(PUSH, b""), secret=b"")
    with pytest.raises(SignatureError):
        verify_gitlab_token("", b"")


def test_gitlab_token_verified() -> None:
    verify_gitlab_token(SECRET.decode(), SECRET)
    for wrong in (None, "", "It's a Secret", SECRET.decode() + "!"):
        with pytest.raises(SignatureError):
            verify_gitlab_token(wrong, SECRET)


def test_push_events_are_parsed_for_both_providers() -> None:
    github = parse_push_event(provider="github", headers={"x-github-event": "push"}, body=PUSH)
    gitlab = parse_push_event(
        provider=Provider.GITLAB,
        headers={"X-Gitlab-Event": "Push Hook"},
        body=json.dumps({"object_kind": "push", "ref": "refs/heads/release", "after": SHA}).encode(),
    )

    assert github == PushEvent(ref="refs/heads/main", after_sha=SHA, provider=Provider.GITHUB)
    assert github.branch == "main"
    assert gitlab is not None
    assert gitlab.branch == "release"
    assert PushEvent(ref="refs/tags/v1", after_sha=SHA, provider=Provider.GITHUB).branch is None


def test_ping_and_other_events_do_not_sync() -> None:
    assert parse_push_event(provider="github", headers={"X-GitHub-Event": "ping"}, body=b'{"zen": "hi"}') is None
    assert parse_push_event(provider="github", headers={"X-GitHub-Event": "issues"}, body=b"{}") is None
    assert parse_push_event(provider="gitlab", headers={"X-Gitlab-Event": "Merge Request Hook"}, body=b"{}") is None


def test_form_encoded_github_payload_is_parsed() -> None:
    body = urlencode({"payload": PUSH.decode()}).encode()
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/x-www-form-urlencoded"}

    event = parse_push_event(provider="github", headers=headers, body=body)

    assert event is not None
    assert event.after_sha == SHA


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"ref": "refs/heads/main"}', b"\xff\xfe"])
def test_malformed_push_payload_is_bad_payload(body: bytes) -> None:
    with pytest.raises(SourceError) as excinfo:
        parse_push_event(provider="github", headers={"X-GitHub-Event": "push"}, body=body)
    assert excinfo.value.reason == "BadPayload"


def test_provider_is_detected_from_headers() -> None:
    assert detect_provider({"x-hub-signature-256": "sha256=00"}) is Provider.GITHUB
    assert detect_provider({"X-GitHub-Event": "ping"}) is Provider.GITHUB
    assert detect_provider({"X-Gitlab-Token": "t"}) is Provider.GITLAB
    assert detect_provider({"Content-Type": "application/json"}) is None


def test_secret_is_loaded_from_file_before_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(b"from-file\n")
    monkeypatch.setenv("RECONCILER_WEBHOOK_SECRET", "from-env")

    assert load_secret(file=secret_file, env_var="RECONCILER_WEBHOOK_SECRET") == b"from-file"
    assert load_secret(file=None, env_var="RECONCILER_WEBHOOK_SECRET") == b"from-env"
    monkeypatch.setenv("RECONCILER_WEBHOOK_SECRET", "  ")
    assert load_secret(file=None, env_var="RECONCILER_WEBHOOK_SECRET") is None
    assert load_secret(file=None, env_var=None) is None


def test_unreadable_or_empty_secret_file_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")
    with pytest.raises(UsageError):
        load_secret(file=tmp_path / "missing", env_var=None)
    with pytest.raises(UsageError):
        load_secret(file=empty, env_var=None)


def test_json_nesting_past_the_bound_is_a_payload_error_and_brackets_inside_strings_do_not_count() -> None:
    assert loads_bounded('{"a": [[1]], "b": "[[[[[[[[\\"]]"}', max_depth=3) == {"a": [[1]], "b": '[[[[[[[["]]'}
    with pytest.raises(SourceError, match="deeper than 3"):
        loads_bounded('{"a": [[[1]]]}', max_depth=3)
    with pytest.raises(SourceError, match="deeper than"):
        loads_bounded("[" * 100_000 + "]" * 100_000, max_depth=64)
