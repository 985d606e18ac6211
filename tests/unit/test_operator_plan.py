"""The pure planner: provisioning order, parallelism over time, status, verdicts, failures,
abort, cleanup, spec changes, and idempotence (what a restarted operator sees, it redoes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from kubeload.api.models import LoadTestSpec
from kubeload.membership import Epoch, Membership
from kubeload.operator.builders import Owner
from kubeload.operator.model import (
    DeploymentState,
    Heartbeat,
    JobState,
    MetricsView,
    Observed,
    PodIssue,
    RedisState,
    StopRecord,
    TokenInfo,
)
from kubeload.operator.plan import desired_parallelism, plan
from kubeload.operator.settings import OperatorSettings
from kubeload.protocol import Plan
from kubeload.schedule import vus_at

OWNER = Owner("shop", "perf", "11111111-2222-3333-4444-555555555555")
T0 = 1_700_000_000.0
SETTINGS = OperatorSettings(start_delay=5.0, pod_start_lead=10.0, metrics_interval=2.0, finish_grace=10.0)

STAGES = [
    {"duration": "60s", "target": 10, "name": "warm"},   # 0..60 s: 0 -> 10 VUs
    {"duration": "60s", "target": 40, "name": "peak"},   # 60..120 s: 10 -> 40 VUs
    {"duration": "30s", "target": 0, "name": "down"},    # 120..150 s: 40 -> 0 VUs
]


def make_spec(**extra: Any) -> LoadTestSpec:
    base: dict[str, Any] = {
        "target": {"baseURL": "http://api.example"},
        "requests": [{"name": "home"}],
        "load": {"executor": "ramping-vus", "stages": STAGES, "gracefulStop": "5s"},
        "workers": {"vusPerWorker": 10, "maxWorkers": 10},
    }
    base.update(extra)
    return LoadTestSpec.model_validate(base)


def observed(spec: LoadTestSpec, **fields: Any) -> Observed:
    base: dict[str, Any] = {
        "owner": OWNER, "generation": 1, "created_at": T0, "annotations": {},
        "pinned_wire": spec.wire(), "fresh_password": "fresh-pw",
    }
    base.update(fields)
    return Observed(**base)


def redis_up(**fields: Any) -> RedisState:
    return RedisState(reachable=True, **fields)


def started_plan(spec: LoadTestSpec, start_at: float = T0 + 10, workers: int = 4) -> Plan:
    return Plan(run_id=OWNER.run_id, start_at=start_at, workers=workers, spec=spec.wire(), scaling="stages")


def cond(status: Mapping[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in status["conditions"] if c["type"] == kind)
    return found


def running(spec: LoadTestSpec, now_offset: float, **fields: Any) -> Observed:
    """A run whose plan started at T0 + 10, the Job existing with `parallelism`."""
    job = fields.pop("job", JobState(parallelism=1, completions=4, active=1, ready=1))
    redis = fields.pop("redis", redis_up(plan=started_plan(spec), heartbeats=(Heartbeat(0, 5, T0),)))
    return observed(spec, redis_deployment=DeploymentState(1, 1), job=job, redis=redis, **fields)


# ------------------------------------------------------------------ provisioning order


def test_fresh_loadtest_creates_base_children_and_waits_for_redis() -> None:
    spec = make_spec()
    decision = plan(spec, observed(spec, pinned_wire=None), now=T0 + 1, settings=SETTINGS)
    kinds = sorted((c["kind"], c["metadata"]["name"]) for c in decision.ensure)
    assert kinds == [("ConfigMap", "shop-summary"), ("Deployment", "shop-redis"), ("NetworkPolicy", "shop-redis"),
                     ("Secret", "shop-run"), ("Service", "shop-redis")]
    assert decision.write_plan is None and decision.job is None
    assert decision.status["phase"] == "Provisioning"
    assert cond(decision.status, "RedisReady")["status"] == "False"
    assert cond(decision.status, "TokenReady")["reason"] == "TokenNotRequired"
    assert cond(decision.status, "Succeeded")["status"] == "Unknown"
    assert decision.status["runId"] == OWNER.run_id


def test_refresher_only_with_auth_and_external_redis_skips_redis() -> None:
    spec = make_spec(
        auth={"grant": "client_credentials", "tokenURL": "http://a/t", "clientID": {"value": "c"},
              "clientSecret": {"value": "s"}},
        redis={"url": "redis://ext:6379/0"},
    )
    decision = plan(spec, observed(spec), now=T0, settings=SETTINGS)
    kinds = sorted(c["kind"] + "/" + c["metadata"]["name"] for c in decision.ensure)
    assert kinds == ["ConfigMap/shop-summary", "Deployment/shop-refresher", "Secret/shop-run"]


def test_plan_waits_for_token_then_is_written_ahead_with_the_job() -> None:
    spec = make_spec(auth={"grant": "client_credentials", "tokenURL": "http://a/t", "clientID": {"value": "c"},
                           "clientSecret": {"value": "s"}})
    ready = DeploymentState(1, 1)
    waiting = plan(spec, observed(spec, redis_deployment=ready, redis=redis_up()), now=T0 + 3, settings=SETTINGS)
    assert cond(waiting.status, "RedisReady")["status"] == "True"
    assert cond(waiting.status, "TokenReady")["status"] == "False"
    assert waiting.write_plan is None and waiting.job is None

    token = TokenInfo(version=1, expires_at=T0 + 300, obtained_at=T0 + 3)
    go = plan(spec, observed(spec, redis_deployment=ready, redis=redis_up(token=token)), now=T0 + 4, settings=SETTINGS)
    assert cond(go.status, "TokenReady")["reason"] == "TokenObtained"
    assert go.write_plan is not None
    assert go.write_plan.start_at == T0 + 4 + SETTINGS.start_delay
    assert go.write_plan.workers == 4  # ceil(peak 40 / 10 per worker)
    assert go.write_plan.scaling == "stages"
    assert "s" not in str(go.write_plan.spec["auth"]["clientSecret"].get("value", ""))
    assert go.job is not None
    assert go.job["spec"]["completions"] == 4
    assert go.job["spec"]["parallelism"] == 1
    assert go.status["phase"] == "Provisioning"


def test_redis_deployment_ready_is_not_enough_without_ping() -> None:
    spec = make_spec()
    decision = plan(spec, observed(spec, redis_deployment=DeploymentState(1, 1),
                                   redis=RedisState(reachable=False, error="connection refused")), now=T0,
                    settings=SETTINGS)
    ready = cond(decision.status, "RedisReady")
    assert ready["status"] == "False" and "connection refused" in ready["message"]


# ------------------------------------------------------------------ parallelism over time


def test_parallelism_follows_the_stages_with_a_lead() -> None:
    spec = make_spec()
    lead = 10.0
    timeline = {t: desired_parallelism(spec, 4, t, lead) for t in range(-5, 170, 5)}
    # Warm stage: 0 -> 10 VUs over 60 s needs one worker; 10 s before the peak stage
    # starts (t=50) the ramp towards 40 VUs already counts, so pods exist in time.
    assert timeline[0] == 1
    assert timeline[45] == 1
    assert timeline[55] == 2
    # Raised before the VUs need it: at t, parallelism covers the VUs at t + lead.
    for t in range(0, 150, 5):
        vus_soon = max(vus_at(spec.load, t + dt / 10) for dt in range(int(lead * 10) + 1))
        assert timeline[t] * 10 >= vus_soon
    assert timeline[110] == 4  # the peak
    # Ramp-down: the count shrinks once the need has passed, never below 1.
    assert timeline[125] == 4
    assert timeline[135] < 4
    assert timeline[165] == 1
    assert max(timeline.values()) == 4


def test_running_patches_parallelism_and_reports_stage() -> None:
    spec = make_spec()
    now = T0 + 10 + 115  # elapsed 115 s: peak stage, 38 VUs
    decision = plan(spec, running(spec, 115), now=now, settings=SETTINGS)
    assert decision.parallelism == 4
    s = decision.status
    assert s["phase"] == "Running"
    assert s["stage"] == {"index": 2, "count": 3, "name": "peak", "target": 40, "progress": "2/3 peak"}
    assert s["targetVus"] == 37
    assert s["workers"]["desired"] == 4
    assert decision.job is None and decision.write_plan is None


def test_before_start_is_provisioning_with_countdown() -> None:
    spec = make_spec()
    decision = plan(spec, running(spec, -3), now=T0 + 7, settings=SETTINGS)
    assert decision.status["phase"] == "Provisioning"
    assert "starting in 3s" in decision.status["message"]


def test_job_recreated_if_missing_after_plan_written() -> None:
    spec = make_spec()
    obs = replace(running(spec, 20), job=None)
    decision = plan(spec, obs, now=T0 + 30, settings=SETTINGS)
    assert decision.job is not None and decision.job["spec"]["completions"] == 4
    assert decision.write_plan is None  # the plan in Redis is the run: never rewritten


# ------------------------------------------------------------------ status from observations


def test_status_from_observations() -> None:
    spec = make_spec(
        auth={"grant": "client_credentials", "tokenURL": "http://a/t", "clientID": {"value": "c"},
              "clientSecret": {"value": "s"}},
        thresholds=[{"metric": "http_req_duration", "condition": "p(95)<500"}],
    )
    values = {("http_req_duration", None): {"p(95)": 210.0}, ("token_unauthorized", None): {"count": 3.0}}
    metrics = MetricsView(requests=1000, failed_requests=25, iterations=1000, rps=123.456,
                          p50=50, p90=180, p95=210, p99=400, max=900,
                          lookup=lambda m, n: values.get((m, n), {}))
    redis = redis_up(plan=started_plan(spec), token=TokenInfo(4, T0 + 400, T0 + 20),
                     token_stats={"refreshes": "3", "failures": "1", "forced": "1", "holder": "pod-a",
                                  "failovers": "2"},
                     # worker 2's last heartbeat is stale (its pod was killed): not counted
                     heartbeats=(Heartbeat(0, 10, T0 + 79.8), Heartbeat(1, 8, T0 + 79.9), Heartbeat(2, 7, T0 + 75)),
                     membership=Membership((Epoch(6.0, frozenset({(2, 0), (2, 1)})),)))
    job = JobState(parallelism=2, completions=4, active=2, ready=2, failed=1)
    decision = plan(spec, running(spec, 70, job=job, redis=redis, metrics=metrics,
                                  refresher=DeploymentState(1, 1)), now=T0 + 80, settings=SETTINGS)
    s = decision.status
    assert s["vus"] == 18
    assert s["workers"] == {"desired": 2, "ready": 2, "failed": 1, "lost": 2}
    assert (s["requests"], s["failedRequests"], s["rps"]) == (1000, 25, 123.46)
    assert s["errorRate"] == 0.025 and s["errors"] == "2.50%"
    assert s["latency"] == {"p50": 50, "p90": 180, "p95": 210, "p99": 400, "max": 900}
    assert s["token"]["version"] == 4 and s["token"]["ageSeconds"] == 60
    assert (s["token"]["refreshes"], s["token"]["failures"], s["token"]["unauthorized"]) == (3, 1, 3)
    assert (s["token"]["holder"], s["token"]["failovers"]) == ("pod-a", 2)
    assert s["thresholds"] == [{"metric": "http_req_duration", "condition": "p(95)<500", "ok": True,
                                "observed": 210.0}]
    assert cond(s, "ThresholdsPassed")["status"] == "True"
    assert cond(s, "WorkersReady")["status"] == "True"
    assert s["startTime"] == "2023-11-14T22:13:30Z"
    assert "completionTime" not in s
    assert s["observedGeneration"] == 1


def test_condition_transition_time_kept_while_status_holds() -> None:
    spec = make_spec()
    first = plan(spec, running(spec, 20), now=T0 + 30, settings=SETTINGS)
    second = plan(spec, running(spec, 22, previous_status=first.status), now=T0 + 32, settings=SETTINGS)
    ready_first, ready_second = cond(first.status, "RedisReady"), cond(second.status, "RedisReady")
    assert ready_first["lastTransitionTime"] == ready_second["lastTransitionTime"]
    assert second.events == []  # nothing changed, nothing to announce
    assert {e.reason for e in first.events} >= {"RedisReady", "Running"}


# ------------------------------------------------------------------ verdicts and the end


def _values(p95: float) -> MetricsView:
    data = {("http_req_duration", None): {"p(95)": p95}}
    return MetricsView(requests=100, lookup=lambda m, n: data.get((m, n), {}))


def test_abort_on_fail_waits_for_delay_then_stops_every_worker() -> None:
    spec = make_spec(thresholds=[{"metric": "http_req_duration", "condition": "p(95)<100",
                                  "abortOnFail": True, "delayAbortEval": "30s"}])
    early = plan(spec, running(spec, 20, metrics=_values(900)), now=T0 + 30, settings=SETTINGS)
    assert early.stop is None
    assert cond(early.status, "ThresholdsPassed")["status"] == "False"
    late = plan(spec, running(spec, 31, metrics=_values(900)), now=T0 + 41, settings=SETTINGS)
    assert late.stop is not None
    assert (late.stop.phase, late.stop.reason) == ("Failed", "ThresholdAborted")
    assert "p(95)<100" in late.stop.message
    assert late.parallelism is None and late.final is None


def test_stopping_run_finishes_when_drained() -> None:
    spec = make_spec(thresholds=[{"metric": "http_req_duration", "condition": "p(95)<100", "abortOnFail": True}])
    record = StopRecord("Failed", "ThresholdAborted", "threshold http_req_duration p(95)<100 failed", T0 + 40)
    busy = redis_up(plan=started_plan(spec), stop=record, heartbeats=(Heartbeat(0, 3, T0 + 40),))
    still = plan(spec, running(spec, 31, redis=busy, metrics=_values(900)), now=T0 + 41, settings=SETTINGS)
    assert still.final is None and "stopping" in still.status["message"]
    drained = replace(busy, heartbeats=())
    done = plan(spec, running(spec, 35, redis=drained, metrics=_values(900)), now=T0 + 45, settings=SETTINGS)
    assert done.final is not None
    s = done.status
    assert (s["phase"], s["verdict"]) == ("Failed", "failed")
    assert cond(s, "Succeeded") | {} == cond(s, "Succeeded")
    assert cond(s, "Succeeded")["status"] == "False" and cond(s, "Succeeded")["reason"] == "ThresholdAborted"
    summary = done.final.summary
    assert set(summary) == {"metrics", "thresholds", "token", "workers", "verdict", "errors", "status", "duration",
                            "reason"}
    assert summary["workers"] == {"planned": 1, "failed": 0, "processesLost": 0}
    assert summary["verdict"] == "failed"
    assert summary["thresholds"]["http_req_duration"]["p(95)<100"]["ok"] is False
    assert done.final.result["status"]["completionTime"] == "2023-11-14T22:14:05Z"


def test_completes_succeeded_when_workers_done_and_thresholds_pass() -> None:
    spec = make_spec(thresholds=[{"metric": "http_req_duration", "condition": "p(95)<500"}])
    job = JobState(parallelism=1, completions=4, succeeded=4, complete=True)
    waiting = plan(spec, running(spec, 149, metrics=_values(100), job=job), now=T0 + 10 + 149, settings=SETTINGS)
    assert waiting.final is None
    done = plan(spec, running(spec, 151, metrics=_values(100), job=job), now=T0 + 10 + 151, settings=SETTINGS)
    assert done.final is not None
    assert done.status["phase"] == "Succeeded" and done.status["verdict"] == "passed"
    assert cond(done.status, "Succeeded")["status"] == "True"
    assert any(e.reason == "Succeeded" for e in done.events)


def test_plan_end_waits_for_last_metrics_then_judges() -> None:
    spec = make_spec(thresholds=[{"metric": "http_req_duration", "condition": "p(95)<50"}])
    heartbeat = redis_up(plan=started_plan(spec), heartbeats=(Heartbeat(0, 0, T0),))
    waiting = plan(spec, running(spec, 151, redis=heartbeat, metrics=_values(100)), now=T0 + 161, settings=SETTINGS)
    assert waiting.final is None and "last metrics" in waiting.status["message"]
    quiet = redis_up(plan=started_plan(spec))
    done = plan(spec, running(spec, 155, redis=quiet, metrics=_values(100)), now=T0 + 165, settings=SETTINGS)
    assert done.final is not None
    assert done.status["phase"] == "Failed"
    assert cond(done.status, "Succeeded")["reason"] == "ThresholdFailed"
    # A hard deadline ends it even if heartbeats linger (gracefulStop 5s + finish grace 10s).
    late = plan(spec, running(spec, 166, redis=heartbeat, metrics=_values(10)), now=T0 + 176, settings=SETTINGS)
    assert late.final is not None and late.status["phase"] == "Succeeded"


# ------------------------------------------------------------------ failures


def test_provisioning_timeout_names_what_is_missing() -> None:
    spec = make_spec(timeouts={"provisioning": "60s"})
    decision = plan(spec, observed(spec), now=T0 + 61, settings=SETTINGS)
    assert decision.final is not None
    assert decision.status["phase"] == "Failed"
    succeeded = cond(decision.status, "Succeeded")
    assert succeeded["reason"] == "ProvisioningTimeout" and "RedisReady" in succeeded["message"]


@pytest.mark.parametrize(("reason", "expected"), [("ImagePullBackOff", "ImagePullFailed"),
                                                   ("Unschedulable", "Unschedulable")])
def test_stuck_pods_fail_after_the_provisioning_timeout(reason: str, expected: str) -> None:
    spec = make_spec(timeouts={"provisioning": "60s"})
    issue = PodIssue("shop-redis-x", "redis", reason, "0/1 nodes", since=T0 + 5)
    early = plan(spec, observed(spec, pod_issues=(issue,)), now=T0 + 30, settings=SETTINGS)
    assert early.final is None
    late = plan(spec, observed(spec, pod_issues=(issue,)), now=T0 + 66, settings=SETTINGS)
    assert late.final is not None and cond(late.status, "Succeeded")["reason"] == expected
    # The same for a worker pod that a later stage asked for.
    worker = PodIssue("shop-workers-2-x", "worker", reason, "", since=T0 + 100)
    stuck = plan(spec, running(spec, 150, pod_issues=(worker,)), now=T0 + 161, settings=SETTINGS)
    assert stuck.stop is not None and stuck.stop.reason == expected


def test_workers_failed_beyond_backoff_limit_names_oom() -> None:
    spec = make_spec()
    job = JobState(parallelism=2, completions=4, failed=4, failed_message="BackoffLimitExceeded: too many failures")
    oom = PodIssue("shop-workers-0-abc", "worker", "OOMKilled", "", since=T0, terminal=True)
    decision = plan(spec, running(spec, 30, job=job, pod_issues=(oom,)), now=T0 + 40, settings=SETTINGS)
    assert decision.stop is not None and decision.stop.reason == "WorkersFailed"
    assert "OOMKilled: shop-workers-0-abc" in decision.stop.message
    # Next reconcile: the Job is done (failed), so the stop drains at once.
    redis = redis_up(plan=started_plan(spec), stop=decision.stop)
    final = plan(spec, running(spec, 32, job=job, redis=redis), now=T0 + 42, settings=SETTINGS)
    assert final.status["phase"] == "Failed" and cond(final.status, "Succeeded")["reason"] == "WorkersFailed"


def test_token_that_cannot_be_obtained() -> None:
    spec = make_spec(auth={"grant": "client_credentials", "tokenURL": "http://a/t", "clientID": {"value": "c"},
                           "clientSecret": {"value": "s"}})
    redis = redis_up(token_stats={"failures": "5", "lastError": "401 invalid_client", "state": "starting"})
    obs = observed(spec, redis_deployment=DeploymentState(1, 1), redis=redis)
    retrying = plan(spec, obs, now=T0 + 20, settings=SETTINGS)
    assert retrying.final is None  # the refresher still retries
    assert cond(retrying.status, "TokenReady")["reason"] == "TokenFailed"
    crashed = PodIssue("shop-refresher-x", "refresher", "CrashLoopBackOff", "", since=T0, terminal=True)
    decision = plan(spec, replace(obs, pod_issues=(crashed,)), now=T0 + 20, settings=SETTINGS)
    assert decision.status["phase"] == "Failed"
    assert cond(decision.status, "Succeeded")["reason"] == "TokenFailed"
    assert "invalid_client" in decision.status["message"]


def test_token_expired_mid_run_fails() -> None:
    spec = make_spec(auth={"grant": "client_credentials", "tokenURL": "http://a/t", "clientID": {"value": "c"},
                           "clientSecret": {"value": "s"}})
    redis = redis_up(plan=started_plan(spec), token=TokenInfo(2, T0 + 50, T0))
    decision = plan(spec, running(spec, 50, redis=redis), now=T0 + 60, settings=SETTINGS)
    assert decision.stop is not None and decision.stop.reason == "TokenExpired"


# ------------------------------------------------------------------ abort, spec changes


def test_abort_annotation_before_start_ends_aborted_at_once() -> None:
    spec = make_spec()
    decision = plan(spec, observed(spec, annotations={"kubeload.dev/abort": "true"}), now=T0 + 1, settings=SETTINGS)
    assert decision.final is not None and decision.status["phase"] == "Aborted"
    assert decision.status["verdict"] == "failed"


def test_abort_mid_run_stops_then_ends_aborted() -> None:
    spec = make_spec(abort=True)
    decision = plan(spec, running(spec, 30), now=T0 + 40, settings=SETTINGS)
    assert decision.stop is not None and decision.stop.phase == "Aborted"
    assert "spec.abort" in decision.stop.message


def test_spec_change_after_start_is_refused_and_ignored() -> None:
    spec = make_spec()
    changed = make_spec(workers={"vusPerWorker": 1, "maxWorkers": 100}, target={"baseURL": "http://other"})
    decision = plan(changed, running(spec, 115, pinned_wire=spec.wire()), now=T0 + 125, settings=SETTINGS)
    refused = cond(decision.status, "SpecChangeRefused")
    assert refused["status"] == "True" and refused["reason"] == "SpecChangeRefused"
    assert "spec.target" in refused["message"] and "spec.workers" in refused["message"]
    assert decision.parallelism == 4  # still the pinned vusPerWorker=10
    job = next(c for c in decision.ensure if c["kind"] == "Secret")
    assert job["metadata"]["name"] == "shop-run"
    assert any(e.reason == "SpecChangeRefused" and e.type == "Warning" for e in decision.events)


def test_abort_and_cleanup_changes_are_accepted() -> None:
    spec = make_spec()
    changed = make_spec(abort=True, cleanup={"policy": "Always"})
    decision = plan(changed, running(spec, 30, pinned_wire=spec.wire()), now=T0 + 40, settings=SETTINGS)
    assert not [c for c in decision.status["conditions"] if c["type"] == "SpecChangeRefused"]
    assert decision.stop is not None and decision.stop.phase == "Aborted"


# ------------------------------------------------------------------ terminal: cleanup, TTL


def _finished(spec: LoadTestSpec, phase: str, existing: frozenset[tuple[str, str]], completed: float) -> Observed:
    status = {"phase": phase, "verdict": "passed" if phase == "Succeeded" else "failed", "conditions": []}
    return observed(spec, result={"status": status, "completedAt": completed}, existing=existing,
                    previous_status=status)


ALL = frozenset({("Job", "shop-workers"), ("Deployment", "shop-redis"), ("Service", "shop-redis"),
                 ("NetworkPolicy", "shop-redis"), ("Secret", "shop-run"), ("ConfigMap", "shop-summary")})


@pytest.mark.parametrize(("policy", "phase", "deletes"), [
    ("OnSuccess", "Succeeded", True), ("OnSuccess", "Failed", False),
    ("Always", "Failed", True), ("Never", "Succeeded", False),
])
def test_cleanup_policy(policy: str, phase: str, deletes: bool) -> None:
    spec = make_spec(cleanup={"policy": policy})
    decision = plan(spec, _finished(spec, phase, ALL, T0), now=T0 + 5, settings=SETTINGS)
    deleted = {(d.kind, d.name) for d in decision.delete}
    assert ("ConfigMap", "shop-summary") not in deleted  # the summary always stays
    assert bool(deleted) is deletes
    if deletes:
        assert deleted == ALL - {("ConfigMap", "shop-summary")}
    assert decision.ensure == [] and decision.stop is None and decision.final is None
    assert decision.status["phase"] == phase
    assert decision.events == []


def test_ttl_deletes_the_loadtest() -> None:
    spec = make_spec(cleanup={"ttlSecondsAfterFinished": 60})
    assert not plan(spec, _finished(spec, "Succeeded", frozenset(), T0), now=T0 + 59, settings=SETTINGS).delete_loadtest
    assert plan(spec, _finished(spec, "Succeeded", frozenset(), T0), now=T0 + 60, settings=SETTINGS).delete_loadtest


# ------------------------------------------------------------------ idempotence


def test_same_observation_same_decision() -> None:
    spec = make_spec()
    obs = running(spec, 70)
    assert plan(spec, obs, now=T0 + 80, settings=SETTINGS) == plan(spec, obs, now=T0 + 80, settings=SETTINGS)
