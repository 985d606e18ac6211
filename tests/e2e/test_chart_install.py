"""The Helm chart on a real control plane: install, run the operator with the chart's RBAC,
`helm test`, uninstall.

How the chart's pods run here (kwok plays the node, no container starts):

- the operator pod: the test starts `kubeload operator` as a local process with the pod's
  args and `KUBELOAD_*` env, authenticated by a token of the chart's ServiceAccount
  (`kubectl create token`), never as admin; only the listening addresses are moved to free
  loopback ports (`--liveness`, `KUBELOAD_METRICS_PORT`);
- the `helm test` Pod: while `helm test` waits, the test runs the Pod's command
  (`python -c <files/helm-test.py>`) locally with the Pod's env and a token of the test
  ServiceAccount; the one substitution is KUBELOAD_TEST_LIVENESS_URL (the Service's DNS name
  does not resolve here) and the API server address; the exit code is reported as the Pod's
  end, as a kubelet would;
- the LoadTest's pods (Redis, workers) run through test_operator_e2e's PodRunner.

KUBELOAD_E2E_CHART tests another chart directory or package instead of charts/kubeload.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane, wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_operator_e2e import LOADTESTS, PodRunner, Target, _free_port, _manifest, _terminate, _wait_phase

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = Path(os.environ.get("KUBELOAD_E2E_CHART", ROOT / "charts" / "kubeload"))
RELEASE = "kl"
FULLNAME = "kl-kubeload"
VENV_BIN = Path(sys.executable).parent


class Helm:
    def __init__(self, cp: ControlPlane) -> None:
        assert cp.bin_dir is not None
        self.cp = cp
        self.bin = str(cp.bin_dir / "helm")

    def __call__(self, *args: str, timeout: float = 180) -> str:
        proc = subprocess.run([self.bin, *args], env=self.cp.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([self.bin, *args], env=self.cp.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def helm(control_plane: ControlPlane) -> Helm:
    return Helm(control_plane)


@pytest.fixture
def release_namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"kl-sys-{uuid.uuid4().hex[:6]}"
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def adopt_crd(cp: ControlPlane, release_namespace: str) -> None:
    """Let this release adopt a LoadTest CRD that an earlier test or release left behind."""
    if cp.kubectl("get", "crd", LOADTESTS, check=False).returncode != 0:
        return
    cp.kubectl("label", "crd", LOADTESTS, "--overwrite", "app.kubernetes.io/managed-by=Helm")
    cp.kubectl("annotate", "crd", LOADTESTS, "--overwrite", f"meta.helm.sh/release-name={RELEASE}",
               f"meta.helm.sh/release-namespace={release_namespace}")


def install(helm: Helm, cp: ControlPlane, release_namespace: str, *sets: str) -> None:
    adopt_crd(cp, release_namespace)
    args = ["install", RELEASE, str(CHART), "--namespace", release_namespace, "--create-namespace",
            "--wait", "--timeout", "120s",
            # The CRD may already be there, applied with kubectl by an earlier test (or a user).
            "--force-conflicts",
            # Faster reconciles for a short test (the chart's `extraArgs`).
            "--set-json", 'extraArgs=["--interval=1","--start-delay=3","--pod-start-lead=3"]']
    for item in sets:
        args += ["--set", item]
    helm(*args)
    cp.kubectl("wait", "--for=condition=Established", f"crd/{LOADTESTS}", "--timeout=60s")


def token_kubeconfig(cp: ControlPlane, namespace: str, service_account: str, directory: Path) -> tuple[Path, Path]:
    """A kubeconfig (and a token file) that authenticates as a ServiceAccount."""
    token = cp.kubectl("create", "token", service_account, "-n", namespace, "--duration=1h").stdout.strip()
    token_file = directory / f"{service_account}.token"
    token_file.write_text(token)
    kubeconfig = directory / f"{service_account}.kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "cp", "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "cp", "user": "sa", "namespace": namespace}}],
    }))
    return kubeconfig, token_file


class ChartOperator:
    """The chart's operator pod, as a local process with the pod's args, env and identity."""

    def __init__(self, cp: ControlPlane, release_namespace: str, workdir: Path, service_map: Path | None) -> None:
        deployment = cp.get("deployment", FULLNAME, "-n", release_namespace)
        pod_spec = deployment["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        self.kubeconfig, _ = token_kubeconfig(cp, release_namespace, pod_spec["serviceAccountName"], workdir)
        self.liveness_port, self.metrics_port = _free_port(), _free_port()
        args = [a for a in container["args"] if not a.startswith("--liveness=")]
        args.append(f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz")
        if service_map is not None:
            args += ["--service-map", str(service_map)]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        env["KUBELOAD_METRICS_PORT"] = str(self.metrics_port)
        env["KUBELOAD_POD_NAMESPACE"] = release_namespace
        base = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(workdir),
                "LANG": "C.UTF-8", "TMPDIR": str(workdir), "KUBECONFIG": str(self.kubeconfig)}
        self.log_path = workdir / "chart-operator.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen([str(VENV_BIN / "kubeload"), *args], env={**base, **env}, cwd=workdir,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.liveness_url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        wait_for(self._live, timeout=60, what=f"the operator's liveness endpoint (log: {self.log_path})")

    def _live(self) -> bool:
        assert self.proc.poll() is None, f"the operator exited: {self.log_path.read_text()[-3000:]}"
        with urllib.request.urlopen(self.liveness_url, timeout=2) as response:
            return bool(response.status == 200)

    def metrics(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {family.name: family for family in text_string_to_metric_families(text)}

    def forbidden_calls(self, namespaced: bool = False) -> list[str]:
        """Log lines of refused API calls. With `namespaced`, kopf's cluster-wide scans of CRDs and
        namespaces are expected to be refused (it then falls back to the watched namespaces)."""
        scans = ("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "/api/v1/namespaces ",
                 "Not enough permissions")
        return [line for line in self.log_path.read_text().splitlines()
                if ("403" in line or "Forbidden" in line) and not (namespaced and any(s in line for s in scans))]

    def stop(self) -> None:
        _terminate(self.proc)


@contextmanager
def chart_operator(cp: ControlPlane, release_namespace: str, workdir: Path,
                   service_map: Path | None = None) -> Iterator[ChartOperator]:
    operator = ChartOperator(cp, release_namespace, workdir, service_map)
    try:
        yield operator
    finally:
        operator.stop()


def run_helm_test(helm: Helm, cp: ControlPlane, release_namespace: str, liveness_url: str, workdir: Path) -> str:
    """`helm test`, with the test Pod's command run locally (see the module docstring)."""
    proc = helm.popen("test", RELEASE, "--namespace", release_namespace, "--timeout", "120s")
    try:
        pod = wait_for(lambda: (p := cp.get("pods", "-n", release_namespace, "-l", "app.kubernetes.io/component=test")
                                ["items"]) and p[0].get("status", {}).get("phase") == "Running" and p[0],
                       timeout=60, what="the helm test Pod running")
        container = pod["spec"]["containers"][0]
        _, token_file = token_kubeconfig(cp, release_namespace, pod["spec"]["serviceAccountName"], workdir)
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        assert env["KUBELOAD_TEST_LIVENESS_URL"] == f"http://{FULLNAME}.{release_namespace}.svc:8080/healthz"
        env |= {"KUBELOAD_TEST_LIVENESS_URL": liveness_url, "KUBELOAD_TEST_API_SERVER": str(cp.server),
                "KUBELOAD_TEST_TOKEN_FILE": str(token_file), "KUBELOAD_TEST_CA_FILE": str(cp.ca_file),
                "PATH": os.environ.get("PATH", "")}
        command = container["command"]
        assert command[0] == "python"
        result = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=90)
        cp.finish_pod(release_namespace, pod["metadata"]["name"], exit_code=result.returncode,
                      message=result.stdout[-500:])
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result.returncode == 0, f"the helm test Pod's checks failed:\n{result.stdout}{result.stderr}"
    assert "ok: CRD loadtests.kubeload.dev established" in result.stdout
    assert proc.returncode == 0, f"helm test failed:\n{output}"
    return output


def operator_objects(cp: ControlPlane, *namespaces: str) -> list[str]:
    """Every object of the release that is left, by kind/name."""
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/part-of=kubeload"
    found = []
    for namespace in namespaces:
        listed = cp.get("deployments,services,serviceaccounts,roles,rolebindings,pods,networkpolicies",
                        "-n", namespace, "-l", selector)
        found += [f"{o['kind']}/{namespace}/{o['metadata']['name']}" for o in listed["items"]]
    for kind in ("clusterroles", "clusterrolebindings"):
        found += [f"{o['kind']}/{o['metadata']['name']}" for o in cp.get(kind, "-l", selector)["items"]]
    return found


def uninstall(helm: Helm, cp: ControlPlane, release_namespace: str, *namespaces: str) -> None:
    helm("uninstall", RELEASE, "--namespace", release_namespace, "--wait", "--timeout", "120s")
    wait_for(lambda: not operator_objects(cp, release_namespace, *namespaces), timeout=60,
             what="no object of the release left")
    crd = cp.get("crd", LOADTESTS)  # crds.keep (the default): the CRD, and so every LoadTest, stays
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def sample(families: dict[str, Any], family: str, sample_name: str, **labels: str) -> float:
    for item in families[family].samples:
        if item.name == sample_name and all(item.labels.get(k) == v for k, v in labels.items()):
            return float(item.value)
    raise AssertionError(f"no {sample_name}{labels}")


# ------------------------------------------------------------------------------------- tests


def test_namespaced_install_runs_a_loadtest_with_the_charts_rbac(
        control_plane: ControlPlane, helm: Helm, release_namespace: str, namespace: str, tmp_path: Path) -> None:
    cp = control_plane
    other = f"e2e-other-{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", other)
    target = Target()
    try:
        install(helm, cp, release_namespace, "rbac.namespaced=true", f"watchNamespaces={{{namespace}}}",
                "logFormat=plain")
        # The operator's rights: only in the watched namespace.
        account = f"system:serviceaccount:{release_namespace}:{FULLNAME}"
        for verb, resource, where, expected in [("create", "jobs.batch", namespace, "yes"),
                                                ("patch", "loadtests.kubeload.dev/status", namespace, "yes"),
                                                ("create", "jobs.batch", other, "no"),
                                                ("list", "loadtests.kubeload.dev", other, "no"),
                                                ("list", "secrets", namespace, "no"),
                                                ("create", "pods", namespace, "no")]:
            answer = cp.kubectl("auth", "can-i", verb, resource, "-n", where, "--as", account, check=False)
            assert answer.stdout.strip() == expected, (verb, resource, where, answer.stdout, answer.stderr)

        with PodRunner(cp, namespace, tmp_path) as runner, \
                chart_operator(cp, release_namespace, tmp_path, runner.service_map_path) as operator:
            denied = cp.kubectl("--kubeconfig", str(operator.kubeconfig), "get", LOADTESTS, "-n", other, check=False)
            assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()

            document = _manifest("operator-stages.yaml", target)
            document["spec"]["cleanup"] = {"policy": "Always"}  # the delete verbs are exercised too
            cp.apply(document, namespace=namespace)
            elsewhere = _manifest("operator-stages.yaml", target)
            elsewhere["metadata"]["name"] = "ignored"
            cp.apply(elsewhere, namespace=other)

            final = _wait_phase(cp, namespace, "stages", ("Succeeded", "Failed", "Aborted"), timeout=150)
            assert final["phase"] == "Succeeded" and final["verdict"] == "passed", final
            assert final["requests"] == target.count > 0
            wait_for(lambda: cp.kubectl("get", "deployment", "stages-redis", "-n", namespace,
                                        check=False).returncode != 0, timeout=30, what="cleanup: Always")
            assert not cp.get(LOADTESTS, "ignored", "-n", other).get("status"), "a LoadTest outside watchNamespaces"
            assert not runner.errors, runner.errors

            families = operator.metrics()
            assert sample(families, "kubeload_loadtests", "kubeload_loadtests",
                          namespace=namespace, phase="Succeeded") == 1
            assert sample(families, "kubeload_operator_reconcile_duration_seconds",
                          "kubeload_operator_reconcile_duration_seconds_count") > 0
            assert sample(families, "kubeload_build_info", "kubeload_build_info", component="operator") == 1
            assert not operator.forbidden_calls(namespaced=True), operator.forbidden_calls(namespaced=True)

            output = run_helm_test(helm, cp, release_namespace, operator.liveness_url, tmp_path)
            assert "Succeeded" in output
        uninstall(helm, cp, release_namespace, namespace)
        assert cp.get(LOADTESTS, "stages", "-n", namespace)["status"]["phase"] == "Succeeded"
    finally:
        target.close()
        # Not watched, so it has no finalizer: gone at once, before any later operator sees it.
        cp.kubectl("delete", LOADTESTS, "ignored", "-n", other, "--ignore-not-found", check=False)
        cp.kubectl("delete", "namespace", other, "--wait=false", check=False)
        subprocess.run([helm.bin, "uninstall", RELEASE, "-n", release_namespace], env=cp.env(),
                       capture_output=True, check=False, timeout=60)


def test_cluster_wide_install_helm_test_and_uninstall_keeps_the_crd(
        control_plane: ControlPlane, helm: Helm, release_namespace: str, tmp_path: Path) -> None:
    cp = control_plane
    try:
        install(helm, cp, release_namespace)
        account = f"system:serviceaccount:{release_namespace}:{FULLNAME}"
        answer = cp.kubectl("auth", "can-i", "create", "jobs.batch", "--all-namespaces", "--as", account, check=False)
        assert answer.stdout.strip() == "yes"
        with chart_operator(cp, release_namespace, tmp_path) as operator:
            output = run_helm_test(helm, cp, release_namespace, operator.liveness_url, tmp_path)
            assert "Succeeded" in output
            # hook-succeeded: the test Pod is gone once it passed.
            wait_for(lambda: not cp.get("pods", "-n", release_namespace, "-l",
                                        "app.kubernetes.io/component=test")["items"],
                     timeout=30, what="the helm test Pod deleted")
            time.sleep(1)
            assert not operator.forbidden_calls(), operator.forbidden_calls()
        uninstall(helm, cp, release_namespace)
    finally:
        subprocess.run([helm.bin, "uninstall", RELEASE, "-n", release_namespace], env=cp.env(),
                       capture_output=True, check=False, timeout=60)
