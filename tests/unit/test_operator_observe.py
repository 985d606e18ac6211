"""Observations from API objects, the status shape against the API model, merged metrics."""

from __future__ import annotations

import json
from typing import Any

from hdrh.histogram import HdrHistogram

from kubeload.api.models import LoadTestSpec
from kubeload.api.status import LoadTestStatus
from kubeload.metrics import new_histogram
from kubeload.operator.builders import Owner
from kubeload.operator.fleet import FleetMetrics, view
from kubeload.operator.model import Heartbeat, JobState, Observed, RedisState, TokenInfo
from kubeload.operator.observe import job_state, pod_issues
from kubeload.operator.plan import plan
from kubeload.operator.redisio import map_url
from kubeload.protocol import Plan


def pod(name: str, component: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubeload.dev/component": component},
                         "creationTimestamp": "2024-01-01T00:00:00Z"}, "status": status}


def test_pod_issues() -> None:
    pods = [
        pod("a", "worker", {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}]}),
        pod("b", "worker", {"phase": "Pending", "containerStatuses": [
            {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}),
        pod("c", "worker", {"phase": "Failed", "containerStatuses": [
            {"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}),
        pod("d", "refresher", {"phase": "Running", "containerStatuses": [
            {"state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}),
        pod("e", "worker", {"phase": "Running", "containerStatuses": [
            {"state": {"waiting": {"reason": "ContainerCreating"}}}]}),
    ]
    found = {(i.pod, i.reason, i.terminal) for i in pod_issues(pods)}
    assert found == {("a", "Unschedulable", False), ("b", "ImagePullBackOff", False), ("c", "OOMKilled", True),
                     ("d", "CrashLoopBackOff", True)}
    assert all(i.since == 1704067200.0 for i in pod_issues(pods))


def test_job_state() -> None:
    job = {"spec": {"parallelism": 2, "completions": 4},
           "status": {"active": 2, "ready": 1, "failed": 4, "conditions": [
               {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit"}]}}
    state = job_state(job)
    assert state == JobState(2, 4, 2, 1, 0, 4, False,
                             "BackoffLimitExceeded: Job has reached the specified backoff limit")
    assert job_state({"spec": {}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}).complete  # type: ignore[union-attr]
    assert job_state(None) is None


def test_service_map() -> None:
    mapping = {"lt-redis.ns.svc:6379": "127.0.0.1:40001"}
    assert map_url("redis://lt-redis.ns.svc:6379/0", mapping) == "redis://127.0.0.1:40001/0"
    assert map_url("redis://other:6379/0", mapping) == "redis://other:6379/0"


def _delta(seq: int, interval: int, reqs: int, failed: int, values_us: list[int]) -> dict[str, Any]:
    hist: HdrHistogram = new_histogram()
    for v in values_us:
        hist.record_value(v)
    return {"v": 1, "worker": "0", "process": 0, "instance": "i0", "seq": seq, "interval": interval,
            "start": 100.0 + 2 * interval, "end": 102.0 + 2 * interval, "vus": 5, "vus_max": 5,
            "iterations": reqs, "dropped_iterations": 0,
            "requests": {"home": {"reqs": reqs, "failed": failed, "sum_us": sum(values_us),
                                  "min_us": min(values_us), "max_us": max(values_us),
                                  "hist": hist.encode().decode() if isinstance(hist.encode(), bytes)
                                  else hist.encode()}}}


def test_status_written_by_the_planner_is_a_valid_api_status() -> None:
    fleet = FleetMetrics()
    fleet.totals.add_all([_delta(1, 0, 100, 2, [10_000] * 90 + [400_000] * 10),
                          _delta(2, 1, 100, 0, [20_000] * 100)])
    fleet.totals.add(_delta(2, 1, 100, 0, [20_000] * 100))  # a resent delta counts once
    metrics = view(fleet)
    assert metrics.requests == 200 and metrics.failed_requests == 2
    assert metrics.rps == 50.0  # the newest complete interval: 100 requests in 2 s
    assert 390 <= metrics.p99 <= 401
    spec = LoadTestSpec.model_validate({
        "target": {"baseURL": "http://x"}, "requests": [{"name": "home"}],
        "load": {"executor": "constant-vus", "vus": 5, "duration": "10s"},
        "auth": {"grant": "client_credentials", "tokenURL": "http://a/t", "clientID": {"value": "c"},
                 "clientSecret": {"value": "s"}},
        "thresholds": [{"metric": "http_req_duration", "condition": "p(99)<100"},
                       {"metric": "http_req_duration{name:home}", "condition": "p(99.9)<1000"}],
    })
    owner = Owner("lt", "ns", "abc-def")
    redis = RedisState(reachable=True, token=TokenInfo(1, 1e10, 90.0),
                       plan=Plan("abcdef", 100.0, 1, spec.wire(), "stages"), heartbeats=(Heartbeat(0, 5, 104.0),))
    observed = Observed(owner=owner, generation=3, created_at=90.0, annotations={}, pinned_wire=spec.wire(),
                        fresh_password="x", job=JobState(1, 1, 1, 1), redis=redis, metrics=metrics)
    running = plan(spec, observed, now=105.0)
    LoadTestStatus.model_validate(running.status)
    assert running.status["thresholds"][0]["ok"] is False  # the 400 ms tail is 5 % of the requests
    ended = plan(spec, Observed(**{**observed.__dict__, "job": JobState(1, 1, 0, 0, 1, 0, True)}), now=111.0)
    assert ended.final is not None
    LoadTestStatus.model_validate(ended.status)
    json.dumps(ended.final.summary)  # serialisable as the ConfigMap's summary.json
    assert ended.final.summary["metrics"]["http_reqs"]["count"] == 200
