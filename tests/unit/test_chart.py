"""The Helm chart, the plain manifests and the images: lint, render with the values users set,
and check what the README promises.

Uses the `helm` (v4) built from its Go module by hack/control-plane/build.sh (or $HELM). Without
it the chart tests are skipped, unless KUBELOAD_REQUIRE_HELM=1 (then they fail). No image can be
built here (no Docker engine): the Dockerfile checks read them and run the entry points they call.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeload.api.manifest import load_manifests

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubeload"
NAMESPACE = "kubeload-system"
WORKLOAD_KINDS = {"Deployment", "Pod"}


def find_helm() -> str | None:
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    cache_root = Path(os.environ.get("KUBELOAD_CACHE", Path.home() / ".cache" / "kubeload"))
    built = sorted((cache_root / "control-plane").glob("*/bin/helm"), key=lambda p: p.stat().st_mtime)
    if built:
        return str(built[-1])
    return shutil.which("helm")


HELM = find_helm()
NO_HELM = "no helm binary: run hack/control-plane/build.sh (builds helm v4 from its Go module) or set HELM"
if HELM is None and os.environ.get("KUBELOAD_REQUIRE_HELM") == "1":
    pytest.fail(NO_HELM, pytrace=False)
needs_helm = pytest.mark.skipif(HELM is None, reason=NO_HELM)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    proc = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


@cache
def render(*sets: str) -> tuple[dict[str, Any], ...]:
    """`helm template` with `--set` arguments; the objects, hooks included."""
    args = ["template", "kl", str(CHART), "--namespace", NAMESPACE]
    for item in sets:
        args += ["--set", item]
    docs = yaml.safe_load_all(helm(*args).stdout)
    return tuple(doc for doc in docs if doc)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]


def operator_deployment(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    return one(objects, "Deployment")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])}


# ------------------------------------------------------------------------------- the chart


def test_chart_version_follows_the_package() -> None:
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == package, "charts/kubeload/Chart.yaml version != pyproject.toml version"
    assert chart["appVersion"] == package, "charts/kubeload/Chart.yaml appVersion != pyproject.toml version"


def test_chart_crd_copy_is_in_sync() -> None:
    copy = (CHART / "files" / "crds" / "loadtest.yaml").read_text()
    assert copy == (ROOT / "crds" / "loadtest.yaml").read_text(), \
        "charts/kubeload/files/crds/loadtest.yaml drifted from crds/loadtest.yaml: run `make crd`"


@needs_helm
def test_lint_is_clean() -> None:
    for sets in ([], ["rbac.namespaced=true", "watchNamespaces={team-a}"], ["metrics.serviceMonitor.enabled=true"]):
        args = ["lint", "--strict", str(CHART)]
        for item in sets:
            args += ["--set", item]
        proc = helm(*args)
        assert "0 chart(s) failed" in proc.stdout, proc.stdout


def documented_keys(text: str) -> set[str]:
    """Dotted paths of the keys of values.yaml that have a `# --` comment right above them."""
    sys.path.insert(0, str(ROOT / "hack"))
    from update_readme import documented_values

    return {path for path, _ in documented_values(text)}


def leaves(values: dict[str, Any], documented: set[str], prefix: str = "") -> Iterator[str]:
    """Paths that must be documented: a key is enough for everything under it."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in documented:
            continue
        if isinstance(value, dict) and value:
            yield from leaves(value, documented, path + ".")
        else:
            yield path


def test_every_value_is_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    undocumented = list(leaves(yaml.safe_load(text), documented_keys(text)))
    assert undocumented == [], f"values without a `# --` comment: {undocumented}"


def test_the_schema_knows_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def check(node: dict[str, Any], data: dict[str, Any], path: str) -> None:
        properties = node.get("properties", {})
        for key, value in data.items():
            assert key in properties, f"{path}{key} is not in values.schema.json"
            if isinstance(value, dict) and properties[key].get("properties"):
                check(properties[key], value, f"{path}{key}.")
        for key in properties:
            assert key in data or key == "global", f"values.schema.json has {path}{key}, values.yaml does not"

    check(schema, values, "")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("liveness.port=http", "'/liveness/port': got string, want integer"),
        ("crds.enabled=maybe", "'/crds/enabled': got string, want boolean"),
        ("logFormat=xml", "'/logFormat': value must be one of"),
        ("watchNamespaces=team-a", "'/watchNamespaces': got string, want array"),
        ("crd.enabled=false", "additional properties 'crd' not allowed"),  # a typo is refused, not ignored
        ("worker.resources.limits.cpu=lots", "'/worker/resources/limits/cpu'"),
    ],
)
@needs_helm
def test_the_schema_refuses_a_bad_value(setting: str, message: str) -> None:
    proc = helm("template", "kl", str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0, f"--set {setting} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr and message in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------ RBAC


def rbac_rules(objects: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{o['kind']}/{o['metadata']['name']}", rule)
            for o in objects if o["kind"] in ("Role", "ClusterRole") for rule in o["rules"]]


@needs_helm
@pytest.mark.parametrize("sets", [(), ("rbac.namespaced=true", "watchNamespaces={team-a,team-b}")])
def test_rbac_has_no_wildcards(sets: tuple[str, ...]) -> None:
    rules = rbac_rules(render(*sets))
    assert rules
    for where, rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in item for item in rule.get(field, [])), f"{where}: wildcard in {field}: {rule}"
        assert set(rule["verbs"]) <= {"get", "list", "watch", "create", "patch", "update", "delete"}, rule


@needs_helm
def test_cluster_wide_rbac_by_default() -> None:
    objects = render()
    assert not of_kind(objects, "Role") and not of_kind(objects, "RoleBinding")
    role = next(o for o in of_kind(objects, "ClusterRole") if o["metadata"]["name"] == "kl-kubeload")
    binding = next(o for o in of_kind(objects, "ClusterRoleBinding") if o["metadata"]["name"] == "kl-kubeload")
    assert binding["roleRef"]["name"] == "kl-kubeload"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kl-kubeload", "namespace": NAMESPACE}]
    granted = {(group, resource): set(rule["verbs"])
               for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]}
    assert granted[("kubeload.dev", "loadtests")] == {"list", "watch", "patch", "delete"}
    assert granted[("kubeload.dev", "loadtests/status")] == {"patch"}
    assert granted[("batch", "jobs")] == {"get", "create", "patch", "delete"}
    assert granted[("", "secrets")] == {"get", "create", "delete"}
    assert granted[("", "pods")] == {"list"}
    assert granted[("", "events")] == {"create"}
    assert granted[("apiextensions.k8s.io", "customresourcedefinitions")] == {"list", "watch"}
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "kl-kubeload"


@needs_helm
def test_namespaced_rbac_only_in_the_watched_namespaces() -> None:
    objects = render("rbac.namespaced=true", "watchNamespaces={team-a,team-b}")
    roles, bindings = of_kind(objects, "Role"), of_kind(objects, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kl-kubeload"}
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    # Nothing cluster-wide for the operator; the `helm test` identity may only read the CRD.
    cluster_roles = of_kind(objects, "ClusterRole")
    assert [r["metadata"]["name"] for r in cluster_roles] == ["kl-kubeload-test"]
    assert cluster_roles[0]["rules"] == [{"apiGroups": ["apiextensions.k8s.io"],
                                          "resources": ["customresourcedefinitions"],
                                          "resourceNames": ["loadtests.kubeload.dev"], "verbs": ["get"]}]
    assert [b["metadata"]["name"] for b in of_kind(objects, "ClusterRoleBinding")] == ["kl-kubeload-test"]
    container = operator_deployment(objects)["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["KUBELOAD_NAMESPACES"] == "team-a,team-b"


@needs_helm
def test_namespaced_rbac_needs_watched_namespaces() -> None:
    proc = helm("template", "kl", str(CHART), "--set", "rbac.namespaced=true", check=False)
    assert proc.returncode != 0 and "watchNamespaces" in proc.stderr


@needs_helm
def test_no_rbac_when_disabled() -> None:
    objects = render("rbac.create=false", "tests.enabled=false")
    assert not [o for o in objects if o["apiVersion"].startswith("rbac.authorization.k8s.io")]


# ------------------------------------------------------------------------------------- CRD


@needs_helm
def test_crd_installed_and_kept_by_default() -> None:
    crd = one(render(), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    generated = yaml.safe_load((ROOT / "crds" / "loadtest.yaml").read_text())
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["name"] == generated["metadata"]["name"]


@needs_helm
def test_crd_not_kept_when_keep_is_false() -> None:
    crd = one(render("crds.keep=false"), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


@needs_helm
def test_crd_absent_when_disabled() -> None:
    assert not of_kind(render("crds.enabled=false"), "CustomResourceDefinition")


# ------------------------------------------------------------------------- the operator pod


def pod_specs(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    specs = [o["spec"]["template"]["spec"] for o in of_kind(objects, "Deployment")]
    return specs + [o["spec"] for o in of_kind(objects, "Pod")]


@needs_helm
@pytest.mark.parametrize("sets", [(), ("networkPolicy.enabled=true", "metrics.serviceMonitor.enabled=true")])
def test_security_contexts_are_hardened(sets: tuple[str, ...]) -> None:
    specs = pod_specs(render(*sets))
    assert len(specs) == 2  # the operator and the `helm test` Pod
    for spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 65532
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert "privileged" not in sc or sc["privileged"] is False
            assert container["resources"]["limits"]["memory"]


@needs_helm
def test_operator_deployment() -> None:
    objects = render()
    deployment = operator_deployment(objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    labels = deployment["metadata"]["labels"]
    assert labels["helm.sh/chart"] == "kubeload-" + yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by", "app.kubernetes.io/component"):
        assert key in labels
    template = deployment["spec"]["template"]
    # Each LoadTest's Redis NetworkPolicy lets in pods with these labels (OperatorSettings.operator_selector).
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "kubeload"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    assert template["metadata"]["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                                                   "prometheus.io/path": "/metrics"}
    container = template["spec"]["containers"][0]
    assert container["args"][:2] == ["operator", "--liveness=http://0.0.0.0:8080/healthz"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"healthz": 8080, "metrics": 9090}
    env = env_of(container)
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert env["KUBELOAD_WORKER_IMAGE"] == f"ghcr.io/kubeload/kubeload:{version}"
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+-alpine", env["KUBELOAD_REDIS_IMAGE"])
    assert env["KUBELOAD_NAMESPACES"] == ""
    assert env["KUBELOAD_LOG_FORMAT"] == "json"
    assert env["KUBELOAD_METRICS_PORT"] == "9090"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert json.loads(env["KUBELOAD_DEFAULT_WORKER_RESOURCES"]) == values["worker"]["resources"]
    assert container["image"] == f"ghcr.io/kubeload/kubeload-operator:{version}"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp"}


@needs_helm
def test_operator_settings_from_values() -> None:
    objects = render("worker.image.tag=9.9.9", "redis.image.tag=7.2.5", "logFormat=plain",
                     "image.digest=sha256:" + "a" * 64, "metrics.enabled=false",
                     "nodeSelector.pool=load", "tolerations[0].key=dedicated", "tolerations[0].operator=Exists")
    spec = operator_deployment(objects)["spec"]["template"]["spec"]
    env = env_of(spec["containers"][0])
    assert env["KUBELOAD_WORKER_IMAGE"].endswith(":9.9.9")
    assert env["KUBELOAD_REDIS_IMAGE"] == "redis:7.2.5"
    assert env["KUBELOAD_LOG_FORMAT"] == "plain"
    assert env["KUBELOAD_METRICS_PORT"] == "0"
    assert spec["containers"][0]["image"] == "ghcr.io/kubeload/kubeload-operator@sha256:" + "a" * 64
    assert spec["nodeSelector"] == {"pool": "load"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert "annotations" not in operator_deployment(objects)["spec"]["template"]["metadata"]
    service = one(objects, "Service")
    assert [p["name"] for p in service["spec"]["ports"]] == ["healthz"]


@needs_helm
def test_service_monitor_only_when_enabled() -> None:
    assert not of_kind(render(), "ServiceMonitor")
    objects = render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom")
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert "metrics" in [p["name"] for p in service["spec"]["ports"]]


@needs_helm
def test_network_policy_option() -> None:
    assert not of_kind(render(), "NetworkPolicy")
    policy = one(render("networkPolicy.enabled=true"), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    template_labels = operator_deployment(render())["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert {53, 443, 6443, 6379} <= egress_ports


@needs_helm
def test_helm_test_hook() -> None:
    objects = render()
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "hook-succeeded" in pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    container = pod["spec"]["containers"][0]
    assert container["command"][:2] == ["python", "-c"]
    assert container["command"][2] == (CHART / "files" / "helm-test.py").read_text()
    assert env_of(container)["KUBELOAD_TEST_LIVENESS_URL"] == f"http://kl-kubeload.{NAMESPACE}.svc:8080/healthz"
    assert pod["spec"]["serviceAccountName"] == "kl-kubeload-test"
    assert not of_kind(render("tests.enabled=false"), "Pod")


def test_helm_test_script_fails_clearly_when_nothing_answers(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    env = {**os.environ, "KUBELOAD_TEST_API_SERVER": "https://127.0.0.1:9", "KUBELOAD_TEST_TOKEN_FILE": str(token),
           "KUBELOAD_TEST_CA_FILE": str(token), "KUBELOAD_TEST_LIVENESS_URL": "http://127.0.0.1:9/healthz",
           "KUBELOAD_TEST_TIMEOUT": "0"}
    script = (CHART / "files" / "helm-test.py").read_text()
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "FAILED: CRD loadtests.kubeload.dev established" in proc.stdout


@needs_helm
def test_notes_show_a_valid_first_loadtest(tmp_path: Path) -> None:
    proc = helm("install", "kl", str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    notes = proc.stdout.split("NOTES:", 1)[1]
    manifest = textwrap.dedent(notes.split("<<'YAML'", 1)[1].split("\n  YAML", 1)[0].split("\n", 1)[1])
    path = tmp_path / "first.yaml"
    path.write_text(manifest)
    (test,) = load_manifests(path)
    assert test.metadata.name == "hello"
    assert "helm test kl" in notes


# ------------------------------------------------------------------------ plain manifests


@needs_helm
def test_plain_manifests_are_in_sync(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    subprocess.run(["bash", str(ROOT / "hack" / "render-manifests.sh"), str(out)], check=True, timeout=60,
                   env={**os.environ, "HELM": str(HELM)}, capture_output=True)
    committed = ROOT / "operator" / "manifests"
    expected = {p.name: p.read_text() for p in sorted(out.glob("*.yaml"))}
    actual = {p.name: p.read_text() for p in sorted(committed.glob("*.yaml"))}
    assert actual == expected, "operator/manifests/ drifted from the chart: run `make manifests`"
    kinds = [doc["kind"] for text in actual.values() for doc in yaml.safe_load_all(text) if doc]
    assert kinds == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"]
    for text in actual.values():
        assert "helm.sh/chart" not in text and "managed-by: Helm" not in text


# ----------------------------------------------------------------------------------- images

DOCKERFILES = ["worker-image/Dockerfile", "operator/Dockerfile"]


def stages(dockerfile: str) -> list[list[str]]:
    """The instructions of each stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / dockerfile).read_text())
    result: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def test_worker_image_is_multi_stage_pinned_and_non_root() -> None:
    dockerfile = "worker-image/Dockerfile"
    text = (ROOT / dockerfile).read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base.group(1)), "pin the base image by full version"
    builder, final = stages(dockerfile)
    assert builder[0] == "FROM ${PYTHON_IMAGE} AS builder" and final[0] == "FROM ${PYTHON_IMAGE}"
    final_text = "\n".join(final)
    assert "build-essential" in "\n".join(builder)
    for forbidden in ("apt-get install", "build-essential", "gcc", "pip install", "COPY src"):
        assert forbidden not in final_text, f"{dockerfile}: {forbidden!r} in the final stage"
    assert "COPY --from=builder /opt/kubeload /opt/kubeload" in final
    assert "USER 65532:65532" in final
    assert "PYTHONDONTWRITEBYTECODE=1" in final_text and "HOME=/tmp" in final_text
    assert 'ENTRYPOINT ["kubeload"]' in final
    assert 'CMD ["worker"]' in final
    assert "--constraint constraints.txt" in "\n".join(builder)


def test_operator_image_is_the_worker_image_with_the_operator_command() -> None:
    """One build of the venv: the operator image only relabels the kubeload image and changes its
    command, so it inherits the non-root user, the entry point and the pins checked above."""
    (stage,) = stages("operator/Dockerfile")
    assert stage[0] == "FROM ${KUBELOAD_IMAGE}"
    assert stage[-1] == 'CMD ["operator"]'
    assert not [i for i in stage if i.split()[0] in ("RUN", "COPY", "ADD", "USER", "ENTRYPOINT")], stage
    makefile = (ROOT / "Makefile").read_text()
    assert "--build-arg KUBELOAD_IMAGE=$(REGISTRY)/kubeload:$(VERSION)" in makefile
    assert makefile.index("-f worker-image/Dockerfile") < makefile.index("-f operator/Dockerfile")


def test_dockerignore_lets_in_what_the_dockerfiles_copy() -> None:
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for dockerfile in DOCKERFILES:
        for stage in stages(dockerfile):
            for instruction in stage:
                if instruction.startswith("COPY ") and "--from=" not in instruction:
                    for source in instruction.split()[1:-1]:
                        assert source in allowed, f"{dockerfile} copies {source}, which .dockerignore leaves out"


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_normalized(name)] = version
    return pins


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _assert_pinned(requirements: list[str], pins: dict[str, str], where: str) -> None:
    from packaging.requirements import Requirement

    for requirement in requirements:
        req = Requirement(requirement)
        if req.marker and not req.marker.evaluate({"sys_platform": "linux"}):
            continue
        name = _normalized(req.name)
        assert name in pins, f"{where} does not pin {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} does not meet {req}"


def test_image_constraints_satisfy_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    _assert_pinned(project["dependencies"], _pins(ROOT / "worker-image" / "constraints.txt"),
                   "worker-image/constraints.txt")


def test_dev_constraints_pin_the_dev_extra_and_nothing_the_image_pins() -> None:
    """`make setup` installs with both files: the tests run on the images' pins plus pinned tools."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins(ROOT / "worker-image" / "constraints.txt")
    dev = _pins(ROOT / "hack" / "dev-constraints.txt")
    assert not runtime.keys() & dev.keys(), "pinned in both constraint files"
    _assert_pinned(project["optional-dependencies"]["dev"], dev, "hack/dev-constraints.txt")
    makefile = (ROOT / "Makefile").read_text()
    assert "CONSTRAINTS := worker-image/constraints.txt hack/dev-constraints.txt" in makefile


@pytest.mark.parametrize("command", [["--version"], ["worker", "--help"], ["refresher", "--help"],
                                     ["operator", "--help"]])
def test_the_image_entry_points_run(kubeload_bin: str, command: list[str]) -> None:
    proc = subprocess.run([kubeload_bin, *command], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_operator_takes_the_charts_arguments(kubeload_bin: str) -> None:
    """The chart runs `kubeload operator --liveness=http://0.0.0.0:8080/healthz` (kopf's liveness)."""
    proc = subprocess.run([kubeload_bin, "operator", "--help"], capture_output=True, text=True, timeout=60)
    assert "--liveness" in proc.stdout, "`kubeload operator` must accept --liveness URL (the chart's probe)"


@needs_helm
def test_the_operator_reads_the_charts_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every KUBELOAD_* variable the chart sets is read by `kubeload operator`, with its meaning."""
    from kubeload import cli

    objects = render("watchNamespaces={team-a,team-b}", "logFormat=plain")
    container = operator_deployment(objects)["spec"]["template"]["spec"]["containers"][0]
    env = {k: v for k, v in env_of(container).items() if isinstance(v, str)}
    sources = "\n".join(p.read_text() for p in (ROOT / "src" / "kubeload" / "operator").glob("*.py"))
    unread = [name for name in env if name.startswith("KUBELOAD_") and f'"{name}"' not in sources]
    assert unread == [], f"the chart sets {unread}, which src/kubeload/operator/ never reads"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = cli._parser().parse_args(container["args"])
    assert args.namespace == ["team-a", "team-b"]
    assert args.worker_image == env["KUBELOAD_WORKER_IMAGE"]
    assert args.redis_image == env["KUBELOAD_REDIS_IMAGE"]
    assert args.log_format == "plain"
    assert args.metrics_port == 9090
    assert args.liveness == "http://0.0.0.0:8080/healthz"
