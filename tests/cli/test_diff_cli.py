"""``reconciler diff`` over a real git repository: goldens for the text and Markdown views, exit codes, errors.

Each case is one commit of ``tests/support/diff_repo.py`` compared with its parent. When an
output change is intended, rewrite the golden files and review their diff like code::

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/cli/test_diff_cli.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from diff_repo import DiffRepo, build_diff_repo
from golden import assert_golden
from translate_support import GOLDEN

from reconciler.cli.main import main

pytestmark = pytest.mark.git

DIFF_GOLDEN = GOLDEN / "diff"
CHANGES = ["weight-change", "added-timeout", "removed-subset", "retries-changed", "new-service"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> DiffRepo:
    return build_diff_repo(tmp_path_factory.mktemp("diff-repo"))


def diff(repo: DiffRepo, case: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    """Exit code, stdout with the commit SHAs replaced by stable names, and stderr."""
    old, new = repo.parent(case), repo.shas[case]
    code = main(["diff", "--repo", str(repo.work), "--from", old, "--to", new, "--path", "mesh", *extra])
    captured = capsys.readouterr()
    out = captured.out
    for sha, name in ((old, "FROM"), (new, "TO")):
        out = out.replace(sha, name).replace(sha[:12], name)
    return code, out, captured.err


@pytest.mark.parametrize("case", CHANGES)
def test_a_change_prints_its_route_table_and_resources_and_exits_1(
    repo: DiffRepo, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = diff(repo, case, capsys)

    assert code == 1
    assert_golden(out, DIFF_GOLDEN / f"{case}.txt")


@pytest.mark.parametrize("case", ["weight-change", "new-service"])
def test_markdown_output_is_a_pull_request_comment(
    repo: DiffRepo, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = diff(repo, case, capsys, "--output", "markdown")

    assert code == 1
    assert "| host | route | changes |" in out
    assert_golden(out, DIFF_GOLDEN / f"{case}.md")


def test_the_route_table_says_each_change_in_a_few_characters(
    repo: DiffRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = {case: diff(repo, case, capsys, "-o", "json")[1] for case in CHANGES[:4]}
    changes = {
        case: [item for row in json.loads(out)["routes"] for item in row["changes"]] for case, out in rows.items()
    }

    assert changes == {
        "weight-change": ["v1 80→50", "v2 10→40"],
        "added-timeout": ["+ timeout 2s"],
        "removed-subset": ["v1 50→60", "- subset v3"],
        "retries-changed": ["retries 3→5"],
    }


def test_a_reorder_only_commit_is_equal_and_exits_0(repo: DiffRepo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = diff(repo, "reorder-only", capsys)

    assert code == 0
    assert out == "FROM..TO mesh/: no routing change\n"


def test_an_invalid_to_revision_exits_2_with_file_and_line(repo: DiffRepo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = diff(repo, "invalid", capsys)

    assert code == 2
    assert out == ""
    assert "mesh/reviews.yaml:18: ERROR IST0101 VirtualService bookinfo/reviews: Referenced host+subset" in err
    assert "does not validate; the daemon would refuse it" in err


def test_json_names_the_revisions_and_the_affected_proxies(repo: DiffRepo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = diff(repo, "weight-change", capsys, "-o", "json")
    document = json.loads(out)

    assert code == 1
    assert (document["from"]["sha"], document["to"]["sha"], document["path"]) == ("FROM", "TO", "mesh")
    assert document["affected"] == "sidecars: 2 of 2 namespaces: RDS only"
    assert [(p["role"], p["namespace"], p["xdsTypes"]) for p in document["proxies"]] == [
        ("sidecar", "bookinfo", ["RDS"]),
        ("sidecar", "istio-system", ["RDS"]),
        ("gateway", "istio-system", []),
    ]


def test_defaults_compare_head_with_its_parent_in_the_current_directory(
    repo: DiffRepo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo.work / "mesh")  # any directory inside the repository

    code = main(["diff", "--path", "mesh"])

    assert code == 2  # HEAD is the invalid commit
    assert "IST0101" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "no-such-rev"], "unknown revision 'no-such-rev'"),
        (["--path", "nowhere"], "'nowhere' is not a directory at"),
        (["--from=--output"], "must not start with '-'"),
    ],
)
def test_trouble_exits_2_with_a_message(
    repo: DiffRepo, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["diff", "--repo", str(repo.work), "--to", repo.shas["base"], *args])

    assert code == 2
    assert message in capsys.readouterr().err


def test_a_directory_outside_git_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["diff", "--repo", str(tmp_path)])

    assert code == 2
    assert "is not in a git repository" in capsys.readouterr().err
