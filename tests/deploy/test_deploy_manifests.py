"""deploy/: the kustomize bases render, validate against the Kubernetes schema, and agree with each other.

Rendered in Python (``kustomize_render``; no kustomize library exists for Python) and, where ``kubectl``
is installed, checked against ``kubectl kustomize``. Validated with ``kubernetes-validate`` (strict:
unknown fields are errors) against the oldest Kubernetes version docs/operations.md supports and the
newest the package knows.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kustomize_render import CLUSTER_SCOPED, Manifest, render

from reconciler.cli.main import main
from reconciler.engine.settings import KubeSettings
from reconciler.kube.apply import CRD_MODE_CALLS
from reconciler.kube.istio import PLURALS
from reconciler.kube.lease import API_CALLS, ApiCall

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"
GATEWAY = ROOT / "deploy" / "gateway"
CRD_MODE = ROOT / "deploy" / "crd-mode"
#: The oldest Kubernetes docs/operations.md#kubernetes supports, and the newest schema kubernetes-validate has.
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())
DAEMON_NAMESPACE = "mesh-system"
GATEWAY_NAMESPACE = "mesh-gateways"


#: Flags the Deployment passes that other work in issue 11 adds (xDS TLS, API tokens); not in `run --help` yet.
def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    [found] = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    return found


def pod_spec(deployment: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def flag_values(args: list[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


@pytest.fixture(scope="module")
def base() -> list[Manifest]:
    return render(BASE)


@pytest.fixture(scope="module")
def gateway() -> list[Manifest]:
    return render(GATEWAY)


@pytest.fixture(scope="module")
def crd_mode() -> list[Manifest]:
    return render(CRD_MODE)


def every_manifest() -> Iterator[tuple[str, Manifest]]:
    for directory in (BASE, GATEWAY, CRD_MODE):
        for manifest in render(directory):
            yield f"{directory.name}/{manifest['kind']}/{manifest['metadata']['name']}", manifest


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_manifest_is_valid_for_the_documented_kubernetes_versions(version: str) -> None:
    problems = {}
    for name, manifest in every_manifest():
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems[name] = error.message
    assert problems == {}


def test_the_schema_check_refuses_a_misspelt_field_so_the_check_above_can_fail(base: list[Manifest]) -> None:
    deployment = one(base, "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 1}}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed")
@pytest.mark.parametrize("directory", [BASE, GATEWAY, CRD_MODE], ids=lambda path: path.name)
def test_the_python_rendering_is_what_kubectl_kustomize_builds(directory: Path) -> None:
    built = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True)

    def by_name(manifests: list[Manifest]) -> dict[tuple[str, str], Manifest]:
        return {(m["kind"], m["metadata"]["name"]): m for m in manifests}

    assert by_name(render(directory)) == by_name(list(yaml.safe_load_all(built.stdout)))


def test_every_object_lives_in_its_kustomizations_namespace(base: list[Manifest], gateway: list[Manifest]) -> None:
    for manifests, namespace in ((base, DAEMON_NAMESPACE), (gateway, GATEWAY_NAMESPACE)):
        assert one(manifests, "Namespace")["metadata"]["name"] == namespace
        namespaced = [m for m in manifests if m["kind"] not in CLUSTER_SCOPED]
        assert {m["metadata"]["namespace"] for m in namespaced} == {namespace}
        # The files say it too, so a reader (or `kubectl apply -f` on one file) sees the same namespace.
        directory = BASE if namespace == DAEMON_NAMESPACE else GATEWAY
        for path in directory.glob("*.yaml"):
            for document in yaml.safe_load_all(path.read_text()):
                if document and document.get("kind") not in (None, *CLUSTER_SCOPED, "Kustomization"):
                    assert document["metadata"].get("namespace") == namespace, path.name


def test_the_gateways_bootstrap_dials_the_daemons_service_on_its_xds_port(
    base: list[Manifest], gateway: list[Manifest]
) -> None:
    service = one(base, "Service", "reconciler")
    bootstrap = yaml.safe_load(one(gateway, "ConfigMap", "envoy-bootstrap")["data"]["envoy.yaml"])
    [xds_cluster] = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "xds_cluster"]
    address = xds_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    [xds_port] = [p for p in service["spec"]["ports"] if p["name"] == "grpc-xds"]

    assert address == {"address": f"reconciler.{DAEMON_NAMESPACE}.svc", "port_value": xds_port["port"]}
    assert bootstrap["node"]["metadata"]["NAMESPACE"] == GATEWAY_NAMESPACE


def test_the_daemons_listen_addresses_ports_and_probes_agree_with_its_service(base: list[Manifest]) -> None:
    deployment = one(base, "Deployment", "reconciler")
    [container] = pod_spec(deployment)["containers"]
    flags = flag_values(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = one(base, "Service", "reconciler")

    assert port_of(flags["--xds-address"]) == ports["grpc-xds"]
    assert port_of(flags["--http-address"]) == ports["http"]
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {"grpc-xds": "grpc-xds", "http": "http"}
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    # Replicas elect a leader; a follower is never Ready, so a rolling update would wait for it forever.
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-elect" in container["args"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "persistentVolumeClaim" not in str(pod_spec(deployment)["volumes"])  # per-pod state


@pytest.mark.parametrize("directory", [BASE, CRD_MODE], ids=lambda path: path.name)
def test_the_daemon_is_started_only_with_flags_reconciler_run_knows(
    directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    known = set(re.findall(r"--[a-z][a-z-]+", capsys.readouterr().out))
    [container] = pod_spec(one(render(directory), "Deployment", "reconciler"))["containers"]

    assert container["args"][0] == "run"
    assert set(flag_values(container["args"])) - known == set()


def test_every_file_the_daemon_is_given_is_mounted_from_a_secret_of_the_base(base: list[Manifest]) -> None:
    spec = pod_spec(one(base, "Deployment", "reconciler"))
    [container] = spec["containers"]
    secrets = {m["metadata"]["name"]: m for m in base if m["kind"] == "Secret"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    files = [
        value
        for flag, value in flag_values(container["args"]).items()
        if flag.endswith(("-file", "-cert", "-key", "-ca"))
    ]

    assert files
    for path in files:
        directory, _, key = path.rpartition("/")
        volume = mounts[directory]
        assert volume["secret"]["secretName"] in secrets, path
        assert key in secrets[volume["secret"]["secretName"]]["stringData"], path
    assert set(secrets) == {v["secret"]["secretName"] for v in volumes.values() if "secret" in v}


def test_no_secret_value_is_checked_in(base: list[Manifest], gateway: list[Manifest]) -> None:
    for secret in (m for m in [*base, *gateway] if m["kind"] == "Secret"):
        assert "data" not in secret, secret["metadata"]["name"]
        assert set(secret["stringData"].values()) == {""}, secret["metadata"]["name"]


def test_pods_run_as_non_root_with_a_read_only_root_and_only_the_daemon_mounts_an_api_token(
    base: list[Manifest], gateway: list[Manifest]
) -> None:
    manifests = [*base, *gateway]
    # The proxies call no Kubernetes API: no RBAC object, no token. The daemon's pod mounts its token (the
    # Lease, the endpoints); its account does not mount one into anything else (docs/operations.md).
    rbac = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    assert [m["kind"] for m in gateway if m["kind"] in rbac] == []
    accounts = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ServiceAccount"}
    assert all(account["automountServiceAccountToken"] is False for account in accounts.values())
    for deployment in (m for m in manifests if m["kind"] == "Deployment"):
        spec = pod_spec(deployment)
        assert spec["serviceAccountName"] in accounts
        assert spec["automountServiceAccountToken"] is (deployment in base)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert ":" in container["image"]
            assert not container["image"].endswith(":latest")
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}


def granted(base: list[Manifest]) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) the daemon's ServiceAccount is bound to, through any Role or ClusterRole."""
    roles = {(m["kind"], m["metadata"]["name"]): m for m in base if m["kind"] in {"Role", "ClusterRole"}}
    found = set()
    for binding in (m for m in base if m["kind"] in {"RoleBinding", "ClusterRoleBinding"}):
        subjects = {(s["kind"], s["name"], s.get("namespace")) for s in binding["subjects"]}
        assert subjects == {("ServiceAccount", "reconciler", DAEMON_NAMESPACE)}
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        for rule in role["rules"]:
            found |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return found


def test_every_verb_granted_to_the_daemon_is_one_its_code_makes_and_every_call_is_granted(
    base: list[Manifest],
) -> None:
    assert granted(base) == used(API_CALLS)
    assert not {verb for _, _, verb in used(API_CALLS)} & {
        "*",
        "delete",
        "deletecollection",
        "patch",
        "escalate",
        "bind",
    }


def used(calls: tuple[ApiCall, ...]) -> set[tuple[str, str, str]]:
    return {(call.group, call.resource, verb) for call in calls for verb in call.verbs}


def test_crd_mode_grants_exactly_the_calls_of_the_base_and_of_crd_mode(crd_mode: list[Manifest]) -> None:
    assert granted(crd_mode) == used(API_CALLS) | used(CRD_MODE_CALLS)


def test_crd_mode_deletes_and_patches_only_istio_objects_and_its_own_inventory(crd_mode: list[Manifest]) -> None:
    writes = {"patch", "delete"}
    istio = {("networking.istio.io", plural) for plural in PLURALS.values()}
    assert {(g, r) for g, r, verb in granted(crd_mode) if verb in writes} == istio | {("", "configmaps")}
    # The inventory's default: KubeSettings' name, in the daemon's own namespace (where the Role is).
    role = one(crd_mode, "Role", "reconciler-inventory")
    [rule] = role["rules"]
    assert rule["resourceNames"] == [KubeSettings().inventory_name]
    assert role["metadata"]["namespace"] == DAEMON_NAMESPACE
    [container] = pod_spec(one(crd_mode, "Deployment", "reconciler"))["containers"]
    assert {"--sink=kubernetes", "--in-cluster"} <= set(container["args"])
    assert not any(arg.startswith("--inventory") for arg in container["args"])


def test_the_daemons_writes_are_limited_to_its_own_lease_and_configmap_by_name(base: list[Manifest]) -> None:
    role = one(base, "Role", "reconciler-leader")
    for rule in role["rules"]:
        # create cannot name its object; get and update can, and do.
        assert set(rule["verbs"]) == {"create"} or rule["resourceNames"] in (["reconciler"], ["reconciler-rollouts"])
    [container] = pod_spec(one(base, "Deployment", "reconciler"))["containers"]
    assert "--leader-elect-resource-name" not in flag_values(container["args"])  # the default: "reconciler"


def test_the_network_policy_admits_proxies_to_xds_and_only_the_webhook_source_to_the_api(
    base: list[Manifest], gateway: list[Manifest]
) -> None:
    policy = one(base, "NetworkPolicy", "reconciler")["spec"]
    daemon = one(base, "Deployment", "reconciler")
    gateway_pods = one(gateway, "Deployment", "ingressgateway")["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in pod_spec(daemon)["containers"][0]["ports"]}
    rules = {rule["ports"][0]["port"]: rule for rule in policy["ingress"]}

    assert policy["podSelector"]["matchLabels"].items() <= daemon["spec"]["template"]["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]
    assert all(len(rule["ports"]) == 1 and rule["from"] for rule in policy["ingress"])  # no rule opens every port
    assert set(rules) == {ports["grpc-xds"], ports["http"]}
    [proxies] = rules[ports["grpc-xds"]]["from"]
    assert proxies["podSelector"]["matchLabels"].items() <= gateway_pods.items()
    assert [list(peer) for peer in rules[ports["http"]]["from"]] == [["ipBlock"]]


def test_every_documented_address_of_the_daemon_names_its_namespace() -> None:
    texts = {
        path.relative_to(ROOT): path.read_text()
        for pattern in ("deploy/**/*.yaml", "deploy/**/*.md", "docs/*.md", "README.md", "reconciler/cli/*.py")
        for path in ROOT.glob(pattern)
    }
    addresses = {
        (str(path), match)
        for path, text in texts.items()
        for match in re.findall(r"reconciler\.[a-z0-9-]+(?:\.svc)?(?::\d+)?", text)
        if re.search(r"\.svc|:\d+", match)
    }
    assert addresses
    assert {(path, a) for path, a in addresses if not a.startswith(f"reconciler.{DAEMON_NAMESPACE}")} == set()
