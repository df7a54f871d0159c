"""The status document: its JSON form reads back to the same document, whatever is set or missing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

from reconciler.api.document import (
    NOT_SENT,
    EngineDocument,
    ErrorDocument,
    NackDocument,
    OriginDocument,
    ProxyDocument,
    RevisionInfo,
    RolloutCounts,
    RolloutDocument,
    StatusDocument,
    TypeDocument,
)
from reconciler.validate.findings import Code, Finding, Severity

AT = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)


def finding(code: Code, severity: Severity) -> Finding:
    return Finding(
        code=code,
        severity=severity,
        message="subset v3 not found",
        file="mesh/virtualservice.yaml",
        line=17,
        path="spec.http[0].route[1].destination.subset",
        kind="VirtualService",
        namespace="default",
        name="reviews",
        hint="add the subset to the DestinationRule",
    )


def everything_set() -> StatusDocument:
    engine = EngineDocument(
        repo="https://git.example.com/mesh.git",
        branch="main",
        path="mesh",
        head_sha="b" * 40,
        served=RevisionInfo(sha="a" * 40, message="reviews: canary", author="Ada", committed_at=AT),
        origin=OriginDocument(change="rollout-step", sha="a" * 40, step="step 1 (10%)"),
        served_since=AT,
        synced_at=AT,
        synced=True,
        generation=3,
        reason="ValidationFailed",
        message="revision bbbbbbbbbbbb refused",
        last_attempt=AT,
        last_error=ErrorDocument(
            reason="ValidationFailed",
            message="1 error",
            at=AT,
            sha="b" * 40,
            findings=(finding(Code.REFERENCED_RESOURCE_NOT_FOUND, Severity.ERROR),),
        ),
        warnings=(finding(Code.UNSUPPORTED_FIELD, Severity.WARNING),),
        ready=True,
    )
    proxy = ProxyDocument(
        node_id="ingress-1",
        labels=MappingProxyType({"istio": "ingressgateway"}),
        connected_since=AT,
        snapshot_version="s2",
        acked_snapshot_version="s1",
        generation=3,
        acked_generation=2,
        types=MappingProxyType(
            {
                "CDS": TypeDocument(state="SYNCED", sent="c1", acked="c1"),
                "LDS": TypeDocument(
                    state="NACKED", sent="l2", acked="l1", nack=NackDocument(version="l2", message="port in use")
                ),
                "EDS": TypeDocument(state="STALE", sent="e2", acked="e1"),
                "RDS": TypeDocument(state=NOT_SENT),
            }
        ),
    )
    rollout = RolloutDocument(
        policy="default/reviews",
        virtual_services=("default/reviews",),
        sha="a" * 40,
        phase="RolledBack",
        step=0,
        steps=2,
        served={"default/reviews#1": {"reviews.example.com:v1": 100, "reviews.example.com:v2": 0}},
        goal={"default/reviews#1": {"reviews.example.com:v1": 0, "reviews.example.com:v2": 100}},
        canary=RolloutCounts(requests=100, errors=31),
        stable=RolloutCounts(requests=900, errors=0),
        message="rolled back at once: canary error rate 31/100 = 31% > 1%",
        decided_at=1_750_000_000.5,
        counts={
            "reviews.example.com:v1": RolloutCounts(requests=900, errors=0),
            "reviews.example.com:v2": RolloutCounts(requests=100, errors=31),
        },
        acked_at=1_749_999_990.25,
        next_look_at=1_750_000_020.25,
        deadline=1_750_000_590.25,
    )
    return StatusDocument(engine=engine, proxies=(proxy,), rollouts=(rollout,))


def test_a_document_with_every_part_set_reads_back_equal_from_its_json_text() -> None:
    document = everything_set()

    assert StatusDocument.from_json(json.loads(json.dumps(document.to_json()))) == document


def test_a_document_of_a_daemon_serving_nothing_reads_back_equal_from_its_json_text() -> None:
    engine = replace(
        everything_set().engine,
        head_sha=None,
        served=None,
        origin=None,
        served_since=None,
        synced_at=None,
        synced=False,
        generation=0,
        last_attempt=None,
        last_error=None,
        warnings=(),
        ready=False,
    )
    document = StatusDocument(engine=engine)

    assert StatusDocument.from_json(json.loads(json.dumps(document.to_json()))) == document


def test_a_rollout_without_counts_reads_back_equal_and_a_document_without_rollouts_reads_as_none() -> None:
    document = everything_set()
    [rollout] = document.rollouts
    quiet = replace(document, rollouts=(replace(rollout, canary=None, stable=None, decided_at=None),))
    body = document.to_json()
    del body["rollouts"]

    assert StatusDocument.from_json(json.loads(json.dumps(quiet.to_json()))) == quiet
    assert StatusDocument.from_json(body).rollouts == ()


def test_the_json_is_one_object_of_camel_case_keys_with_utc_times_ending_in_z_and_proxies_last() -> None:
    body = everything_set().to_json()

    assert list(body) == [
        "repo", "branch", "path", "headSha", "served", "origin", "servedSince", "syncedAt", "synced", "generation",
        "reason", "message", "lastAttempt", "lastError", "warnings", "ready", "syncedBy",
        "proxies", "rollouts", "drift",
    ]  # fmt: skip
    assert body["servedSince"] == "2025-06-01T12:00:00.123456Z"
    assert list(body["proxies"][0]["types"]) == ["CDS", "LDS", "EDS", "RDS"]
    assert body["proxies"][0]["types"]["RDS"] == {"state": "NOT SENT", "sent": None, "acked": None, "nack": None}
