"""A real Kubernetes control plane for the e2e tests.

Drives ``hack/control-plane/{build,up,down}.sh``: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler built from Go modules, plus kwok
playing one node. There is no kubelet: kwok marks scheduled pods Running and
Ready, and a test that backs a pod with a real local process reports the end of
that process itself with :meth:`ControlPlane.finish_pod`.

Standard library only.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ControlPlane", "ControlPlaneError", "wait_for"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "hack" / "control-plane"

T = TypeVar("T")


class ControlPlaneError(RuntimeError):
    """Building, starting or talking to the control plane failed."""


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.25,
    what: str = "condition",
) -> T:
    """Call ``predicate`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error on timeout
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


class ControlPlane:
    """One control plane, started with :meth:`start` and stopped with :meth:`stop`.

    Attributes after ``start``: ``kubeconfig`` (Path), ``server`` (https URL),
    ``admin_token`` (a static token in ``system:masters``), ``bin_dir`` (etcd,
    kube-*, kubectl, kwok, helm), ``ca_file``, ``node_name`` (the kwok node).
    """

    def __init__(self, bin_dir: str | os.PathLike[str] | None = None) -> None:
        self.bin_dir: Path | None = Path(bin_dir) if bin_dir else None
        self.state_dir: Path | None = None
        self.kubeconfig: Path | None = None
        self.server: str | None = None
        self.admin_token: str | None = None
        self.ca_file: Path | None = None
        self.node_name: str | None = None
        self._owned = False  # True when we started it (and so must stop it)

    # ----------------------------------------------------------------- life cycle

    def build(self) -> Path:
        """Build (or find in the cache) the binaries; return their directory."""
        if self.bin_dir is None:
            proc = subprocess.run(
                [str(SCRIPTS / "build.sh")],
                stdout=subprocess.PIPE,
                text=True,
                check=False,
            )  # stderr (progress) goes straight to ours
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                raise ControlPlaneError(f"build.sh failed with exit code {proc.returncode}")
            self.bin_dir = Path(lines[-1])
        return self.bin_dir

    def start(self, state_dir: str | os.PathLike[str]) -> ControlPlane:
        """Start etcd, kube-apiserver, controller manager, scheduler and kwok."""
        bin_dir = self.build()
        state = Path(state_dir).resolve()
        state.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "BIN": str(bin_dir)}
        self.state_dir = state
        self._owned = True
        atexit.register(self.stop)  # a safety net; callers still call stop()
        proc = subprocess.run(
            [str(SCRIPTS / "up.sh"), str(state)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            self.stop()
            raise ControlPlaneError(f"up.sh failed with exit code {proc.returncode}:\n{proc.stderr[-6000:]}")
        sys.stderr.write(proc.stderr)
        self._load(state)
        return self

    def attach(self, state_dir: str | os.PathLike[str]) -> ControlPlane:
        """Use a control plane that up.sh started earlier (stop() leaves it running)."""
        state = Path(state_dir).resolve()
        if not (state / "cluster.env").is_file():
            raise ControlPlaneError(f"no running control plane in {state} (no cluster.env)")
        self.state_dir = state
        self._owned = False
        self._load(state)
        return self

    def stop(self) -> None:
        """Stop what :meth:`start` started. Safe to call more than once."""
        if not self._owned or self.state_dir is None:
            return
        self._owned = False
        subprocess.run([str(SCRIPTS / "down.sh"), str(self.state_dir)], check=False)

    def _load(self, state: Path) -> None:
        values = _read_env_file(state / "cluster.env")
        self.kubeconfig = Path(values["KUBECONFIG"])
        self.server = values["SERVER"]
        self.admin_token = values["TOKEN"]
        self.bin_dir = Path(values["BIN"])
        self.ca_file = Path(values["CA_FILE"])
        self.node_name = values["NODE_NAME"]

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -------------------------------------------------------------------- clients

    @property
    def log_dir(self) -> Path:
        assert self.state_dir is not None, "not started"
        return self.state_dir / "logs"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a client process: KUBECONFIG set, the binaries first on PATH."""
        assert self.kubeconfig is not None and self.bin_dir is not None, "not started"
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; raise on failure when ``check``."""
        assert self.kubeconfig is not None and self.bin_dir is not None, "not started"
        cmd = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def get(self, *args: str) -> Any:
        """``kubectl get ARGS -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, *objects: Mapping[str, Any], namespace: str | None = None) -> None:
        """Server-side apply of manifests given as dicts."""
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", "--server-side", "-f", "-", *ns, input=doc)

    def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 60.0,
        interval: float = 0.25,
        what: str = "condition",
    ) -> T:
        return wait_for(predicate, timeout=timeout, interval=interval, what=what)

    # ------------------------------------------------------------------ pod helpers

    def finish_pod(
        self,
        namespace: str,
        name: str,
        exit_code: int = 0,
        message: str = "",
    ) -> None:
        """Report that the process backing a pod ended (there is no kubelet to do it).

        Sets the pod's phase to Succeeded (exit code 0) or Failed, every container
        to ``terminated`` with ``exit_code``, and Ready to False, through the pod's
        status subresource, as a kubelet would.
        """
        pod = self.get("pod", name, "-n", namespace)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        reason = "Completed" if exit_code == 0 else "Error"
        statuses = []
        previous = {s["name"]: s for s in pod.get("status", {}).get("containerStatuses", [])}
        for container in pod["spec"]["containers"]:
            started = previous.get(container["name"], {}).get("state", {}).get("running", {}).get("startedAt", now)
            statuses.append(
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": reason,
                            "message": message,
                            "startedAt": started,
                            "finishedAt": now,
                        }
                    },
                }
            )
        conditions = [
            c for c in pod.get("status", {}).get("conditions", []) if c["type"] not in ("Ready", "ContainersReady")
        ]
        for cond in ("Ready", "ContainersReady"):
            conditions.append(
                {
                    "type": cond,
                    "status": "False",
                    "reason": "PodCompleted" if exit_code == 0 else "PodFailed",
                    "lastTransitionTime": now,
                }
            )
        patch = {
            "status": {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "conditions": conditions,
                "containerStatuses": statuses,
            }
        }
        self.kubectl(
            "patch",
            "pod",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )

    def pods(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        args: Sequence[str] = ("pods", "-n", namespace) + (("-l", selector) if selector else ())
        items: list[dict[str, Any]] = self.get(*args)["items"]
        return items
