"""Security of what the operator creates and what the chart installs (pure, fast).

Builds every child of a LoadTest with auth (inline credentials planted as `{value: ...}`) and an
internal Redis with `kubeload.operator.builders`, and renders the chart with helm when it is
available (the approach of tests/unit/test_chart.py).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from kubeload.api.models import LoadTestSpec
from kubeload.operator.builders import (
    LOADTEST_LABEL,
    Owner,
    network_policy,
    redis_deployment,
    redis_service,
    refresher_deployment,
    run_secret,
    summary_config_map,
    workers_job,
)
from kubeload.operator.settings import OperatorSettings

UNIT = Path(__file__).resolve().parents[1] / "unit"
if str(UNIT) not in sys.path:
    sys.path.insert(0, str(UNIT))

from test_chart import HELM, NO_HELM, of_kind, rbac_rules, render  # noqa: E402

pytestmark = pytest.mark.faults

OWNER = Owner(name="checkout", namespace="perf", uid="0b9f0a52-5d3e-4c3c-9a4e-1d2f3a4b5c6d")
SETTINGS = OperatorSettings(worker_image="example/kubeload:1", redis_image="redis:7")
PLANTED = {
    "clientID": "planted-client-id-3e8d1f",
    "clientSecret": "planted-client-secret-b71c0a",
    "username": "planted-user-name-6a2f94",
    "password": "planted-user-password-d0c5e3",
}
REDIS_PASSWORD = "planted-redis-password-41f7a9"
POD_KINDS = {"Deployment", "Job"}


def spec_with_planted_credentials() -> LoadTestSpec:
    return LoadTestSpec.model_validate({
        "target": {"baseURL": "http://api.example", "headers": {"X-Team": "perf"}},
        "requests": [{"name": "home"}],
        "load": {"executor": "ramping-vus", "stages": [{"duration": "10s", "target": 20}]},
        "auth": {"grant": "password", "tokenURL": "http://auth.example/token",
                 **{field: {"value": value} for field, value in PLANTED.items()}},
    })


def children() -> list[dict[str, Any]]:
    spec = spec_with_planted_credentials()
    return [
        run_secret(OWNER, spec, REDIS_PASSWORD),
        redis_deployment(OWNER, SETTINGS),
        redis_service(OWNER),
        network_policy(OWNER, SETTINGS),
        refresher_deployment(OWNER, spec, SETTINGS),
        workers_job(OWNER, spec, SETTINGS, completions=3, parallelism=2),
        summary_config_map(OWNER, {"summary.json": "{}"}),
    ]


def pod_templates() -> dict[str, dict[str, Any]]:
    return {f"{c['kind']}/{c['metadata']['name']}": c["spec"]["template"] for c in children()
            if c["kind"] in POD_KINDS}


def test_every_pod_is_locked_down_with_limits() -> None:
    """Must hold for each of the 3 pod templates (Redis, refresher, workers) and each container:
    runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL, cpu
    and memory limits, no service-account token, no host namespaces or privileged mode."""
    templates = pod_templates()
    assert len(templates) == 3, sorted(templates)
    containers = 0
    for where, template in templates.items():
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"].get("runAsUser", 1) != 0, where
        assert pod["automountServiceAccountToken"] is False, where
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        for container in pod.get("initContainers", []) + pod["containers"]:
            containers += 1
            sec = container["securityContext"]
            assert sec["readOnlyRootFilesystem"] is True, where
            assert sec["allowPrivilegeEscalation"] is False, where
            assert sec["capabilities"]["drop"] == ["ALL"], where
            assert not sec.get("capabilities", {}).get("add"), where
            assert sec.get("privileged", False) is False, where
            assert sec.get("runAsUser", 1) != 0, where
            limits = container["resources"]["limits"]
            assert limits.get("cpu") and limits.get("memory"), (where, container["resources"])
    assert containers == 3


def test_redis_password_always_comes_from_a_secret() -> None:
    """Must hold: the internal Redis is started with `--requirepass $(REDIS_PASSWORD)` and that
    variable comes from the run Secret; every pod gets KUBELOAD_REDIS_PASSWORD from the same
    Secret key (valueFrom, never `value`), and the Secret holds the generated password."""
    objects = {c["kind"]: c for c in children() if c["kind"] != "Deployment"}
    secret = objects["Secret"]
    assert base64.b64decode(secret["data"]["redis-password"]).decode() == REDIS_PASSWORD
    secret_name = secret["metadata"]["name"]
    templates = pod_templates()
    redis_pod = next(t for w, t in templates.items() if "redis" in w.split("/")[1])["spec"]
    (redis_container,) = redis_pod["containers"]
    args = redis_container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    env = {e["name"]: e for e in redis_container["env"]}
    assert env["REDIS_PASSWORD"] == {"name": "REDIS_PASSWORD", "valueFrom": {
        "secretKeyRef": {"name": secret_name, "key": "redis-password"}}}
    checked = 0
    for where, template in templates.items():
        for container in template["spec"]["containers"]:
            for var in container.get("env", []):
                if any(word in var["name"] for word in ("PASSWORD", "SECRET", "AUTH", "CREDENTIAL")):
                    assert "value" not in var and "secretKeyRef" in var["valueFrom"], (where, var)
                    checked += 1
            if container["name"] != "redis":
                password = next(e for e in container["env"] if e["name"] == "KUBELOAD_REDIS_PASSWORD")
                assert password["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": "redis-password"}
    # Redis: REDIS_PASSWORD, REDISCLI_AUTH; refresher: the Redis password and 4 credentials;
    # workers: the Redis password.
    assert checked == 8


def test_network_policy_admits_only_the_tests_pods_and_the_operator() -> None:
    """Must hold: the policy selects exactly the Redis pod, restricts Ingress, has one rule on
    port 6379 whose peers are (a) pods of this LoadTest in its namespace (which the refresher and
    worker pods carry) and (b) the operator's pods, whose labels the chart's Deployment carries."""
    policy = network_policy(OWNER, SETTINGS)
    spec = policy["spec"]
    templates = pod_templates()
    redis_labels = next(t for w, t in templates.items() if "redis" in w.split("/")[1])["metadata"]["labels"]
    assert all(redis_labels.get(k) == v for k, v in spec["podSelector"]["matchLabels"].items())
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    peers = rule["from"]
    assert len(peers) == 2
    same_ns, operator = peers
    assert same_ns == {"podSelector": {"matchLabels": {LOADTEST_LABEL: "checkout"}}}  # no namespaceSelector
    assert operator["podSelector"]["matchLabels"] == SETTINGS.operator_selector
    assert operator["podSelector"]["matchLabels"], "an empty selector would admit every pod"
    for where, template in templates.items():
        assert template["metadata"]["labels"][LOADTEST_LABEL] == "checkout", where
    # Another LoadTest's pods do not match.
    other = workers_job(Owner(name="other", namespace="perf", uid="1" * 8), spec_with_planted_credentials(),
                        SETTINGS, 1, 1)["spec"]["template"]["metadata"]["labels"]
    assert other[LOADTEST_LABEL] != "checkout"
    if HELM is not None:
        deployment = next(o for o in of_kind(render(), "Deployment"))
        operator_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert SETTINGS.operator_selector.items() <= operator_labels.items(), operator_labels


def test_no_credential_value_in_any_rendered_object_but_the_secret() -> None:
    """Injected: four credentials planted inline (`{value: ...}`) and a planted Redis password.
    Must hold: none of the 5 strings (nor their base64) appears in the JSON of any child other
    than the run Secret, which holds each exactly once (base64)."""
    planted = [*PLANTED.values(), REDIS_PASSWORD]
    encoded = [base64.b64encode(p.encode()).decode() for p in planted]
    others = [c for c in children() if c["kind"] != "Secret"]
    assert len(others) == 6
    for child in others:
        text = json.dumps(child)
        leaked = [p for p in planted + encoded if p in text]
        assert leaked == [], (child["kind"], child["metadata"]["name"], leaked)
    secret = next(c for c in children() if c["kind"] == "Secret")
    values = [base64.b64decode(v).decode() for v in secret["data"].values()]
    for p in planted:
        assert values.count(p) == 1, p


@pytest.mark.skipif(HELM is None, reason=NO_HELM)
@pytest.mark.parametrize("sets", [(), ("rbac.namespaced=true", "watchNamespaces={team-a,team-b}")])
def test_chart_rbac_has_no_wildcard(sets: tuple[str, ...]) -> None:
    """Must hold: every Role/ClusterRole rule of the rendered chart names its API groups,
    resources and verbs explicitly (no `*`), and never grants escalate/bind/impersonate."""
    rules = rbac_rules(render(*sets))
    assert len(rules) >= 5
    for where, rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in item for item in rule.get(field, [])), f"{where}: wildcard in {field}"
        assert not set(rule["verbs"]) & {"escalate", "bind", "impersonate"}, (where, rule)
