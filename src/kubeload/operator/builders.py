"""Pure builders of every child object of a LoadTest (dicts, ready for the API).

Each child gets an ownerReference to its LoadTest (so deleting the LoadTest lets the garbage
collector remove it), the standard `app.kubernetes.io/*` labels plus `kubeload.dev/loadtest`
and `kubeload.dev/component`, and a deterministic name, so a reconcile can always
create-or-adopt it. Nothing here talks to the API or reads the clock.

Secrets never appear in a pod spec: inline credential values move into the run Secret and
reach pods through `secretKeyRef`, the same way user-provided Secrets do.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..api.durations import parse_duration
from ..api.models import API_VERSION, KIND, LoadTestSpec
from ..credentials import credential_env_name
from ..observability import DEFAULT_METRICS_PORT, ENV_METRICS_PORT
from ..runtime import ENV_REDIS_PASSWORD, ENV_REDIS_URL, ENV_RUN, ENV_SPEC
from .settings import OperatorSettings

__all__ = [
    "ABORT_ANNOTATION",
    "COMPONENT_LABEL",
    "LOADTEST_LABEL",
    "REDIS_PORT",
    "SECRET_PASSWORD_KEY",
    "SECRET_SPEC_KEY",
    "SUMMARY_CHECKPOINT_KEY",
    "SUMMARY_KEY",
    "SUMMARY_RESULT_KEY",
    "Owner",
    "child_names",
    "labels",
    "network_policy",
    "pinned_spec_hash",
    "redis_deployment",
    "redis_service",
    "redis_url",
    "refresher_deployment",
    "run_secret",
    "selector",
    "summary_config_map",
    "wire_spec_for_pods",
    "workers_job",
]

LOADTEST_LABEL = "kubeload.dev/loadtest"
COMPONENT_LABEL = "kubeload.dev/component"
RUN_LABEL = "kubeload.dev/run-id"
ABORT_ANNOTATION = "kubeload.dev/abort"
REDIS_PORT = 6379
SECRET_PASSWORD_KEY = "redis-password"
SECRET_SPEC_KEY = "spec.json"
SUMMARY_KEY = "summary.json"
SUMMARY_RESULT_KEY = "result.json"
SUMMARY_CHECKPOINT_KEY = "checkpoint.json"
# Fields of the spec that may change after the run started (everything else is pinned).
MUTABLE_FIELDS = ("abort", "cleanup")


@dataclass(frozen=True)
class Owner:
    """The LoadTest the children belong to."""

    name: str
    namespace: str
    uid: str

    @property
    def run_id(self) -> str:
        """Deterministic per object: a LoadTest recreated under the same name is a new run."""
        return self.uid.replace("-", "")[:12]

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def child_names(name: str) -> dict[str, str]:
    """Deterministic child names; the API limits LoadTest names to 40 characters for them."""
    return {
        "redis": f"{name}-redis",
        "refresher": f"{name}-refresher",
        "workers": f"{name}-workers",
        "summary": f"{name}-summary",
        "run": f"{name}-run",
    }


def selector(owner: Owner, component: str) -> dict[str, str]:
    """The labels that select one component's pods (stable: used in Deployment selectors)."""
    return {LOADTEST_LABEL: owner.name, COMPONENT_LABEL: component}


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubeload",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "kubeload",
        "app.kubernetes.io/managed-by": "kubeload-operator",
        **selector(owner, component),
        RUN_LABEL: owner.run_id,
    }


def _metadata(owner: Owner, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner.reference()],
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ------------------------------------------------------------------------------ the spec


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in MUTABLE_FIELDS}


def pinned_spec_hash(spec: dict[str, Any]) -> str:
    """Hash of the spec fields that are fixed once the run exists (abort, cleanup excluded)."""
    text = json.dumps(_comparable(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _credential_key(field: str) -> str:
    return f"credential-{field.lower()}"


def wire_spec_for_pods(owner: Owner, spec: LoadTestSpec) -> dict[str, Any]:
    """The spec pods receive in KUBELOAD_SPEC: inline credential values replaced by references
    to the run Secret, so no pod spec, plan or log line holds a secret."""
    wire = spec.wire()
    auth = wire.get("auth")
    if spec.auth is not None and auth is not None:
        for field, credential in spec.auth.credentials().items():
            if credential.value is not None:
                auth[field] = {
                    "secretKeyRef": {"name": child_names(owner.name)["run"], "key": _credential_key(field)}
                }
    return wire


# ------------------------------------------------------------------------------ children


def run_secret(owner: Owner, spec: LoadTestSpec, redis_password: str | None) -> dict[str, Any]:
    """The run's Secret: the generated Redis password, inline credentials, the pinned spec."""
    data = {SECRET_SPEC_KEY: _b64(json.dumps(spec.wire(), sort_keys=True))}
    if redis_password is not None:
        data[SECRET_PASSWORD_KEY] = _b64(redis_password)
    if spec.auth is not None:
        for field, credential in spec.auth.credentials().items():
            if credential.value is not None:
                data[_credential_key(field)] = _b64(credential.value)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(owner, child_names(owner.name)["run"], "run"),
        "type": "Opaque",
        "data": data,
    }


def _pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def redis_deployment(owner: Owner, settings: OperatorSettings) -> dict[str, Any]:
    names = child_names(owner.name)
    pod_labels = labels(owner, "redis")
    container = {
        "name": "redis",
        "image": settings.redis_image,
        "imagePullPolicy": settings.image_pull_policy,
        # Kubernetes expands $(REDIS_PASSWORD) in args, so the password is never in the spec.
        "command": ["redis-server"],
        "args": [
            "--port", str(REDIS_PORT), "--requirepass", "$(REDIS_PASSWORD)",
            "--save", "", "--appendonly", "no", "--dir", "/data",
        ],
        "env": [
            _secret_env("REDIS_PASSWORD", names["run"], SECRET_PASSWORD_KEY),
            # redis-cli reads the password from REDISCLI_AUTH: the probe has no secret on its
            # command line.
            _secret_env("REDISCLI_AUTH", names["run"], SECRET_PASSWORD_KEY),
        ],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "exec": {"command": ["sh", "-c", "redis-cli ping | grep -q PONG"]},
            "initialDelaySeconds": 1,
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": settings.redis_resources,
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, names["redis"], "redis"),
        "spec": {
            "replicas": 1,
            # One Redis at a time: two would split the run's state.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(owner, "redis")},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    # 999 is the redis user of the official image.
                    "securityContext": _pod_security() | {"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999},
                    "containers": [container],
                    "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "256Mi"}}],
                },
            },
        },
    }


def redis_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, child_names(owner.name)["redis"], "redis"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner, "redis"),
            "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
        },
    }


def redis_url(owner: Owner, spec: LoadTestSpec) -> str:
    """The URL pods and the operator use (no password in it: that travels separately)."""
    if spec.redis.url:
        return spec.redis.url
    return f"redis://{child_names(owner.name)['redis']}.{owner.namespace}.svc:{REDIS_PORT}/0"


def network_policy(owner: Owner, settings: OperatorSettings) -> dict[str, Any]:
    """Only this test's pods (and the operator) may reach its Redis."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(owner, child_names(owner.name)["redis"], "redis"),
        "spec": {
            "podSelector": {"matchLabels": selector(owner, "redis")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {LOADTEST_LABEL: owner.name}}},
                        {
                            "namespaceSelector": {},
                            "podSelector": {"matchLabels": dict(settings.operator_selector)},
                        },
                    ],
                    "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
                }
            ],
        },
    }


def _runtime_env(owner: Owner, spec: LoadTestSpec) -> list[dict[str, Any]]:
    names = child_names(owner.name)
    env: list[dict[str, Any]] = [
        {"name": ENV_REDIS_URL, "value": redis_url(owner, spec)},
        {"name": ENV_RUN, "value": f"{owner.namespace}/{owner.name}/{owner.run_id}"},
        {"name": ENV_SPEC, "value": json.dumps(wire_spec_for_pods(owner, spec), sort_keys=True)},
    ]
    if not spec.redis.url:
        env.append(_secret_env(ENV_REDIS_PASSWORD, names["run"], SECRET_PASSWORD_KEY))
    elif spec.redis.password_secret_ref is not None:
        ref = spec.redis.password_secret_ref
        env.append(_secret_env(ENV_REDIS_PASSWORD, ref.name, ref.key))
    return env


def _image(spec: LoadTestSpec, settings: OperatorSettings) -> str:
    return spec.workers.image or settings.worker_image


def _scrape_annotations(port: int) -> dict[str, str]:
    """The `prometheus.io/*` annotations of a pod serving `/metrics` on `port`."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}


def refresher_deployment(owner: Owner, spec: LoadTestSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The token refresher; only built when `spec.auth` is set."""
    assert spec.auth is not None
    names = child_names(owner.name)
    env = _runtime_env(owner, spec)
    for field, credential in spec.auth.credentials().items():
        if credential.secret_key_ref is not None:
            ref = credential.secret_key_ref
            env.append(_secret_env(credential_env_name(field), ref.name, ref.key))
        elif credential.value is not None:
            env.append(_secret_env(credential_env_name(field), names["run"], _credential_key(field)))
    env.append({"name": "KUBELOAD_PROBE_PORT", "value": str(settings.probe_port)})
    # The lease holder id: the pod name tells in status which replica refreshes.
    env.append({"name": "KUBELOAD_REFRESHER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    container = {
        "name": "refresher",
        "image": _image(spec, settings),
        "imagePullPolicy": spec.workers.image_pull_policy or settings.image_pull_policy,
        "command": ["kubeload", "refresher"],
        "env": env,
        "ports": [{"name": "probe", "containerPort": settings.probe_port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "probe"},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": settings.refresher_resources,
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - the pod's own emptyDir
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, names["refresher"], "refresher"),
        "spec": {
            # A second replica is a standby: the Redis lease lets exactly one refresh.
            "replicas": spec.auth.replicas,
            "selector": {"matchLabels": selector(owner, "refresher")},
            "template": {
                "metadata": {"labels": labels(owner, "refresher"),
                             # /metrics is served by the probe server, on the probe port.
                             "annotations": _scrape_annotations(settings.probe_port)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": _pod_security() | {"runAsUser": 10001, "runAsGroup": 10001},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def workers_job(
    owner: Owner, spec: LoadTestSpec, settings: OperatorSettings, completions: int, parallelism: int
) -> dict[str, Any]:
    """The Indexed Job of the workers.

    `completions` is the plan's worker count, so every index runs once; `parallelism` (how many
    run at once) is raised and lowered by the operator as the stages need. Pods get
    JOB_COMPLETION_INDEX from the Job controller and compute their share from the plan.
    """
    names = child_names(owner.name)
    workers = spec.workers
    env = _runtime_env(owner, spec)
    # Prometheus /metrics of the pod (its VU processes merged, see kubeload.observability).
    env.append({"name": ENV_METRICS_PORT, "value": str(DEFAULT_METRICS_PORT)})
    for extra in workers.env:
        if extra.secret_key_ref is not None:
            env.append(_secret_env(extra.name, extra.secret_key_ref.name, extra.secret_key_ref.key))
        else:
            env.append({"name": extra.name, "value": extra.value or ""})
    env_from = [item.wire() for item in workers.env_from]
    # The spec's resources (the API requires limits whenever requests are set), else the defaults.
    resources = workers.resources.wire() if workers.resources.limits else settings.worker_resources
    container: dict[str, Any] = {
        "name": "worker",
        "image": _image(spec, settings),
        "imagePullPolicy": workers.image_pull_policy or settings.image_pull_policy,
        "command": ["kubeload", "worker"],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": DEFAULT_METRICS_PORT, "protocol": "TCP"}],
        "resources": resources,
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - the pod's own emptyDir
    }
    if env_from:
        container["envFrom"] = env_from
    pod_spec: dict[str, Any] = {
        # Never: a crashed worker is a failed pod the Job replaces (counted against
        # backoffLimit), and its reason (OOMKilled, Error) stays visible.
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": int(parse_duration(spec.load.graceful_stop)) + 10,
        "securityContext": _pod_security() | {"runAsUser": 10001, "runAsGroup": 10001},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    if workers.node_selector:
        pod_spec["nodeSelector"] = dict(workers.node_selector)
    if workers.tolerations:
        pod_spec["tolerations"] = [t.wire() for t in workers.tolerations]
    affinity = workers.affinity.wire()
    if affinity:
        pod_spec["affinity"] = affinity
    template_metadata: dict[str, Any] = {"labels": {**workers.pod_labels, **labels(owner, "worker")}}
    # The user's annotations win: they may point Prometheus elsewhere or turn scraping off.
    template_metadata["annotations"] = {**_scrape_annotations(DEFAULT_METRICS_PORT), **workers.pod_annotations}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(owner, names["workers"], "worker"),
        "spec": {
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": parallelism,
            "backoffLimit": workers.backoff_limit,
            "template": {"metadata": template_metadata, "spec": pod_spec},
        },
    }


def summary_config_map(owner: Owner, data: dict[str, str]) -> dict[str, Any]:
    """The summary ConfigMap: `summary.json` (the `kubeload run --summary-export` document),
    `result.json` (the final status) and `checkpoint.json` (metrics read so far)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, child_names(owner.name)["summary"], "summary"),
        "data": dict(data),
    }
