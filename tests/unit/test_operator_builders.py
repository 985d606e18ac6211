"""Every child builder: owner references, labels, names, security, env, secrets kept out."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kubeload.api.models import LoadTestSpec
from kubeload.operator.builders import (
    Owner,
    child_names,
    network_policy,
    pinned_spec_hash,
    redis_deployment,
    redis_service,
    redis_url,
    refresher_deployment,
    run_secret,
    summary_config_map,
    wire_spec_for_pods,
    workers_job,
)
from kubeload.operator.settings import OperatorSettings

OWNER = Owner(name="checkout", namespace="perf", uid="0b9f0a52-5d3e-4c3c-9a4e-1d2f3a4b5c6d")
SETTINGS = OperatorSettings(worker_image="example/kubeload:1", redis_image="redis:7")


def make_spec(**extra: Any) -> LoadTestSpec:
    base: dict[str, Any] = {
        "target": {"baseURL": "http://api.example"},
        "requests": [{"name": "home"}],
        "load": {"executor": "ramping-vus", "stages": [{"duration": "10s", "target": 20}]},
    }
    base.update(extra)
    return LoadTestSpec.model_validate(base)


AUTH = {
    "grant": "client_credentials",
    "tokenURL": "http://auth.example/token",
    "clientID": {"value": "my-client"},
    "clientSecret": {"secretKeyRef": {"name": "api-creds", "key": "secret"}},
}
SECRET_INLINE = "inline-s3cr3t-value"


def all_children(spec: LoadTestSpec) -> list[dict[str, Any]]:
    return [
        run_secret(OWNER, spec, "pw"),
        redis_deployment(OWNER, SETTINGS),
        redis_service(OWNER),
        network_policy(OWNER, SETTINGS),
        refresher_deployment(OWNER, spec, SETTINGS),
        workers_job(OWNER, spec, SETTINGS, completions=4, parallelism=1),
        summary_config_map(OWNER, {}),
    ]


def test_every_child_is_owned_labelled_and_named_deterministically() -> None:
    spec = make_spec(auth=AUTH)
    expected_names = set(child_names("checkout").values())
    for child in all_children(spec):
        meta = child["metadata"]
        assert meta["namespace"] == "perf"
        assert meta["name"] in expected_names
        assert meta["name"].startswith("checkout-")
        (ref,) = meta["ownerReferences"]
        assert ref == {"apiVersion": "kubeload.dev/v1alpha1", "kind": "LoadTest", "name": "checkout",
                       "uid": OWNER.uid, "controller": True, "blockOwnerDeletion": True}
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "kubeload"
        assert labels["app.kubernetes.io/instance"] == "checkout"
        assert labels["app.kubernetes.io/managed-by"] == "kubeload-operator"
        assert labels["kubeload.dev/loadtest"] == "checkout"
        assert labels["kubeload.dev/component"] == labels["app.kubernetes.io/component"]
    # Building twice gives the same objects: create-or-adopt can rely on it.
    assert all_children(spec) == all_children(spec)


def test_run_id_derives_from_uid() -> None:
    assert OWNER.run_id == "0b9f0a525d3e"


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _container(obj)["env"]}


def test_redis_is_locked_down_and_probed() -> None:
    dep = redis_deployment(OWNER, SETTINGS)
    pod = dep["spec"]["template"]["spec"]
    container = _container(dep)
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["selector"]["matchLabels"] == {"kubeload.dev/loadtest": "checkout",
                                                      "kubeload.dev/component": "redis"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] is True and sec["allowPrivilegeEscalation"] is False
    assert sec["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert "readinessProbe" in container
    # The password comes from the run Secret and is only referenced ($(VAR) expansion).
    assert "$(REDIS_PASSWORD)" in container["args"]
    assert _env(dep)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "checkout-run", "key": "redis-password"}
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]


def test_service_and_network_policy_select_the_redis_pod() -> None:
    svc = redis_service(OWNER)
    assert svc["spec"]["selector"] == redis_deployment(OWNER, SETTINGS)["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["port"] == 6379
    policy = network_policy(OWNER, SETTINGS)["spec"]
    assert policy["podSelector"]["matchLabels"] == svc["spec"]["selector"]
    peers = policy["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"kubeload.dev/loadtest": "checkout"}}} in peers
    assert policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 6379}]


def test_redis_url_internal_and_external() -> None:
    assert redis_url(OWNER, make_spec()) == "redis://checkout-redis.perf.svc:6379/0"
    external = make_spec(redis={"url": "redis://shared:6379/3", "passwordSecretRef": {"name": "r", "key": "pw"}})
    assert redis_url(OWNER, external) == "redis://shared:6379/3"
    job = workers_job(OWNER, external, SETTINGS, 1, 1)
    assert _env(job)["KUBELOAD_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "r", "key": "pw"}


@pytest.mark.parametrize("replicas", [1, 2])
def test_refresher(replicas: int) -> None:
    spec = make_spec(auth={**AUTH, "replicas": replicas})
    dep = refresher_deployment(OWNER, spec, SETTINGS)
    container = _container(dep)
    env = _env(dep)
    assert dep["spec"]["replicas"] == replicas
    assert container["command"] == ["kubeload", "refresher"]
    assert container["image"] == "example/kubeload:1"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "probe"}
    assert env["KUBELOAD_CREDENTIAL_CLIENTSECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "api-creds", "key": "secret"}
    # The inline clientID moved into the run Secret; it reaches the pod by reference.
    assert env["KUBELOAD_CREDENTIAL_CLIENTID"]["valueFrom"]["secretKeyRef"] == {
        "name": "checkout-run", "key": "credential-clientid"}
    assert env["KUBELOAD_RUN"]["value"] == "perf/checkout/0b9f0a525d3e"
    assert env["KUBELOAD_REDIS_URL"]["value"] == "redis://checkout-redis.perf.svc:6379/0"
    assert "valueFrom" in env["KUBELOAD_REDIS_PASSWORD"]
    # /metrics is served by the probe server, on the probe port.
    probe_port = container["ports"][0]["containerPort"]
    assert dep["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": str(probe_port), "prometheus.io/path": "/metrics"}


def test_inline_secrets_never_reach_pod_specs() -> None:
    spec = make_spec(auth={**AUTH, "clientSecret": {"value": SECRET_INLINE}},
                     workers={"env": [{"name": "X", "value": "1"}]})
    for child in all_children(spec):
        if child["kind"] == "Secret":
            continue
        assert SECRET_INLINE not in json.dumps(child)
    secret = run_secret(OWNER, spec, "pw")
    assert base64.b64decode(secret["data"]["credential-clientsecret"]).decode() == SECRET_INLINE
    pinned = json.loads(base64.b64decode(secret["data"]["spec.json"]))
    assert LoadTestSpec.model_validate(pinned) == spec
    pods_view = wire_spec_for_pods(OWNER, spec)
    assert pods_view["auth"]["clientSecret"] == {
        "secretKeyRef": {"name": "checkout-run", "key": "credential-clientsecret"}}
    LoadTestSpec.model_validate(pods_view)  # still a valid spec for the processes


def test_run_secret_without_internal_redis_has_no_password() -> None:
    assert "redis-password" not in run_secret(OWNER, make_spec(), None)["data"]


def test_workers_job() -> None:
    spec = make_spec(workers={
        "vusPerWorker": 5, "maxWorkers": 8, "backoffLimit": 2,
        "nodeSelector": {"pool": "load"},
        "tolerations": [{"key": "load", "operator": "Exists", "effect": "NoSchedule"}],
        "env": [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "TOKEN2", "secretKeyRef": {"name": "s", "key": "k"}}],
        "envFrom": [{"configMapRef": {"name": "cm"}}],
        "podLabels": {"team": "perf"},
        "resources": {"limits": {"cpu": "2"}},
    })
    job = workers_job(OWNER, spec, SETTINGS, completions=4, parallelism=2)
    js = job["spec"]
    pod = js["template"]["spec"]
    container = _container(job)
    env = _env(job)
    assert js["completionMode"] == "Indexed"
    assert (js["completions"], js["parallelism"], js["backoffLimit"]) == (4, 2, 2)
    assert pod["restartPolicy"] == "Never"
    assert container["command"] == ["kubeload", "worker"]
    assert pod["nodeSelector"] == {"pool": "load"}
    assert pod["tolerations"] == [{"key": "load", "operator": "Exists", "effect": "NoSchedule"}]
    assert container["envFrom"] == [{"configMapRef": {"name": "cm"}}]
    assert container["resources"] == {"limits": {"cpu": "2"}, "requests": {}}
    assert js["template"]["metadata"]["labels"]["team"] == "perf"
    assert js["template"]["metadata"]["labels"]["kubeload.dev/component"] == "worker"
    assert env["LOG_LEVEL"]["value"] == "debug"
    assert env["TOKEN2"]["valueFrom"]["secretKeyRef"] == {"name": "s", "key": "k"}
    assert json.loads(env["KUBELOAD_SPEC"]["value"]) == spec.wire()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["terminationGracePeriodSeconds"] == 40  # gracefulStop 30s + 10s
    assert env["KUBELOAD_METRICS_PORT"]["value"] == "9090"
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    assert js["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics"}


def test_workers_pod_annotations_override_the_scrape_defaults() -> None:
    spec = make_spec(workers={"podAnnotations": {"prometheus.io/scrape": "false", "team": "perf"}})
    annotations = workers_job(OWNER, spec, SETTINGS, 1, 1)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "false"
    assert annotations["team"] == "perf"
    assert annotations["prometheus.io/port"] == "9090"


def test_workers_job_default_resources_and_image() -> None:
    job = workers_job(OWNER, make_spec(workers={"image": "mine:2"}), SETTINGS, 1, 1)
    assert _container(job)["image"] == "mine:2"
    assert _container(workers_job(OWNER, make_spec(), SETTINGS, 1, 1))["resources"] == SETTINGS.worker_resources


def test_summary_config_map_carries_data() -> None:
    cm = summary_config_map(OWNER, {"summary.json": "{}"})
    assert cm["kind"] == "ConfigMap" and cm["data"] == {"summary.json": "{}"}


def test_pinned_hash_ignores_mutable_fields_only() -> None:
    spec = make_spec().wire()
    assert pinned_spec_hash(spec) == pinned_spec_hash({**spec, "abort": True, "cleanup": {"policy": "Never"}})
    assert pinned_spec_hash(spec) != pinned_spec_hash({**spec, "workers": {"maxWorkers": 3}})
