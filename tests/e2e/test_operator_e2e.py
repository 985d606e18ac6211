"""The operator on a real control plane, with the pods it creates backed by real processes.

How pods run here: kwok plays the node, so no container ever starts. `PodRunner` watches the
test namespace and, for each pod scheduled on the node, starts that pod's container command
(`redis-server ...`, `kubeload worker`, `kubeload refresher`) as a local process with the
pod's environment resolved the way the kubelet would (values, Secret and ConfigMap refs,
fieldRefs such as the Job's completion index, `$(VAR)` expansion in args). Listening ports
are moved to free loopback ports (`redis-server --port`, `KUBELOAD_PROBE_PORT`), and each
Service that selects the pod gets an entry `<svc>.<ns>.svc:<port>` -> `127.0.0.1:<port>` in
a service map file. That file is the operator's `--service-map`, and the runner rewrites
the same addresses in the env of the processes it starts (e.g. `KUBELOAD_REDIS_URL`). When
a process exits, the runner reports it through the pod's status subresource (Succeeded or
Failed), as a kubelet would; when a pod is deleted, its process gets SIGTERM.

The target of the load is an HTTP server in this test process that counts what it served,
so the metrics the operator reports can be checked against the truth.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from controlplane import ControlPlane, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
LOADTESTS = "loadtests.kubeload.dev"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- target


class Target:
    """A loopback HTTP target: `/` answers at once, `/slow` after 300 ms; counts requests."""

    def __init__(self) -> None:
        self.count = 0
        self.tokens = 0
        self._lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.startswith("/slow"):
                    time.sleep(0.3)
                body = b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with target._lock:
                    target.count += 1

            def do_POST(self) -> None:  # the token endpoint of the auth tests
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with target._lock:
                    target.tokens += 1
                body = json.dumps({"access_token": f"tok-{target.tokens}", "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- pods as processes


class PodRunner:
    """Runs the container of each scheduled pod of one namespace as a local process."""

    def __init__(self, cp: ControlPlane, namespace: str, workdir: Path) -> None:
        self.cp = cp
        self.ns = namespace
        self.workdir = workdir
        self.service_map_path = workdir / "service-map.json"
        self.service_map: dict[str, str] = {}
        self._write_map()
        self.procs: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}  # pod uid -> (name, proc)
        self.reported: set[str] = set()
        self.started: list[tuple[str, str]] = []  # (pod name, component), in start order
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PodRunner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for _, proc in self.procs.values():
            _terminate(proc)

    def _write_map(self) -> None:
        tmp = self.service_map_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.service_map))
        tmp.replace(self.service_map_path)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:
                self.errors.append(repr(exc))
            self._stop.wait(0.3)

    def _tick(self) -> None:
        pods = self.cp.pods(self.ns)
        live = set()
        for pod in pods:
            meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
            uid = meta["uid"]
            live.add(uid)
            gone = meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed")
            if gone:
                if uid in self.procs and uid not in self.reported:
                    _terminate(self.procs[uid][1])
                continue
            if uid not in self.procs and spec.get("nodeName"):
                self.procs[uid] = (meta["name"], self._launch(pod))
        for uid, (name, proc) in list(self.procs.items()):
            if uid not in live:
                _terminate(proc)
                self.reported.add(uid)
                continue
            code = proc.poll()
            if code is not None and uid not in self.reported:
                self.reported.add(uid)
                with contextlib.suppress(Exception):
                    self.cp.finish_pod(self.ns, name, exit_code=code, message="local process")

    # -- the kubelet's part: env, args, ports

    def _secret(self, name: str) -> dict[str, str]:
        data = self.cp.get("secret", name, "-n", self.ns).get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def _config_map(self, name: str) -> dict[str, str]:
        return dict(self.cp.get("configmap", name, "-n", self.ns).get("data") or {})

    @staticmethod
    def _field(pod: dict[str, Any], path: str) -> str:
        match = re.fullmatch(r"metadata\.(annotations|labels)\['(.+)'\]", path)
        if match:
            return str(pod["metadata"].get(match[1], {}).get(match[2], ""))
        value: Any = pod
        for part in path.split("."):
            value = value.get(part, "") if isinstance(value, dict) else ""
        return str(value)

    def _env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                values = self._secret(source["secretRef"]["name"])
            else:
                values = self._config_map(source["configMapRef"]["name"])
            env.update({prefix + k: v for k, v in values.items()})
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = _expand(item["value"], env)
            elif "valueFrom" in item:
                ref = item["valueFrom"]
                if "secretKeyRef" in ref:
                    env[item["name"]] = self._secret(ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
                elif "configMapKeyRef" in ref:
                    env[item["name"]] = self._config_map(ref["configMapKeyRef"]["name"])[ref["configMapKeyRef"]["key"]]
                elif "fieldRef" in ref:
                    env[item["name"]] = self._field(pod, ref["fieldRef"]["fieldPath"])
        return env

    def _rewrite(self, text: str) -> str:
        for address, local in self.service_map.items():
            text = text.replace(address, local)
        return text

    def _launch(self, pod: dict[str, Any]) -> subprocess.Popen[bytes]:
        meta = pod["metadata"]
        component = meta.get("labels", {}).get("kubeload.dev/component", "")
        container = pod["spec"]["containers"][0]
        env = self._env(pod, container)
        argv = [_expand(a, env) for a in container.get("command", []) + container.get("args", [])]
        scratch = Path(tempfile.mkdtemp(prefix=f"{meta['name']}-", dir=self.workdir))
        ports: dict[int, int] = {}
        if component == "redis":
            local = _free_port()
            ports[6379] = local
            argv = _replace_flag(argv, "--port", str(local))
            argv = _replace_flag(argv, "--dir", str(scratch))
            argv += ["--bind", "127.0.0.1"]
        if "KUBELOAD_PROBE_PORT" in env:
            local = _free_port()
            ports[int(env["KUBELOAD_PROBE_PORT"])] = local
            env["KUBELOAD_PROBE_PORT"] = str(local)
            env["KUBELOAD_PROBE_HOST"] = "127.0.0.1"
        env = {k: self._rewrite(v) for k, v in env.items()}
        base = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(scratch),
                "LANG": "C.UTF-8", "HOSTNAME": meta["name"], "TMPDIR": str(scratch)}
        log = open(self.workdir / f"{meta['name']}.log", "wb")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(argv, env={**base, **env}, cwd=scratch, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.started.append((meta["name"], component))
        if ports:
            self._publish(pod, ports)
        return proc

    def _publish(self, pod: dict[str, Any], ports: dict[int, int]) -> None:
        """Map every Service selecting this pod to the process's loopback ports."""
        labels = pod["metadata"].get("labels", {})
        if any(p == 6379 for p in ports):
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: _port_open(ports[6379]), timeout=10, what="redis-server")
        for svc in self.cp.get("services", "-n", self.ns)["items"]:
            selector = svc["spec"].get("selector") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                container_port = port["port"] if isinstance(target, str) else int(target)
                if container_port in ports:
                    name = svc["metadata"]["name"]
                    for host in (f"{name}.{self.ns}.svc", f"{name}.{self.ns}.svc.cluster.local", name):
                        self.service_map[f"{host}:{port['port']}"] = f"127.0.0.1:{ports[container_port]}"
        self._write_map()

    def alive(self, component: str) -> int:
        names = {name for name, c in self.started if c == component}
        return sum(1 for name, proc in self.procs.values() if name in names and proc.poll() is None)

    def kill_pod_process(self, pod_prefix: str, sig: int = signal.SIGKILL) -> tuple[str, int]:
        """Send `sig` to the process group backing the one live pod whose name starts with
        `pod_prefix` (in this runner's namespace), as if its container died; the runner then
        reports the pod Failed and its controller replaces it. Returns (pod name, pid)."""
        live = [(name, proc) for name, proc in self.procs.values()
                if name.startswith(pod_prefix) and proc.poll() is None]
        if len(live) != 1:
            raise AssertionError(f"expected one live pod named {pod_prefix}*, found {[n for n, _ in live]}")
        name, proc = live[0]
        os.killpg(proc.pid, sig)
        return name, proc.pid


def _expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), text)


def _replace_flag(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    if flag in out:
        out[out.index(flag) + 1] = value
    else:
        out += [flag, value]
    return out


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(8)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# --------------------------------------------------------------------------- operator process


class Operator:
    """`kubeload operator` as a process watching one namespace."""

    def __init__(self, cp: ControlPlane, namespace: str, service_map: Path, log_path: Path) -> None:
        self.cp, self.ns, self.service_map, self.log_path = cp, namespace, service_map, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "kubeload"), "operator", "--namespace", self.ns, "--service-map", str(self.service_map),
             "--interval", "1", "--start-delay", "3", "--pod-start-lead", "3", "--log-format", "json"],
            env=self.cp.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no chance to clean anything up, as when a node dies."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def crd_installed(control_plane: ControlPlane) -> ControlPlane:
    # `kubeload crd | kubectl apply -f -`, as the README says.
    crd = subprocess.run([str(VENV_BIN / "kubeload"), "crd"], capture_output=True, text=True, check=True).stdout
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crd)
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{LOADTESTS}", "--timeout=60s")
    return control_plane


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


@pytest.fixture
def harness(crd_installed: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[tuple[PodRunner, Operator]]:
    with PodRunner(crd_installed, namespace, tmp_path) as runner:
        operator = Operator(crd_installed, namespace, runner.service_map_path, tmp_path / "operator.log")
        operator.start()
        try:
            yield runner, operator
        finally:
            operator.stop()
            _dump_logs(tmp_path)


def _dump_logs(directory: Path) -> None:
    """Keep the processes' logs where a failing CI run shows them."""
    keep = os.environ.get("KUBELOAD_E2E_LOGS")
    if keep:
        shutil.copytree(directory, Path(keep) / directory.name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.rdb", "*.sock"))


def _manifest(name: str, target: Target) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())
    document["spec"]["target"]["baseURL"] = target.url
    return document


def _plain_manifest(target: Target, name: str) -> dict[str, Any]:
    """operator-abort-on-fail.yaml renamed to `name`, without thresholds, requesting only `/`."""
    manifest = _manifest("operator-abort-on-fail.yaml", target)
    manifest["metadata"]["name"] = name
    manifest["spec"]["thresholds"] = []
    manifest["spec"]["requests"] = [{"name": "home", "path": "/"}]
    return manifest


def _lt(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cp.get(LOADTESTS, name, "-n", ns)
    return result


def _status(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    try:
        return dict(_lt(cp, ns, name).get("status") or {})
    except Exception:
        return {}


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


class Recorder:
    """Samples the LoadTest's phase and the Job's parallelism in the background."""

    def __init__(self, cp: ControlPlane, ns: str, name: str) -> None:
        self.cp, self.ns, self.name = cp, ns, name
        self.phases: list[str] = []
        self.parallelism: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            phase = _status(self.cp, self.ns, self.name).get("phase")
            if phase and (not self.phases or self.phases[-1] != phase):
                self.phases.append(phase)
            job = self.cp.kubectl("get", "job", f"{self.name}-workers", "-n", self.ns, "-o",
                                  "jsonpath={.spec.parallelism}", check=False).stdout.strip()
            if job and (not self.parallelism or self.parallelism[-1] != int(job)):
                self.parallelism.append(int(job))
            self._stop.wait(0.3)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _wait_phase(cp: ControlPlane, ns: str, name: str, phases: tuple[str, ...], timeout: float) -> dict[str, Any]:
    return wait_for(lambda: (s := _status(cp, ns, name)).get("phase") in phases and s,
                    timeout=timeout, interval=0.5, what=f"{name} phase in {phases}")


CHILDREN = [("deployment", "redis"), ("service", "redis"), ("networkpolicy", "redis"), ("secret", "run"),
            ("configmap", "summary"), ("job", "workers")]


# --------------------------------------------------------------------------- tests


def test_stages_run_to_success_with_fleet_metrics(harness: tuple[PodRunner, Operator], namespace: str,
                                                   target: Target) -> None:
    runner, _ = harness
    cp = runner.cp
    cp.apply(_manifest("operator-stages.yaml", target), namespace=namespace)
    recorder = Recorder(cp, namespace, "stages")
    try:
        running = _wait_phase(cp, namespace, "stages", ("Running", "Failed"), timeout=90)
        assert running["phase"] == "Running", running
        # Every child: owned by the LoadTest, labelled, deterministic name.
        uid = _lt(cp, namespace, "stages")["metadata"]["uid"]
        for kind, suffix in CHILDREN:
            child = cp.get(kind, f"stages-{suffix}", "-n", namespace)
            refs = child["metadata"]["ownerReferences"]
            assert [(r["kind"], r["uid"], r.get("controller")) for r in refs] == [("LoadTest", uid, True)]
            labels = child["metadata"]["labels"]
            assert labels["kubeload.dev/loadtest"] == "stages"
            assert labels["app.kubernetes.io/managed-by"] == "kubeload-operator"
        job = cp.get("job", "stages-workers", "-n", namespace)
        assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 3
        # Status while running, written at least every ~second.
        mid = wait_for(lambda: (s := _status(cp, namespace, "stages")).get("requests", 0) > 0 and s,
                       timeout=30, what="requests in status")
        assert mid["stage"]["progress"]
        assert _condition(mid, "RedisReady")["status"] == "True"
        assert _condition(mid, "TokenReady")["reason"] == "TokenNotRequired"
        columns = cp.kubectl("get", "lt", "stages", "-n", namespace).stdout.splitlines()[0].split()
        assert columns == ["NAME", "PHASE", "STAGE", "VUS", "RPS", "P95", "ERRORS", "VERDICT", "AGE"]
        cp.kubectl("wait", "--for=condition=Succeeded", "lt/stages", "-n", namespace, "--timeout=120s",
                   timeout=130)
        wait_for(lambda: recorder.phases[-1] == "Succeeded", timeout=5, what="the recorder to see the end")
    finally:
        recorder.stop()
    final = _status(cp, namespace, "stages")
    assert final["phase"] == "Succeeded" and final["verdict"] == "passed", final
    assert recorder.phases[0] in ("Pending", "Provisioning") and recorder.phases[-1] == "Succeeded"
    assert "Running" in recorder.phases
    # Parallelism followed the stages: 1 worker first, raised to 3 for the peak, lowered after.
    par = recorder.parallelism
    assert par[0] == 1 and max(par) == 3, par
    assert par.index(3) < len(par) - 1 and par[-1] < 3, par
    # Fleet metrics are the real ones: every request the target served was counted once.
    assert final["requests"] == target.count > 0
    assert final["latency"]["p95"] > 0 and final["errorRate"] == 0
    assert final["completionTime"] >= final["startTime"]
    summary_cm = cp.get("configmap", "stages-summary", "-n", namespace)["data"]
    summary = json.loads(summary_cm["summary.json"])
    assert summary["verdict"] == "passed"
    assert summary["metrics"]["http_reqs"]["count"] == target.count
    assert all(c["ok"] for conditions in summary["thresholds"].values() for c in conditions.values())
    table = cp.kubectl("get", "lt", "stages", "-n", namespace, "--no-headers").stdout.split()
    assert table[1] == "Succeeded" and table[-2] == "passed" and table[-3] == "0.00%"
    events = cp.get("events", "-n", namespace, "--field-selector", "involvedObject.name=stages")["items"]
    reasons = {e["reason"] for e in events}
    assert {"RedisReady", "Running", "Succeeded"} <= reasons, reasons
    # Deleting the LoadTest removes every child (garbage collection by ownerReferences).
    cp.kubectl("delete", "lt", "stages", "-n", namespace, "--wait=true", timeout=60)
    for kind, suffix in CHILDREN:
        wait_for(lambda k=kind, s=suffix: cp.kubectl("get", k, f"stages-{s}", "-n", namespace,
                                                     check=False).returncode != 0,
                 timeout=60, what=f"{kind} stages-{suffix} deleted")
    wait_for(lambda: not cp.pods(namespace, "kubeload.dev/loadtest=stages"), timeout=60, what="pods deleted")
    assert not runner.errors, runner.errors


def test_abort_on_fail_threshold_fails_the_test(harness: tuple[PodRunner, Operator], namespace: str,
                                                target: Target) -> None:
    runner, _ = harness
    cp = runner.cp
    cp.apply(_manifest("operator-abort-on-fail.yaml", target), namespace=namespace)
    started = time.monotonic()
    final = _wait_phase(cp, namespace, "abort-on-fail", ("Succeeded", "Failed", "Aborted"), timeout=120)
    assert time.monotonic() - started < 100  # far before the 2 minutes the test would run
    assert final["phase"] == "Failed" and final["verdict"] == "failed"
    succeeded = _condition(final, "Succeeded")
    assert succeeded["status"] == "False" and succeeded["reason"] == "ThresholdAborted"
    assert "p(95)<100" in succeeded["message"]
    assert final["thresholds"][0]["ok"] is False
    # Every worker stopped: the load ends within seconds.
    wait_for(lambda: runner.alive("worker") == 0, timeout=30, what="workers stopped")
    served = target.count
    time.sleep(3)
    assert target.count == served
    # cleanup: Always -> the children go, the LoadTest and its summary stay.
    wait_for(lambda: cp.kubectl("get", "deployment", "abort-on-fail-redis", "-n", namespace,
                                check=False).returncode != 0, timeout=30, what="cleanup")
    summary = json.loads(cp.get("configmap", "abort-on-fail-summary", "-n", namespace)["data"]["summary.json"])
    assert summary["verdict"] == "failed"


def test_operator_restart_mid_run_resumes_without_duplicates(harness: tuple[PodRunner, Operator], namespace: str,
                                                             target: Target) -> None:
    runner, operator = harness
    cp = runner.cp
    manifest = _manifest("operator-stages.yaml", target)
    manifest["metadata"]["name"] = "restart"
    cp.apply(manifest, namespace=namespace)
    running = wait_for(lambda: (s := _status(cp, namespace, "restart")).get("requests", 0) > 0 and s,
                       timeout=90, what="running with requests")
    operator.kill()
    time.sleep(4)  # the run goes on without the operator; metrics pile up in the stream
    operator.start()
    final = _wait_phase(cp, namespace, "restart", ("Succeeded", "Failed", "Aborted"), timeout=150)
    assert final["phase"] == "Succeeded", final
    assert final["startTime"] == running["startTime"]  # the same plan: not restarted
    assert final["runId"] == running["runId"]
    # No duplicate children or pods: one Job, one Redis pod, each worker index run once
    # (plus pods the Job replaced after the parallelism went down).
    assert len(cp.get("jobs", "-n", namespace)["items"]) == 1
    redis_pods = [n for n, c in runner.started if c == "redis"]
    assert len(redis_pods) == 1, runner.started
    # No interval lost, none counted twice.
    assert final["requests"] == target.count > 0


def test_abort_annotation_ends_aborted(harness: tuple[PodRunner, Operator], namespace: str, target: Target) -> None:
    runner, _ = harness
    cp = runner.cp
    manifest = _plain_manifest(target, "aborted")
    cp.apply(manifest, namespace=namespace)
    wait_for(lambda: _status(cp, namespace, "aborted").get("requests", 0) > 0, timeout=90, what="load")
    cp.kubectl("annotate", "lt", "aborted", "-n", namespace, "kubeload.dev/abort=true")
    final = _wait_phase(cp, namespace, "aborted", ("Succeeded", "Failed", "Aborted"), timeout=60)
    assert final["phase"] == "Aborted"
    assert _condition(final, "Succeeded")["reason"] == "Aborted"
    wait_for(lambda: runner.alive("worker") == 0, timeout=30, what="workers stopped")


def test_spec_change_after_start_is_refused(harness: tuple[PodRunner, Operator], namespace: str,
                                            target: Target) -> None:
    runner, _ = harness
    cp = runner.cp
    manifest = _plain_manifest(target, "pinned")
    cp.apply(manifest, namespace=namespace)
    _wait_phase(cp, namespace, "pinned", ("Running",), timeout=90)
    cp.kubectl("patch", "lt", "pinned", "-n", namespace, "--type=merge", "-p",
               json.dumps({"spec": {"workers": {"maxWorkers": 5}}}))
    refused = wait_for(lambda: _condition(_status(cp, namespace, "pinned"), "SpecChangeRefused"),
                       timeout=20, what="SpecChangeRefused")
    assert refused["status"] == "True" and "spec.workers" in refused["message"]
    assert cp.get("job", "pinned-workers", "-n", namespace)["spec"]["completions"] == 1
    # abort is a change that is allowed
    cp.kubectl("patch", "lt", "pinned", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"abort": True}}))
    final = _wait_phase(cp, namespace, "pinned", ("Succeeded", "Failed", "Aborted"), timeout=60)
    assert final["phase"] == "Aborted"


def test_shared_token_from_the_refresher(harness: tuple[PodRunner, Operator], namespace: str,
                                         target: Target, tmp_path: Path) -> None:
    runner, _ = harness
    cp = runner.cp
    cp.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-creds", "namespace": namespace},
              "stringData": {"secret": "client-secret-value"}}, namespace=namespace)
    manifest = _plain_manifest(target, "auth")
    manifest["spec"]["load"]["duration"] = "6s"
    manifest["spec"]["cleanup"] = {"policy": "Never"}  # the refresher Deployment is inspected below
    manifest["spec"]["auth"] = {
        "grant": "client_credentials", "tokenURL": target.url + "/token",
        "clientID": {"value": "e2e-client"},
        "clientSecret": {"secretKeyRef": {"name": "api-creds", "key": "secret"}},
    }
    cp.apply(manifest, namespace=namespace)
    final = _wait_phase(cp, namespace, "auth", ("Succeeded", "Failed", "Aborted"), timeout=120)
    assert final["phase"] == "Succeeded", final
    assert _condition(final, "TokenReady")["reason"] == "TokenObtained"
    assert final["token"]["version"] >= 1 and target.tokens >= 1
    assert final["requests"] == target.count > 0
    refresher = [n for n, c in runner.started if c == "refresher"]
    assert len(refresher) == 1
    # No secret in the refresher's pod spec: both credentials are references.
    dump = json.dumps(cp.get("deployment", "auth-refresher", "-n", namespace))
    assert "client-secret-value" not in dump and "e2e-client" not in dump
    # Neither the secret nor any issued token is in the status, the Events, the summary or any log
    # (operator, refresher, workers, Redis).
    places = {
        "status and spec": json.dumps(cp.get("loadtest", "auth", "-n", namespace)),
        "events": json.dumps(cp.get("events", "-n", namespace)),
        "summary": json.dumps(cp.get("configmap", "auth-summary", "-n", namespace)),
        **{f"log {p.name}": p.read_text(errors="replace") for p in tmp_path.rglob("*.log")},
    }
    assert any(name.startswith("log auth-refresher") for name in places), sorted(places)
    for name, text in places.items():
        assert "client-secret-value" not in text, f"the client secret leaked into {name}"
        assert not re.search(r"tok-[0-9]+\b", text), f"an access token leaked into {name}"


def test_refresher_pod_killed_is_replaced_without_401(harness: tuple[PodRunner, Operator], namespace: str,
                                                      tmp_path: Path) -> None:
    """Injected: SIGKILL of the only refresher pod's process (auth.replicas 1, no standby) right after
    it published a token version, mid-run. Tokens live 20 s, refreshed with 50 % left.
    Must hold: the pod is reported Failed, the Deployment's ReplicaSet creates a new pod, which takes
    the lease over once the dead one's lease (10 s) ran out and continues with the token in Redis;
    the LoadTest ends Succeeded; status.token.failovers >= 1 and names the new pod as holder;
    no 401 (the target's count and status.token.unauthorized); the version grew past the one at
    the kill."""
    tests = ROOT / "tests"
    for extra in (tests, tests / "integration"):
        if str(extra) not in sys.path:
            sys.path.insert(0, str(extra))
    from test_token_harness import CLIENT_SECRET, demo_target

    runner, _ = harness
    cp = runner.cp
    name = "failover"
    with demo_target(tmp_path, lifetime="20s", latency="2ms") as demo:
        cp.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-creds", "namespace": namespace},
                  "stringData": {"secret": CLIENT_SECRET}}, namespace=namespace)
        manifest = {
            "apiVersion": "kubeload.dev/v1alpha1", "kind": "LoadTest", "metadata": {"name": name},
            "spec": {
                "target": {"baseURL": demo.url},
                "requests": [{"name": "items", "path": "/api/items"}],
                "load": {"executor": "constant-vus", "vus": 2, "duration": "30s", "gracefulStop": "3s",
                         "thinkTime": "50ms"},
                "workers": {"vusPerWorker": 2, "maxWorkers": 1},
                "auth": {"grant": "client_credentials", "tokenURL": demo.token_url,
                         "clientID": {"value": "demo-client"},
                         "clientSecret": {"secretKeyRef": {"name": "api-creds", "key": "secret"}},
                         "refreshBefore": "50%", "replicas": 1},
                "thresholds": [{"metric": "http_req_failed", "condition": "rate<0.01"}],
            },
        }
        cp.apply(manifest, namespace=namespace)
        running = wait_for(lambda: (s := _status(cp, namespace, name)).get("requests", 0) > 0 and s,
                           timeout=90, interval=0.3, what="running with requests")
        # Kill right after a new version shows in status: the token then has ~its whole lifetime.
        version = running["token"]["version"]
        wait_for(lambda: _status(cp, namespace, name).get("token", {}).get("version", 0) > version,
                 timeout=30, interval=0.2, what="a refresh")
        at_kill = _status(cp, namespace, name)["token"]
        victim, _ = runner.kill_pod_process(f"{name}-refresher-")
        killed = time.monotonic()
        assert at_kill["holder"] == victim and at_kill["failovers"] == 0, at_kill
        replaced = wait_for(lambda: next((n for n, c in runner.started if c == "refresher" and n != victim), None),
                            timeout=30, interval=0.1, what="a replacement refresher pod")
        replaced_after = time.monotonic() - killed
        taken = wait_for(lambda: (t := _status(cp, namespace, name).get("token", {})).get("holder") == replaced and t,
                         timeout=30, interval=0.2, what="the new pod holding the lease")
        takeover = time.monotonic() - killed
        final = _wait_phase(cp, namespace, name, ("Succeeded", "Failed", "Aborted"), timeout=120)
        stats = demo.stats()
    token = final["token"]
    print(f"\nrefresher pod killed at token version {at_kill['version']}: replacement pod started after "
          f"{replaced_after:.1f}s, the new pod holds the lease (status) after {takeover:.1f}s; "
          f"final token {({k: token[k] for k in ('version', 'refreshes', 'failovers', 'unauthorized', 'failures')})}, "
          f"401s at the target {stats['unauthorized']}, requests {final['requests']}")
    assert final["phase"] == "Succeeded" and final["verdict"] == "passed", final
    assert taken["failovers"] >= 1 and token["failovers"] >= 1, token
    assert token["holder"] == replaced, (token["holder"], replaced)
    assert token["unauthorized"] == 0 and stats["unauthorized"] == 0, (token, stats["unauthorized"])
    assert token["version"] > at_kill["version"], (token, at_kill)
    assert final["requests"] > 0 and final["failedRequests"] == 0, final
    # 10 s lease of the dead pod + a status period; the pod replacement runs meanwhile.
    assert takeover <= 10 + 4, takeover
    assert [c for _, c in runner.started].count("refresher") == 2, runner.started
    logs = {p.name: p.read_text(errors="replace") for p in tmp_path.rglob("*.log")}
    assert not [n for n, text in logs.items() if CLIENT_SECRET in text]
    assert not runner.errors, runner.errors


def test_worker_pod_killed_mid_run_its_share_moves_and_the_replacement_rejoins(
        harness: tuple[PodRunner, Operator], namespace: str, target: Target) -> None:
    """Injected: SIGKILL of worker pod 1's processes (of 2 pods, 3 VUs each) mid-run.
    Must hold: the status keeps 6 VUs (worker 0 carries the lost 3 until the Job's replacement
    pod is back in the plan), counts the failed pod (status.workers.failed, the summary's
    workers), the LoadTest ends Succeeded, and the target's count equals the status's requests
    but for the killed pod's last, unreported interval."""
    runner, _ = harness
    cp = runner.cp
    name = "podkill"
    manifest = _manifest("operator-stages.yaml", target)
    manifest["metadata"]["name"] = name
    manifest["spec"]["load"] = {"executor": "constant-vus", "vus": 6, "duration": "30s", "thinkTime": "100ms",
                                "gracefulStop": "3s"}
    manifest["spec"]["workers"].update({"vusPerWorker": 3, "maxWorkers": 2})
    cp.apply(manifest, namespace=namespace)
    wait_for(lambda: _status(cp, namespace, name).get("vus") == 6, timeout=90, interval=0.3, what="6 VUs on 2 pods")
    victim, _ = runner.kill_pod_process(f"{name}-workers-1-")
    killed = time.monotonic()
    samples: list[tuple[float, dict[str, Any]]] = []
    while (status := _status(cp, namespace, name)).get("phase") == "Running":
        samples.append((time.monotonic() - killed, status))
        time.sleep(0.3)
    final = _wait_phase(cp, namespace, name, ("Succeeded", "Failed", "Aborted"), timeout=120)
    served = target.count

    replacement = [n for n, c in runner.started if c == "worker" and n.startswith(f"{name}-workers-1-") and n != victim]
    assert replacement, runner.started
    # Within two status periods of the kill the fleet runs all 6 VUs again; from then on it
    # stays there (a moment of hand-over back to the replacement may show 5 or 7).
    end = samples[-1][0] - 4.0  # the last seconds drain the VUs
    settled = [s["vus"] for t, s in samples if 4.0 <= t <= end]
    assert settled and settled.count(6) >= 0.8 * len(settled), settled
    assert any(s["workers"].get("lost") for _, s in samples), "the status never showed the lost processes"
    assert samples[-1][1]["workers"]["lost"] == 0, samples[-1][1]["workers"]  # the replacement is back
    assert final["phase"] == "Succeeded" and final["verdict"] == "passed", final
    assert final["workers"]["failed"] >= 1, final["workers"]
    summary = json.loads(cp.get("configmap", f"{name}-summary", "-n", namespace)["data"]["summary.json"])
    assert summary["workers"]["failed"] >= 1 and summary["workers"]["processesLost"] == 1, summary["workers"]
    # 3 VUs at ~10 requests/s each over one 2 s interval, at most, went unreported.
    assert 0 <= served - final["requests"] <= 3 * 10 * 2, (served, final["requests"])
    assert not runner.errors, runner.errors
