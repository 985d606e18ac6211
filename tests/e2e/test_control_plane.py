"""Smoke test of the e2e control plane itself: the controllers the operator relies
on really run (Deployments, Jobs, garbage collection, scheduling, kwok's node),
and the apiserver enforces CRD schemas with CEL rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

# Never pulled: kwok plays the node, nothing runs an image.
IMAGE = "registry.invalid/kubeload/nothing:0"


def _condition(obj: dict[str, Any], type_: str) -> str | None:
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == type_:
            return str(cond.get("status"))
    return None


def test_kubectl_version_matches_server(control_plane) -> None:
    out = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == "v1.36.3"
    assert out["clientVersion"]["gitVersion"] == "v1.36.3"
    assert out["serverVersion"]["minor"] == "36"


def test_kwok_node_is_ready_and_untainted(control_plane) -> None:
    node = control_plane.get("node", control_plane.node_name)
    assert _condition(node, "Ready") == "True"
    taints = [t for t in node["spec"].get("taints", []) if t["effect"] == "NoSchedule"]
    assert taints == []


def test_deployment_gets_replicaset_and_running_pod(control_plane, namespace) -> None:
    labels = {"app": "smoke"}
    control_plane.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "smoke", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "main", "image": IMAGE}]},
                },
            },
        }
    )
    deployment = control_plane.get("deployment", "smoke", "-n", namespace)

    replicasets = control_plane.wait_for(
        lambda: control_plane.get("replicasets", "-n", namespace, "-l", "app=smoke")["items"],
        what="a ReplicaSet of the Deployment",
    )
    owner = replicasets[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("Deployment", deployment["metadata"]["uid"])

    def running_pod() -> dict[str, Any] | None:
        for pod in control_plane.pods(namespace, "app=smoke"):
            if pod["status"].get("phase") == "Running" and _condition(pod, "Ready") == "True":
                return pod
        return None

    pod = control_plane.wait_for(running_pod, what="a Running, Ready pod")
    assert pod["spec"]["nodeName"] == control_plane.node_name
    assert pod["metadata"]["ownerReferences"][0]["uid"] == replicasets[0]["metadata"]["uid"]

    control_plane.wait_for(
        lambda: control_plane.get("deployment", "smoke", "-n", namespace)["status"].get("availableReplicas") == 1,
        what="the Deployment to be available",
    )


def _job(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "worker", "image": IMAGE, "command": ["true"]}],
                }
            },
        },
    }


def _running_job_pod(control_plane, namespace: str, job: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        for pod in control_plane.pods(namespace, f"batch.kubernetes.io/job-name={job}"):
            if pod["status"].get("phase") == "Running":
                return pod
        return None

    return control_plane.wait_for(running, what=f"a Running pod of Job {job}")


def test_job_completes_when_the_test_finishes_its_pod(control_plane, namespace) -> None:
    control_plane.apply(_job("smoke", namespace))
    pod = _running_job_pod(control_plane, namespace, "smoke")
    assert pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "0"

    # kwok leaves Job pods Running: nothing completes them but the test.
    job = control_plane.get("job", "smoke", "-n", namespace)
    assert _condition(job, "Complete") is None

    control_plane.finish_pod(namespace, pod["metadata"]["name"], exit_code=0)
    job = control_plane.wait_for(
        lambda: (j := control_plane.get("job", "smoke", "-n", namespace)) and _condition(j, "Complete") == "True" and j,
        what="the Job to complete",
    )
    assert job["status"]["succeeded"] == 1


def test_job_fails_when_its_pod_fails(control_plane, namespace) -> None:
    control_plane.apply(_job("broken", namespace))
    pod = _running_job_pod(control_plane, namespace, "broken")
    control_plane.finish_pod(namespace, pod["metadata"]["name"], exit_code=3)
    control_plane.wait_for(
        lambda: _condition(control_plane.get("job", "broken", "-n", namespace), "Failed") == "True",
        what="the Job to fail",
    )


def test_kwok_completes_a_pod_on_request(control_plane, namespace) -> None:
    control_plane.apply(_job("on-request", namespace))
    pod = _running_job_pod(control_plane, namespace, "on-request")
    control_plane.kubectl("annotate", "pod", pod["metadata"]["name"], "-n", namespace, "kwok.x-k8s.io/complete=true")
    control_plane.wait_for(
        lambda: _condition(control_plane.get("job", "on-request", "-n", namespace), "Complete") == "True",
        what="the Job to complete",
    )


def test_garbage_collector_deletes_owned_objects(control_plane, namespace) -> None:
    control_plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "owner", "namespace": namespace},
            "data": {"role": "owner"},
        }
    )
    owner = control_plane.get("configmap", "owner", "-n", namespace)
    control_plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "owned",
                "namespace": namespace,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
            "data": {"role": "owned"},
        }
    )
    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace)

    def owned_gone() -> bool:
        proc = control_plane.kubectl("get", "configmap", "owned", "-n", namespace, "--ignore-not-found", "-o", "name")
        return proc.stdout.strip() == ""

    control_plane.wait_for(owned_gone, what="the garbage collector to delete the owned ConfigMap")


def test_crd_cel_rule_rejects_invalid_object(control_plane) -> None:
    group = "smoke.kubeload.dev"
    crd_name = f"widgets.{group}"
    message = "spec.min must not exceed spec.max"
    control_plane.apply(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name},
            "spec": {
                "group": group,
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "properties": {
                                            "min": {"type": "integer"},
                                            "max": {"type": "integer"},
                                        },
                                        "x-kubernetes-validations": [
                                            {"rule": "self.min <= self.max", "message": message}
                                        ],
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    try:
        control_plane.kubectl("wait", "--for=condition=Established", f"crd/{crd_name}", "--timeout=60s")

        def widget(name: str, lo: int, hi: int) -> str:
            return json.dumps(
                {
                    "apiVersion": f"{group}/v1",
                    "kind": "Widget",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {"min": lo, "max": hi},
                }
            )

        # Right after Established the discovery cache may still lag: retry the good one.
        control_plane.wait_for(
            lambda: control_plane.kubectl("create", "-f", "-", input=widget("good", 1, 2), check=False).returncode == 0,
            what="a valid Widget to be accepted",
        )
        bad = control_plane.kubectl("create", "-f", "-", input=widget("bad", 3, 2), check=False)
        assert bad.returncode != 0
        assert message in bad.stderr
        assert "Invalid value" in bad.stderr
    finally:
        control_plane.kubectl("delete", "crd", crd_name, "--wait=false", check=False)
