"""The Istio CRDs shipped for the tests are Istio's official ones, trimmed (tests/support/istio_crds.py)."""

from __future__ import annotations

import pytest
import yaml
from istio_crds import FIXTURE, KINDS, SHARED, trimmed


def test_the_shipped_crds_are_the_four_kinds_applied_in_every_version_istio_serves() -> None:
    documents = list(yaml.safe_load_all(FIXTURE.read_text()))
    assert sorted(d["spec"]["names"]["kind"] for d in documents) == sorted(KINDS)
    for document in documents:
        assert document["apiVersion"] == "apiextensions.k8s.io/v1"
        assert [v["name"] for v in document["spec"]["versions"]] == ["v1", "v1alpha3", "v1beta1"]


def test_the_shipped_crds_keep_istios_licence_notice() -> None:
    header = FIXTURE.read_text().split("apiVersion:", 1)[0]
    assert "Licensed under the Apache License, Version 2.0" in header
    assert "Copyright Istio Authors" in header


@pytest.mark.skipif(not SHARED.is_file(), reason="../shared/istio/networking-crds.yaml is not on this machine")
def test_the_shipped_crds_equal_istios_official_schemas_trimmed() -> None:
    assert list(yaml.safe_load_all(FIXTURE.read_text())) == trimmed(SHARED.read_text())
