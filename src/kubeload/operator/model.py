"""What the operator observes and what it decides: plain data, no I/O.

The reconciler fills an `Observed` from the API and Redis, the pure planner turns it into a
`Decision`, and the reconciler carries the decision out. Keeping both sides as data is what
makes the planner testable without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..judge import Lookup
from ..membership import Membership
from ..protocol import Plan
from .builders import Owner

__all__ = [
    "ChildRef",
    "Decision",
    "DeploymentState",
    "Event",
    "Final",
    "Heartbeat",
    "JobState",
    "MetricsView",
    "Observed",
    "PodIssue",
    "RedisState",
    "StopRecord",
    "TokenInfo",
]


def _no_data(metric: str, name: str | None) -> Mapping[str, float]:
    return {}


@dataclass(frozen=True)
class DeploymentState:
    replicas: int = 0
    ready: int = 0


@dataclass(frozen=True)
class JobState:
    parallelism: int = 0
    completions: int = 0
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failed_message: str | None = None  # the Job's Failed condition (e.g. BackoffLimitExceeded)


@dataclass(frozen=True)
class PodIssue:
    """A pod of the test that is not doing what it should, and why."""

    pod: str
    component: str  # redis, refresher, worker
    reason: str  # Unschedulable, ImagePullBackOff, ErrImagePull, InvalidImageName, OOMKilled, ...
    message: str
    since: float  # epoch seconds: when the pod was created
    terminal: bool = False  # the pod ended (e.g. OOMKilled) rather than waits


@dataclass(frozen=True)
class TokenInfo:
    version: int
    expires_at: float
    obtained_at: float


@dataclass(frozen=True)
class Heartbeat:
    index: int
    vus: int
    at: float


@dataclass(frozen=True)
class StopRecord:
    """The run's stop key: why and when the operator stopped it, and how it will end."""

    phase: str  # Failed or Aborted
    reason: str
    message: str
    at: float


@dataclass(frozen=True)
class RedisState:
    reachable: bool
    error: str = ""
    token: TokenInfo | None = None
    token_stats: Mapping[str, str] = field(default_factory=dict)
    plan: Plan | None = None
    stop: StopRecord | None = None
    heartbeats: tuple[Heartbeat, ...] = ()
    membership: Membership = field(default_factory=Membership)


@dataclass(frozen=True)
class MetricsView:
    """The fleet's merged metrics so far (from the workers' interval deltas)."""

    requests: int = 0
    failed_requests: int = 0
    iterations: int = 0
    dropped_iterations: int = 0
    rps: float = 0.0  # recent rate, requests per second
    average_rps: float = 0.0  # over the whole run so far (shown once it ended)
    p50: float = 0.0
    p90: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    metrics: Mapping[str, Any] = field(default_factory=dict)  # the summary's "metrics" section
    lookup: Lookup = _no_data


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile knows, gathered before deciding."""

    owner: Owner
    generation: int
    created_at: float  # epoch seconds
    annotations: Mapping[str, str]
    pinned_wire: dict[str, Any] | None  # the spec the run was started with (run Secret)
    fresh_password: str  # used only if the run Secret must be created
    redis_deployment: DeploymentState | None = None
    refresher: DeploymentState | None = None
    job: JobState | None = None
    existing: frozenset[tuple[str, str]] = frozenset()  # (kind, name) of children that exist
    result: Mapping[str, Any] | None = None  # result.json of the summary ConfigMap (terminal)
    pod_issues: tuple[PodIssue, ...] = ()
    redis: RedisState | None = None  # None: not asked (Redis not deployed yet)
    metrics: MetricsView = field(default_factory=MetricsView)
    previous_status: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChildRef:
    kind: str  # Deployment, Service, NetworkPolicy, Job, Secret, ConfigMap
    name: str


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Final:
    """The end of a run: what goes into the summary ConfigMap."""

    summary: dict[str, Any]  # {"metrics", "thresholds", "token", "verdict"}
    result: dict[str, Any]  # {"status": <final status>, "completedAt": epoch}


@dataclass
class Decision:
    """What the reconciler must do, in this order (each step only if the previous worked)."""

    ensure: list[dict[str, Any]] = field(default_factory=list)  # create-or-adopt
    write_plan: Plan | None = None  # SET NX the plan (then the Job may be created)
    job: dict[str, Any] | None = None  # create-or-adopt after the plan exists
    parallelism: int | None = None  # patch the Job's parallelism
    stop: StopRecord | None = None  # write the stop key, publish "stop"
    final: Final | None = None  # write the summary ConfigMap's final keys
    delete: list[ChildRef] = field(default_factory=list)  # cleanup
    delete_loadtest: bool = False  # ttlSecondsAfterFinished reached
    status: dict[str, Any] = field(default_factory=dict)  # the full status to write
    events: list[Event] = field(default_factory=list)
