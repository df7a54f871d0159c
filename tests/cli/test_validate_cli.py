"""``reconciler validate``: exit codes 0/1/2, the text line shape, the summary and the JSON document."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler.cli.main import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "validate"
VALID = FIXTURES / "valid"
INVALID = FIXTURES / "invalid"
LINE = re.compile(
    r"^(?P<file>[^:]+):(?P<line>\d+): (?P<severity>ERROR|WARNING|INFO) (?P<code>(IST|RC)\d{4})( \S+ \S+/\S*)?: "
)

GOOD_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["validate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_valid_tree_exits_0_with_what_the_daemon_would_warn_about_and_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, str(VALID), "--cluster-services")
    assert code == 0
    *warnings, summary = out.splitlines()
    # What translation cannot express yet (TLS termination, non-HTTP ports), as the daemon's status lists it.
    assert [line.split(": ")[1] for line in warnings] == [
        "WARNING RC0202 Gateway bookinfo/bookinfo-gateway",
        "WARNING RC0202 ServiceEntry bookinfo/books-api",
        "WARNING RC0202 ServiceEntry bookinfo/mysqldb",
    ]
    assert summary == "0 errors, 3 warnings, 0 info in 13 resources from 4 files"


def test_errors_exit_1_with_one_line_per_finding_sorted_then_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(INVALID / "missing-subset.yaml"), str(INVALID / "host-not-in-gateway.yaml"))
    assert code == 1
    *lines, summary = out.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert LINE.match(line), line
    # Sorted by file name: host-not-in-gateway.yaml before missing-subset.yaml.
    assert lines[0].startswith(
        f"{INVALID / 'host-not-in-gateway.yaml'}:16: WARNING IST0132 VirtualService default/blog: "
    )
    assert lines[1].startswith(f"{INVALID / 'missing-subset.yaml'}:19: ERROR IST0101 VirtualService default/reviews: ")
    assert lines[1].endswith(
        "(spec.http[0].route[1].destination.subset) — DestinationRule default/reviews for reviews defines subsets: v1"
    )
    assert summary == "1 error, 1 warning, 0 info in 4 resources from 2 files"


def test_warnings_and_info_alone_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, str(INVALID / "kubernetes-service.yaml"), str(INVALID / "unknown-destination-rule-host.yaml")
    )
    assert code == 0
    assert out.splitlines()[-1] == "0 errors, 1 warning, 1 info in 2 resources from 2 files"


def test_a_missing_path_is_a_usage_error_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, str(tmp_path / "nope"))
    assert code == 2
    assert out == ""
    assert "path does not exist" in err


@pytest.mark.parametrize(
    ("files", "targets"),
    [
        pytest.param({"README.md": "# mesh\n"}, ("README.md",), id="a non-YAML file named directly"),
        pytest.param({}, ("mesh",), id="an empty directory"),
        pytest.param(
            {"mesh/notes.txt": "hosts: [a]\n", "mesh/.draft.yaml": GOOD_VS}, ("mesh",), id="no config in a directory"
        ),
        pytest.param({"README.md": "# mesh\n"}, ("mesh", "README.md"), id="none under several paths"),
    ],
)
def test_nothing_to_check_is_a_usage_error_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, files: dict[str, str], targets: tuple[str, ...]
) -> None:
    # A mistyped path must not read as "0 errors".
    (tmp_path / "mesh").mkdir()
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    paths = [str(tmp_path / target) for target in targets]
    code, out, err = run(capsys, *paths)
    assert code == 2
    assert out == ""
    assert err.startswith(f"reconciler: error: no *.yaml or *.yml files under {', '.join(paths)}; ")
    assert err.rstrip().endswith("directories are searched recursively, skipping hidden files and directories")


def test_a_path_without_config_beside_one_with_config_is_checked_as_usual(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "vs.yaml").write_text(GOOD_VS)
    (tmp_path / "README.md").write_text("# mesh\n")
    code, out, err = run(capsys, str(tmp_path / "vs.yaml"), str(tmp_path / "README.md"), "--cluster-services")
    assert (code, err) == (0, "")
    assert out == "0 errors, 0 warnings, 0 info in 1 resource from 1 file\n"


def test_no_path_at_all_is_a_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["validate"])
    assert exit_info.value.code == 2
    assert "PATH" in capsys.readouterr().err


def test_json_output_has_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--format", "json", str(INVALID / "missing-subset.yaml"))
    assert code == 1
    document = json.loads(out)
    assert set(document) == {"findings", "resources"}
    assert document["resources"] == 2
    (finding,) = document["findings"]
    assert set(finding) == {"code", "severity", "file", "line", "path", "kind", "namespace", "name", "message", "hint"}
    assert (finding["code"], finding["severity"], finding["line"]) == ("IST0101", "error", 19)
    assert finding["path"] == "spec.http[0].route[1].destination.subset"


def test_json_output_names_the_resource_of_a_duplicate_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "vs.yaml").write_text(
        GOOD_VS.replace("  hosts: [reviews]\n", "  hosts: [reviews]\n  hosts: [reviews]\n")
    )
    code, out, _ = run(capsys, "--format", "json", "--namespace", "shop", str(tmp_path))
    assert code == 1
    (finding,) = json.loads(out)["findings"]
    assert (finding["code"], finding["line"], finding["path"]) == ("RC0005", 6, "spec.hosts")
    assert (finding["kind"], finding["namespace"], finding["name"]) == ("VirtualService", "shop", "reviews")


def test_json_output_of_a_clean_tree(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "vs.yaml").write_text(GOOD_VS)
    code, out, _ = run(capsys, "--format=json", "--cluster-services", str(tmp_path))
    assert code == 0
    assert json.loads(out) == {"findings": [], "resources": 1}


def test_namespace_option_sets_the_default_namespace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "vs.yaml").write_text(GOOD_VS.replace("hosts: [reviews]", "hosts: []"))
    code, out, _ = run(capsys, "--namespace", "shop", str(tmp_path))
    assert code == 1
    assert " VirtualService shop/reviews: " in out


def test_only_yaml_files_are_read_from_directories(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD_VS)
    (tmp_path / "notes.txt").write_text("not: [yaml")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "b.yml").write_text(
        GOOD_VS.replace("name: reviews", "name: other").replace("[reviews]", "[other]")
    )
    code, out, _ = run(capsys, str(tmp_path), "--cluster-services")
    assert code == 0
    assert out == "0 errors, 0 warnings, 0 info in 2 resources from 2 files\n"


def test_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "reconciler validate mesh/" in out
    assert "--format json" in out
    assert "exit status" in out
    assert "IST0101" in out


def test_a_route_to_a_kubernetes_service_is_warned_about_only_without_cluster_services(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "vs.yaml").write_text(GOOD_VS.replace("{host: reviews}", "{host: ratings, port: {number: 9080}}"))

    plain = run(capsys, str(tmp_path))
    beside_a_cluster = run(capsys, str(tmp_path), "--cluster-services")
    another_domain = run(capsys, str(tmp_path), "--cluster-services", "--cluster-domain", "corp.internal")

    assert plain[0] == beside_a_cluster[0] == another_domain[0] == 0  # a warning, never an error
    assert "RC0202" in plain[1]
    assert "ratings.default.svc.cluster.local is not in the service registry" in plain[1]
    assert "RC0202" not in beside_a_cluster[1]
    assert "0 warnings" in beside_a_cluster[1]
    assert "RC0202" in another_domain[1]  # its Services are named *.svc.corp.internal
