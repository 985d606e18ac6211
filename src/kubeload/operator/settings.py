"""Operator-wide settings: images, defaults and timing, from flags or the environment.

A plain frozen dataclass so the planner and the builders (pure) take it as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import __version__

__all__ = ["OperatorSettings"]


@dataclass(frozen=True)
class OperatorSettings:
    worker_image: str = f"ghcr.io/kubeload/kubeload:{__version__}"
    """Image of the worker and refresher pods when `spec.workers.image` is empty."""
    redis_image: str = "redis:7.4-alpine"
    """Image of the per-test Redis."""
    image_pull_policy: str = "IfNotPresent"
    reconcile_interval: float = 2.0
    """Seconds between two reconciles of one LoadTest (status is refreshed at this pace)."""
    start_delay: float = 5.0
    """The plan's start time is this far ahead of the moment it is written."""
    pod_start_lead: float = 15.0
    """Job parallelism is raised this long before a stage needs the pods, so they are up."""
    metrics_interval: float = 2.0
    """Interval at which workers push metrics deltas (part of the plan)."""
    finish_grace: float = 10.0
    """After the plan's end plus gracefulStop, wait at most this long for the last metrics."""
    operator_selector: dict[str, str] = field(
        default_factory=lambda: {
            "app.kubernetes.io/name": "kubeload",
            "app.kubernetes.io/component": "operator",
        }
    )
    """Labels of the operator's pods, allowed through each test's Redis NetworkPolicy."""
    redis_resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        }
    )
    refresher_resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        }
    )
    worker_resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "requests": {"cpu": "500m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
    )
    """Default worker resources when `spec.workers.resources` is empty."""
    probe_port: int = 8081
    """Port of the refresher's readiness endpoint (`/readyz`)."""
