"""The planner: `plan(spec, observed, now) -> Decision`. Pure and level-based.

Every reconcile observes the world (children, pods, Redis, merged metrics) and this function
says what the world should look like and what the status is. Nothing is chained off earlier
status fields: whether the run started is the presence of the plan in Redis, whether it ended
is the final result in the summary ConfigMap, why it is stopping is the stop key. So an
operator restarted at any point resumes from what it sees, and a reconcile repeated is harmless.

The run, step by step (each step a condition with a reason, and an Event when it changes):

1. children: run Secret (password, pinned spec), Redis (unless external), refresher (with
   `auth`), summary ConfigMap;
2. `RedisReady` (the Deployment is ready and the operator's PING answers);
3. `TokenReady` (a valid token is in Redis; True at once without `auth`);
4. the plan is written with a start time `start_delay` ahead, then the workers' Job is created;
5. while running: parallelism follows the stages, thresholds are judged on merged data,
   failures and abort requests set the stop key;
6. once the workers are done (or stopped and drained) the summary is written: terminal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..api.durations import parse_duration
from ..api.models import LoadTestSpec
from ..api.status import ConditionType, Phase, Reason
from ..judge import (
    ThresholdVerdict,
    Verdict,
    abort_trigger,
    evaluate,
    failure_message,
    verdict,
)
from ..membership import LOST_AFTER_S, Membership
from ..protocol import Plan
from ..schedule import (
    SCALING_STAGES,
    active_workers,
    arrival_vus,
    peak_target,
    stage_at,
    target_at,
    total_duration,
    vus_at,
    workers_needed,
)
from ..summary import build_summary
from .builders import (
    ABORT_ANNOTATION,
    MUTABLE_FIELDS,
    Owner,
    child_names,
    network_policy,
    pinned_spec_hash,
    redis_deployment,
    redis_service,
    refresher_deployment,
    run_secret,
    summary_config_map,
    wire_spec_for_pods,
    workers_job,
)
from .model import ChildRef, Decision, Final, Observed, PodIssue, StopRecord
from .observe import IMAGE_PULL_REASONS
from .settings import OperatorSettings
from .status import SPEC_CHANGE_REFUSED, Cond, events_for, iso, merge_conditions

__all__ = ["changed_fields", "desired_parallelism", "effective_spec", "plan"]

_DEFAULT_SETTINGS = OperatorSettings()
# Pod issue reasons that mean a container crashed.
_CRASH_REASONS = frozenset({"CrashLoopBackOff", "Error"})


def changed_fields(pinned: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Top-level spec fields that differ, mutable ones (abort, cleanup) excluded."""
    keys = sorted((set(pinned) | set(current)) - set(MUTABLE_FIELDS))
    return [k for k in keys if pinned.get(k) != current.get(k)]


def effective_spec(spec: LoadTestSpec, pinned_wire: dict[str, Any] | None) -> tuple[LoadTestSpec, list[str]]:
    """The spec the run uses: the pinned one with the current mutable fields, and the refused
    changes (empty when the current spec only changed what may change)."""
    if pinned_wire is None:
        return spec, []
    current = spec.wire()
    if pinned_spec_hash(pinned_wire) == pinned_spec_hash(current):
        return spec, []
    merged = {**pinned_wire, "abort": spec.abort, "cleanup": spec.cleanup.wire()}
    return LoadTestSpec.model_validate(merged), changed_fields(pinned_wire, current)


def desired_parallelism(spec: LoadTestSpec, workers: int, elapsed: float, lead: float) -> int:
    """Worker pods that must run `elapsed` seconds after the start: the peak need of the next
    `lead` seconds (so pods are up before their stage) at `vusPerWorker` each, capped by the
    plan's worker count. The same function the workers use to split the load."""
    return active_workers(workers, SCALING_STAGES, spec, elapsed, lead_s=lead)


def _abort_requested(spec: LoadTestSpec, observed: Observed) -> str | None:
    if observed.annotations.get(ABORT_ANNOTATION, "").strip().lower() == "true":
        return f"aborted by the annotation {ABORT_ANNOTATION}=true"
    if spec.abort:
        return "aborted by spec.abort=true"
    return None


def _pod_failure(issues: Sequence[PodIssue], now: float, timeout: float) -> PodIssue | None:
    """A pod issue that fails the test: an image that cannot be pulled or a pod that cannot be
    scheduled for longer than the provisioning timeout (counted from the pod's creation)."""
    for issue in issues:
        if issue.terminal:
            continue
        if now - issue.since >= timeout:
            return issue
    return None


def _issue_reason(issue: PodIssue) -> str:
    if issue.reason in IMAGE_PULL_REASONS:
        return Reason.IMAGE_PULL_FAILED.value
    if issue.reason == "Unschedulable":
        return Reason.UNSCHEDULABLE.value
    return Reason.PROVISIONING_TIMEOUT.value


def _issue_message(issue: PodIssue, timeout: float) -> str:
    text = f"{issue.component} pod {issue.pod}: {issue.reason}"
    if issue.message:
        text += f" ({issue.message[:300]})"
    return f"{text}, not running after {timeout:g}s"


def _children(owner: Owner, spec: LoadTestSpec, observed: Observed, settings: OperatorSettings) -> list[dict[str, Any]]:
    internal = not spec.redis.url
    out = [run_secret(owner, spec, observed.fresh_password if internal else None)]
    if internal:
        out += [redis_deployment(owner, settings), redis_service(owner), network_policy(owner, settings)]
    if spec.auth is not None:
        out.append(refresher_deployment(owner, spec, settings))
    out.append(summary_config_map(owner, {}))
    return out


def _cleanup(observed: Observed, spec: LoadTestSpec, phase: str) -> list[ChildRef]:
    policy = spec.cleanup.policy
    if policy == "Never" or (policy == "OnSuccess" and phase != Phase.SUCCEEDED.value):
        return []
    names = child_names(observed.owner.name)
    wanted = [
        ChildRef("Job", names["workers"]),
        ChildRef("Deployment", names["refresher"]),
        ChildRef("Deployment", names["redis"]),
        ChildRef("Service", names["redis"]),
        ChildRef("NetworkPolicy", names["redis"]),
        ChildRef("Secret", names["run"]),
    ]
    return [ref for ref in wanted if (ref.kind, ref.name) in observed.existing]


def _terminal(spec: LoadTestSpec, observed: Observed, now: float, refused: list[str]) -> Decision:
    assert observed.result is not None
    status = dict(observed.result.get("status", {}))
    status["observedGeneration"] = observed.generation
    conds = [c for c in status.get("conditions", []) if c.get("type") != SPEC_CHANGE_REFUSED]
    if refused:
        conds += merge_conditions(
            observed.previous_status.get("conditions", []),
            [Cond(SPEC_CHANGE_REFUSED, "True", Reason.SPEC_CHANGE_REFUSED.value, _refusal(refused))],
            now, observed.generation,
        )
    status["conditions"] = conds
    phase = str(status.get("phase", ""))
    decision = Decision(status=status, delete=_cleanup(observed, spec, phase))
    ttl = spec.cleanup.ttl_seconds_after_finished
    completed = float(observed.result.get("completedAt", now))
    decision.delete_loadtest = ttl is not None and now >= completed + ttl
    decision.events = events_for(observed.previous_status, status)
    return decision


def _refusal(fields: list[str]) -> str:
    return (
        f"changes to spec.{', spec.'.join(fields)} after the run was created are refused; "
        "the run goes on with its original spec (only abort and cleanup may change)"
    )


def _token_summary(observed: Observed, now: float) -> dict[str, Any]:
    redis = observed.redis
    stats = redis.token_stats if redis is not None else {}
    token = redis.token if redis is not None else None
    unauthorized = observed.metrics.lookup("token_unauthorized", None).get("count", 0.0)
    return {
        "version": token.version if token else 0,
        "ageSeconds": round(max(0.0, now - token.obtained_at), 3) if token else 0.0,
        "expiresInSeconds": round(max(-1e9, min(1e9, token.expires_at - now)), 3) if token else 0.0,
        "refreshes": _int(stats.get("refreshes")),
        "failures": _int(stats.get("failures")),
        "forced": _int(stats.get("forced")),
        "unauthorized": int(unauthorized),
        "holder": str(stats.get("holder", ""))[:200],
        "failovers": _int(stats.get("failovers")),
    }


def _int(value: object) -> int:
    try:
        return max(0, int(float(str(value))))
    except (TypeError, ValueError):
        return 0


def _status_body(
    spec: LoadTestSpec,
    *,
    observed: Observed,
    now: float,
    phase: str,
    message: str,
    conds: list[Cond],
    verdicts: Sequence[ThresholdVerdict],
    elapsed: float | None,
    parallelism: int,
) -> dict[str, Any]:
    metrics = observed.metrics
    redis = observed.redis
    plan_obj = redis.plan if redis is not None else None
    load = spec.load
    status: dict[str, Any] = {
        "phase": phase,
        "verdict": "",
        "message": message[:4000],
        "observedGeneration": observed.generation,
        "runId": observed.owner.run_id,
        "conditions": merge_conditions(
            observed.previous_status.get("conditions", []), conds, now, observed.generation
        ),
        "summaryConfigMap": child_names(observed.owner.name)["summary"],
    }
    if elapsed is not None and elapsed >= 0:
        position = stage_at(load, elapsed)
        status["stage"] = {
            "index": position.index + 1,
            "count": position.count,
            "name": position.name,
            "target": position.target,
            "progress": position.progress,
        }
        status["targetVus"] = (
            round(target_at(load, elapsed)) if load.is_arrival_rate else vus_at(load, elapsed)
        )
    status["vusMax"] = (
        arrival_vus(load)[1] if load.is_arrival_rate
        else int(peak_target(load, 0.0, total_duration(load)))
    )
    # A killed pod's last heartbeat outlives it (TTL): its VUs are counted by the survivors now.
    fresh = [h for h in redis.heartbeats if now - h.at <= LOST_AFTER_S] if redis is not None else []
    status["vus"] = sum(h.vus for h in fresh)
    job = observed.job
    status["workers"] = {
        "desired": parallelism if plan_obj is not None else 0,
        "ready": job.ready if job else 0,
        "failed": job.failed if job else 0,
        "lost": len(redis.membership.latest) if redis is not None else 0,
    }
    rate = metrics.failed_requests / metrics.requests if metrics.requests else 0.0
    status.update({
        "requests": metrics.requests,
        "failedRequests": metrics.failed_requests,
        "rps": round(metrics.rps, 2),
        "errorRate": round(rate, 6),
        "errors": f"{rate * 100:.2f}%",
        "iterations": metrics.iterations,
        "droppedIterations": metrics.dropped_iterations,
        "latency": {k: round(getattr(metrics, k), 3) for k in ("p50", "p90", "p95", "p99", "max")},
    })
    status["token"] = _token_summary(observed, now)
    status["thresholds"] = [
        {"metric": v.metric, "condition": v.condition, "ok": v.ok}
        | ({"observed": round(v.observed, 6)} if v.observed is not None else {})
        for v in verdicts
    ]
    if plan_obj is not None:
        status["startTime"] = iso(plan_obj.start_at)
    return status


def _finalize(
    spec: LoadTestSpec,
    *,
    observed: Observed,
    now: float,
    phase: str,
    reason: str,
    message: str,
    base_conds: list[Cond],
    verdicts: Sequence[ThresholdVerdict],
    elapsed: float | None,
    parallelism: int,
) -> Final:
    passed = phase == Phase.SUCCEEDED.value
    result_verdict: Verdict = "passed" if passed else "failed"
    conds = [c for c in base_conds if c.type != ConditionType.SUCCEEDED.value]
    conds.append(Cond(ConditionType.SUCCEEDED.value, "True" if passed else "False", reason, message))
    status = _status_body(spec, observed=observed, now=now, phase=phase, message=message, conds=conds,
                          verdicts=verdicts, elapsed=elapsed, parallelism=parallelism)
    status["verdict"] = result_verdict
    status["completionTime"] = iso(now)
    status["rps"] = round(observed.metrics.average_rps, 2)  # the run is over: its average
    # The same document `kubeload run --summary-export` writes.
    membership = observed.redis.membership if observed.redis is not None else Membership()
    workers = {"planned": parallelism, "failed": observed.job.failed if observed.job else 0,
               "processesLost": len(membership.ever_lost)}
    summary = build_summary(observed.metrics.metrics, verdicts, result_verdict, status["token"],
                            reason=message, workers=workers)
    return Final(summary=summary, result={"status": status, "completedAt": now})


def plan(
    spec: LoadTestSpec, observed: Observed, now: float, settings: OperatorSettings = _DEFAULT_SETTINGS
) -> Decision:
    """Decide what the world should look like for one LoadTest, given what was observed."""
    effective, refused = effective_spec(spec, observed.pinned_wire)
    if observed.result is not None:
        return _terminal(effective, observed, now, refused)

    owner = observed.owner
    redis = observed.redis
    internal = not effective.redis.url
    provisioning = parse_duration(effective.timeouts.provisioning)
    interval = settings.metrics_interval
    decision = Decision(ensure=_children(owner, effective, observed, settings))
    conds: list[Cond] = []
    if refused:
        conds.append(Cond(SPEC_CHANGE_REFUSED, "True", Reason.SPEC_CHANGE_REFUSED.value, _refusal(refused)))

    # -- RedisReady
    deployment_ready = not internal or (observed.redis_deployment is not None and observed.redis_deployment.ready >= 1)
    redis_ready = deployment_ready and redis is not None and redis.reachable
    if redis_ready:
        conds.append(Cond(ConditionType.REDIS_READY.value, "True",
                          (Reason.REDIS_READY if internal else Reason.EXTERNAL_REDIS).value, "Redis answers"))
    else:
        detail = (
            "waiting for the Redis pod" if not deployment_ready
            else f"Redis does not answer: {redis.error if redis else ''}"
        )
        conds.append(Cond(ConditionType.REDIS_READY.value, "False", Reason.REDIS_NOT_READY.value, detail.strip(": ")))

    # -- TokenReady
    token = redis.token if redis is not None else None
    stats = redis.token_stats if redis is not None else {}
    # The refresher exits when the first token cannot be had (bad credentials): its pod then
    # crashes while the stats hold the failures. Waiting for the timeout would help nobody.
    refresher_crashed = any(i.component == "refresher" and i.reason in _CRASH_REASONS for i in observed.pod_issues)
    token_gave_up = stats.get("state") == "failed" or (refresher_crashed and _int(stats.get("failures")) > 0)
    if effective.auth is None:
        token_ready = True
        conds.append(Cond(ConditionType.TOKEN_READY.value, "True", Reason.TOKEN_NOT_REQUIRED.value, "no spec.auth"))
    elif token is not None and token.version > 0 and token.expires_at > now:
        token_ready = True
        conds.append(Cond(ConditionType.TOKEN_READY.value, "True", Reason.TOKEN_OBTAINED.value,
                          f"token version {token.version} in Redis"))
    else:
        token_ready = False
        failing = _int(stats.get("failures")) > 0 or token_gave_up
        reason = Reason.TOKEN_FAILED if failing else Reason.WAITING
        text = str(stats.get("lastError", ""))[:500] if failing else "waiting for the refresher"
        conds.append(Cond(ConditionType.TOKEN_READY.value, "False", reason.value, text))

    plan_obj = redis.plan if redis is not None else None
    verdicts = evaluate(effective.thresholds, observed.metrics.lookup)
    failing_threshold = next((v for v in verdicts if not v.ok), None)
    if failing_threshold is None:
        conds.append(Cond(ConditionType.THRESHOLDS_PASSED.value, "True", Reason.THRESHOLDS_PASSING.value,
                          f"{len(verdicts)} threshold(s) pass on the merged data" if verdicts else "no thresholds"))
    else:
        conds.append(Cond(ConditionType.THRESHOLDS_PASSED.value, "False", Reason.THRESHOLD_FAILED.value,
                          failure_message(failing_threshold)))
    abort = _abort_requested(spec, observed)

    def finish(phase: Phase, reason: str, message: str, elapsed: float | None, parallelism: int) -> Decision:
        decision.final = _finalize(effective, observed=observed, now=now, phase=phase.value, reason=reason,
                                   message=message, base_conds=conds, verdicts=verdicts, elapsed=elapsed,
                                   parallelism=parallelism)
        decision.status = decision.final.result["status"]
        decision.events = events_for(observed.previous_status, decision.status)
        return decision

    def ongoing(phase: Phase, message: str, elapsed: float | None, parallelism: int) -> Decision:
        conds.append(Cond(ConditionType.SUCCEEDED.value, "Unknown", Reason.WAITING.value, "the test has not ended"))
        decision.status = _status_body(effective, observed=observed, now=now, phase=phase.value, message=message,
                                       conds=conds, verdicts=verdicts, elapsed=elapsed, parallelism=parallelism)
        decision.events = events_for(observed.previous_status, decision.status)
        return decision

    # ------------------------------------------------------------------ before the start
    if plan_obj is None:
        conds.append(Cond(ConditionType.WORKERS_READY.value, "False", Reason.WAITING.value,
                          "workers start once Redis and the token are ready"))
        if abort:
            return finish(Phase.ABORTED, Reason.ABORTED.value, abort, None, 0)
        issue = _pod_failure(observed.pod_issues, now, provisioning)
        if issue is not None:
            return finish(Phase.FAILED, _issue_reason(issue), _issue_message(issue, provisioning), None, 0)
        if effective.auth is not None and token_gave_up and not token_ready:
            return finish(Phase.FAILED, Reason.TOKEN_FAILED.value,
                          "the token cannot be obtained: " + str(stats.get("lastError", ""))[:500], None, 0)
        if redis_ready and token_ready:
            workers = workers_needed(effective)
            start_at = now + settings.start_delay
            decision.write_plan = Plan(
                run_id=owner.run_id, start_at=start_at, workers=workers,
                spec=wire_spec_for_pods(owner, effective), scaling=SCALING_STAGES,
                metrics_interval=interval,
            )
            parallelism = desired_parallelism(effective, workers, -settings.start_delay, settings.pod_start_lead)
            decision.job = workers_job(owner, effective, settings, workers, parallelism)
            return ongoing(Phase.PROVISIONING, "plan written, workers starting", None, parallelism)
        if now - observed.created_at >= provisioning:
            gates = (ConditionType.REDIS_READY.value, ConditionType.TOKEN_READY.value)
            missing = next(c for c in conds if c.type in gates and c.status != "True")
            token_missing = missing.type == ConditionType.TOKEN_READY.value
            fail_reason = (Reason.TOKEN_FAILED if token_missing else Reason.PROVISIONING_TIMEOUT).value
            text = f"{missing.type} not reached within timeouts.provisioning ({effective.timeouts.provisioning})"
            if missing.message:
                text += f": {missing.message}"
            return finish(Phase.FAILED, fail_reason, text, None, 0)
        return ongoing(Phase.PROVISIONING, "waiting for Redis and the token", None, 0)

    # ------------------------------------------------------------------ started
    elapsed = now - plan_obj.start_at
    duration = total_duration(effective.load)
    job = observed.job
    parallelism = desired_parallelism(effective, plan_obj.workers, elapsed, settings.pod_start_lead)
    if job is None:
        decision.job = workers_job(owner, effective, settings, plan_obj.workers, parallelism)
    workers_done = job is not None and (job.complete or job.failed_message is not None)
    stopping = redis.stop if redis is not None else None
    adjustable = job is not None and not workers_done and stopping is None and elapsed < duration
    if adjustable and job is not None and job.parallelism != parallelism:
        decision.parallelism = parallelism
    shown_parallelism = job.parallelism if job is not None and decision.parallelism is None else parallelism

    if job is not None and job.ready >= min(shown_parallelism, plan_obj.workers) and job.ready > 0:
        conds.append(Cond(ConditionType.WORKERS_READY.value, "True", Reason.WORKERS_RUNNING.value,
                          f"{job.ready}/{shown_parallelism} worker pods ready"))
    elif job is not None and job.failed_message is not None:
        conds.append(Cond(ConditionType.WORKERS_READY.value, "False", Reason.WORKERS_FAILED.value, job.failed_message))
    else:
        ready = job.ready if job is not None else 0
        conds.append(Cond(ConditionType.WORKERS_READY.value, "False", Reason.WORKERS_STARTING.value,
                          f"{ready}/{shown_parallelism} worker pods ready"))
    phase = Phase.RUNNING if elapsed >= 0 else Phase.PROVISIONING
    no_heartbeats = redis is not None and redis.reachable and not redis.heartbeats

    if stopping is not None:
        drained = workers_done or (no_heartbeats and now >= stopping.at + 2 * interval) or (
            now >= stopping.at + parse_duration(effective.load.graceful_stop) + settings.finish_grace
        )
        if drained:
            return finish(Phase(stopping.phase), stopping.reason, stopping.message, elapsed, shown_parallelism)
        return ongoing(phase, f"stopping: {stopping.message}", elapsed, shown_parallelism)

    def stop(phase_to: Phase, reason: str, message: str) -> Decision:
        decision.stop = StopRecord(phase_to.value, reason, message, now)
        decision.parallelism = None
        return ongoing(phase, f"stopping: {message}", elapsed, shown_parallelism)

    if abort:
        return stop(Phase.ABORTED, Reason.ABORTED.value, abort)
    if job is not None and job.failed_message is not None:
        oom = [i.pod for i in observed.pod_issues if i.reason == "OOMKilled"]
        text = f"worker pods failed beyond backoffLimit ({effective.workers.backoff_limit}): {job.failed_message}"
        if oom:
            text += f"; OOMKilled: {', '.join(oom[:5])}"
        return stop(Phase.FAILED, Reason.WORKERS_FAILED.value, text)
    issue = _pod_failure(observed.pod_issues, now, provisioning)
    if issue is not None:
        return stop(Phase.FAILED, _issue_reason(issue), _issue_message(issue, provisioning))
    if (effective.auth is not None and effective.auth.on_expired == "Fail" and token is not None
            and token.expires_at <= now and elapsed < duration):
        return stop(Phase.FAILED, Reason.TOKEN_EXPIRED.value,
                    f"token version {token.version} expired {now - token.expires_at:.0f}s ago with no replacement")
    if elapsed >= 0:
        trigger = abort_trigger(verdicts, elapsed)
        if trigger is not None:
            return stop(Phase.FAILED, Reason.THRESHOLD_ABORTED.value, failure_message(trigger) + " (abortOnFail)")

    if elapsed >= duration:
        ended = workers_done or (no_heartbeats and elapsed >= duration + 2 * interval) or (
            elapsed >= duration + parse_duration(effective.load.graceful_stop) + settings.finish_grace
        )
        if ended:
            if failing_threshold is not None:
                return finish(Phase.FAILED, Reason.THRESHOLD_FAILED.value, failure_message(failing_threshold),
                              elapsed, shown_parallelism)
            return finish(Phase.SUCCEEDED, Reason.COMPLETED.value,
                          f"completed; {verdict(verdicts)} {len(verdicts)} threshold(s)", elapsed, shown_parallelism)
        return ongoing(phase, "the plan ended, waiting for the workers' last metrics", elapsed, shown_parallelism)
    message = "running" if elapsed >= 0 else f"starting in {math.ceil(-elapsed)}s"
    return ongoing(phase, message, elapsed, shown_parallelism)
