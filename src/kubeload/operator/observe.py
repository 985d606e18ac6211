"""Pure translation of API objects into the planner's observations."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .builders import COMPONENT_LABEL, SECRET_PASSWORD_KEY, SECRET_SPEC_KEY
from .model import DeploymentState, JobState, PodIssue
from .status import parse_iso

__all__ = ["IMAGE_PULL_REASONS", "deployment_state", "job_state", "pod_issues", "secret_value", "secret_values"]

# Pod waiting reasons that mean the image will not come without a change.
IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})
# Waiting reasons worth reporting (anything else, e.g. ContainerCreating, is normal progress).
_WAITING = IMAGE_PULL_REASONS | {"CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff"}


def deployment_state(obj: Mapping[str, Any] | None) -> DeploymentState | None:
    if obj is None:
        return None
    status = obj.get("status", {})
    return DeploymentState(replicas=int(status.get("replicas", 0)), ready=int(status.get("readyReplicas", 0)))


def job_state(obj: Mapping[str, Any] | None) -> JobState | None:
    if obj is None:
        return None
    spec, status = obj.get("spec", {}), obj.get("status", {})
    conditions = {c.get("type"): c for c in status.get("conditions", []) if c.get("status") == "True"}
    failed = conditions.get("Failed")
    return JobState(
        parallelism=int(spec.get("parallelism", 0)),
        completions=int(spec.get("completions", 0)),
        active=int(status.get("active", 0)),
        ready=int(status.get("ready", 0)),
        succeeded=int(status.get("succeeded", 0)),
        failed=int(status.get("failed", 0)),
        complete="Complete" in conditions,
        failed_message=(f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".strip(": ")
                        if failed is not None else None),
    )


def _since(pod: Mapping[str, Any]) -> float:
    created = pod.get("metadata", {}).get("creationTimestamp")
    try:
        return parse_iso(created) if created else 0.0
    except ValueError:
        return 0.0


def pod_issues(pods: Iterable[Mapping[str, Any]]) -> tuple[PodIssue, ...]:
    """What is wrong with the test's pods: unschedulable, image pulls, crashes, OOM kills."""
    issues: list[PodIssue] = []
    for pod in pods:
        meta, status = pod.get("metadata", {}), pod.get("status", {})
        if meta.get("deletionTimestamp"):
            continue
        name = str(meta.get("name", ""))
        component = str(meta.get("labels", {}).get(COMPONENT_LABEL, ""))
        since = _since(pod)
        phase = status.get("phase")
        for cond in status.get("conditions", []):
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                    and cond.get("reason") == "Unschedulable":
                issues.append(PodIssue(name, component, "Unschedulable", str(cond.get("message", ""))[:300], since))
        for container in status.get("containerStatuses", []):
            state = container.get("state", {})
            last = container.get("lastState", {}).get("terminated", {})
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting and waiting.get("reason") in _WAITING:
                crash = waiting["reason"] == "CrashLoopBackOff"
                issues.append(PodIssue(name, component, str(waiting["reason"]),
                                       str(waiting.get("message", ""))[:300], since, terminal=crash))
            for ended in (terminated, last):
                if ended and ended.get("reason") == "OOMKilled":
                    issues.append(PodIssue(name, component, "OOMKilled", "", since, terminal=True))
            if terminated and terminated.get("exitCode", 0) != 0 and terminated.get("reason") != "OOMKilled":
                issues.append(PodIssue(name, component, "Error", f"exit code {terminated.get('exitCode')}",
                                       since, terminal=True))
        if phase == "Failed" and not status.get("containerStatuses"):
            issues.append(PodIssue(name, component, "Error", str(status.get("reason", "")), since, terminal=True))
    return tuple(issues)


def secret_values(secret: Mapping[str, Any] | None) -> dict[str, str]:
    if secret is None:
        return {}
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def secret_value(secret: Mapping[str, Any] | None, key: str) -> str | None:
    return secret_values(secret).get(key)


def pinned_spec(secret: Mapping[str, Any] | None) -> dict[str, Any] | None:
    raw = secret_value(secret, SECRET_SPEC_KEY)
    return json.loads(raw) if raw else None


def redis_password(secret: Mapping[str, Any] | None) -> str | None:
    return secret_value(secret, SECRET_PASSWORD_KEY)
