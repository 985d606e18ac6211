"""LoadTest status: written only by the operator (or the local runner into its summary).

Condition types and their reasons are documented here, next to the model, and in the README.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from .base import ApiModel

__all__ = [
    "ConditionStatus",
    "ConditionType",
    "LoadTestStatus",
    "Phase",
    "Reason",
    "StatusCondition",
]

Count = Annotated[int, Field(ge=0, le=2**62)]
Number = Annotated[float, Field(ge=0, le=1e15)]
ShortText = Annotated[str, Field(max_length=256)]
Message = Annotated[str, Field(max_length=4096)]
Timestamp = Annotated[str, Field(max_length=64)]


class Phase(StrEnum):
    """The one-word summary `kubectl get lt` shows."""

    PENDING = "Pending"  # accepted, nothing created yet
    PROVISIONING = "Provisioning"  # Redis, token and workers being brought up
    RUNNING = "Running"  # the plan has started
    SUCCEEDED = "Succeeded"  # ran to the end, every threshold passed
    FAILED = "Failed"  # a threshold failed, or provisioning/workers/token failed
    ABORTED = "Aborted"  # stopped by the user (annotation or spec.abort)

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED)


class ConditionType(StrEnum):
    """Condition types; each is True, False or Unknown with a reason from `Reason`."""

    REDIS_READY = "RedisReady"  # Redis answers with the run's password
    TOKEN_READY = "TokenReady"  # a valid token is in Redis (always True without spec.auth)
    WORKERS_READY = "WorkersReady"  # the desired worker pods are running
    THRESHOLDS_PASSED = "ThresholdsPassed"  # every threshold passes on the merged data so far
    SUCCEEDED = "Succeeded"  # terminal: True when the test passed, False when it failed/aborted


class Reason(StrEnum):
    """CamelCase reasons used in conditions and Events."""

    CREATED = "Created"
    WAITING = "Waiting"
    REDIS_READY = "RedisReady"
    REDIS_NOT_READY = "RedisNotReady"
    EXTERNAL_REDIS = "ExternalRedis"
    TOKEN_OBTAINED = "TokenObtained"
    TOKEN_NOT_REQUIRED = "TokenNotRequired"
    TOKEN_FAILED = "TokenFailed"
    TOKEN_EXPIRED = "TokenExpired"
    WORKERS_STARTING = "WorkersStarting"
    WORKERS_RUNNING = "WorkersRunning"
    WORKER_FAILED = "WorkerFailed"
    WORKERS_FAILED = "WorkersFailed"
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    PROVISIONING_TIMEOUT = "ProvisioningTimeout"
    PLAN_STARTED = "PlanStarted"
    THRESHOLDS_PASSING = "ThresholdsPassing"
    THRESHOLD_FAILED = "ThresholdFailed"
    THRESHOLD_ABORTED = "ThresholdAborted"
    COMPLETED = "Completed"
    ABORTED = "Aborted"
    SPEC_CHANGE_REFUSED = "SpecChangeRefused"
    INVALID_SPEC = "InvalidSpec"


ConditionStatus = Literal["True", "False", "Unknown"]


class StatusCondition(ApiModel):
    """A Kubernetes-style condition."""

    type: Annotated[str, Field(max_length=64)]
    status: ConditionStatus
    reason: Annotated[str, Field(max_length=128)]
    message: Message = ""
    last_transition_time: Timestamp
    observed_generation: Count | None = None


class StageStatus(ApiModel):
    """The current stage."""

    index: Count = 0
    """1-based index of the current stage; 0 before the start."""
    count: Count = 0
    """Number of stages."""
    name: ShortText = ""
    target: Count = 0
    """The stage's end target (VUs or rate)."""
    progress: ShortText = ""
    """`index/count name`, shown by `kubectl get lt`."""


class WorkersStatus(ApiModel):
    desired: Count = 0
    """Worker pods the plan runs now (the Job's parallelism)."""
    ready: Count = 0
    failed: Count = 0
    """Worker pods that failed (the Job's count); the Job replaces them up to backoffLimit."""
    lost: Count = 0
    """VU processes lost mid-run (killed pod or process) whose load the live ones carry now."""


class LatencyStatus(ApiModel):
    """Merged-histogram percentiles of http_req_duration, in milliseconds."""

    p50: Number = 0
    p90: Number = 0
    p95: Number = 0
    p99: Number = 0
    max: Number = 0


class TokenStatus(ApiModel):
    version: Count = 0
    age_seconds: Number = 0
    expires_in_seconds: Annotated[float, Field(ge=-1e9, le=1e9)] = 0
    refreshes: Count = 0
    failures: Count = 0
    forced: Count = 0
    unauthorized: Count = 0
    """401 responses seen by VUs."""
    holder: ShortText = ""
    """The refresher replica holding the lease."""
    failovers: Count = 0
    """Times another refresher replica took the lease over (a standby, or a replacement pod)."""


class ThresholdResult(ApiModel):
    metric: Annotated[str, Field(max_length=128)]
    condition: Annotated[str, Field(max_length=64)]
    ok: bool
    observed: Annotated[float, Field(ge=-1e15, le=1e15)] | None = None


class LoadTestStatus(ApiModel):
    """Observed state of a LoadTest."""

    phase: Phase = Phase.PENDING
    verdict: Literal["", "passed", "failed"] = ""
    message: Message = ""
    observed_generation: Count | None = None
    run_id: ShortText = ""
    conditions: Annotated[list[StatusCondition], Field(max_length=16)] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    stage: StageStatus = Field(default_factory=StageStatus)
    vus: Count = 0
    """Active VUs (closed model) or busy VUs (open model) across the fleet."""
    target_vus: Count = 0
    vus_max: Count = 0
    workers: WorkersStatus = Field(default_factory=WorkersStatus)
    requests: Count = 0
    failed_requests: Count = 0
    rps: Number = 0
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0
    errors: ShortText = ""
    """Error rate as a percentage string, shown by `kubectl get lt`."""
    iterations: Count = 0
    dropped_iterations: Count = 0
    latency: LatencyStatus = Field(default_factory=LatencyStatus)
    token: TokenStatus = Field(default_factory=TokenStatus)
    thresholds: Annotated[list[ThresholdResult], Field(max_length=50)] = Field(default_factory=list)
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    summary_config_map: ShortText = ""
