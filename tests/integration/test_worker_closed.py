"""The closed model with real workers: VUs follow the stages, late joiners, exact accounting.

Real redis-server, a real HTTP target on loopback, real `kubeload worker` processes (2 workers
x 2 processes); the test watches them as the operator does: heartbeats and the metrics stream.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.procs import RedisServer, stop_process
from support.target import http_target
from support.workers import (
    HeartbeatSampler,
    make_keys,
    read_totals,
    start_worker,
    wait_all,
    workers_running,
    write_plan,
)

from kubeload.api.models import LoadTestSpec
from kubeload.membership import CHANGE_DELAY_S
from kubeload.schedule import vus_at, worker_vus

pytestmark = pytest.mark.integration
# The children refresh their VU gauge every 50 ms and the supervisor beats every 250 ms.
SAMPLE_LAG_S = 0.3


def spec_for(url: str, load: dict[str, Any], path: str = "/", **workers: Any) -> dict[str, Any]:
    return {"target": {"baseURL": url}, "requests": [{"name": "home", "path": path}], "load": load,
            "workers": workers}


def test_ramping_vus_follow_the_stages_across_two_workers(redis: RedisServer, kubeload_bin: str) -> None:
    load = {"executor": "ramping-vus", "startVUs": 2, "thinkTime": "100ms", "gracefulRampDown": "1s",
            "stages": [{"duration": "4s", "target": 12}, {"duration": "2s", "target": 12},
                       {"duration": "3s", "target": 3}]}
    keys = make_keys()
    with http_target() as target:
        spec = spec_for(target.url, load, vusPerWorker=6)
        # scaling "stages": worker 1 gets VUs only once the target needs more than 6.
        plan = write_plan(redis, keys, spec, workers=2, scaling="stages")
        sampler = HeartbeatSampler(redis, keys, workers=2)
        with sampler.running(), workers_running(kubeload_bin, redis, keys, 2, processes=2) as procs:
            assert wait_all(procs, timeout=40) == [0, 0]
        served = target.stats()["requests"]

    model = LoadTestSpec.model_validate(spec)
    running = [b for b in sampler.beats if b.states == ["running", "running"]]
    assert len(running) > 40, f"too few heartbeats while running: {len(running)}"
    misses = []
    for beat in running:
        elapsed = beat.at - plan.start_at
        expected = worker_vus(model, 2, "stages", beat.index, elapsed)
        # A heartbeat reports gauges up to SAMPLE_LAG_S old: it may still show the plan of that
        # moment (before the start: no VU yet).
        earlier = elapsed - SAMPLE_LAG_S
        expected_earlier = worker_vus(model, 2, "stages", beat.index, earlier) if earlier >= 0 else 0
        if min(abs(beat.vus - expected), abs(beat.vus - expected_earlier)) > 1:
            misses.append((beat.index, round(elapsed, 2), beat.vus, expected))
    assert not misses, f"heartbeats off the plan by more than one VU: {misses}"
    # The plan's shape was really visited: worker 1 idle at first, both at 6 at the peak.
    peak = {i: max(b.vus for b in running if b.index == i) for i in (0, 1)}
    assert peak == {0: 6, 1: 6}
    assert any(b.index == 1 and b.vus == 0 for b in running if b.at - plan.start_at < 1.5)

    totals = read_totals(redis, keys)
    assert totals.requests().reqs == served  # every request the target saw is counted, once
    assert totals.requests().failed == 0
    # The per-interval VU gauges of all four processes add up to the plan (one VU per worker).
    for point in totals.series()[1:-1]:
        expected_total = vus_at(model.load, point.end - plan.start_at)
        assert abs(point.vus - expected_total) <= 2, point.as_dict()


def test_constant_vus_split_exactly_and_slow_responses_show_in_the_merged_p50(
    redis: RedisServer, kubeload_bin: str
) -> None:
    keys = make_keys()
    load = {"executor": "constant-vus", "vus": 7, "duration": "4s"}
    with http_target() as target:
        spec = spec_for(target.url, load, path="/slow?sleep_ms=200")
        plan = write_plan(redis, keys, spec, workers=2)
        sampler = HeartbeatSampler(redis, keys, workers=2)
        with sampler.running(), workers_running(kubeload_bin, redis, keys, 2, processes=2) as procs:
            assert wait_all(procs, timeout=30) == [0, 0]
        served = target.stats()["requests"]

    running = [b for b in sampler.beats if b.states == ["running", "running"] and b.at - plan.start_at > 0.3]
    assert running
    # 7 VUs over 2 workers: 4 and 3, whatever the moment.
    assert {(b.index, b.vus) for b in running} == {(0, 4), (1, 3)}
    totals = read_totals(redis, keys)
    reqs = totals.requests()
    assert reqs.reqs == served
    # 7 VUs for 4 s at ~200 ms per request: about 140 requests.
    assert 100 <= reqs.reqs <= 145
    duration = totals.values("http_req_duration")
    assert 200 <= duration["med"] < 300, duration
    assert duration["min"] >= 200
    assert duration["p(99)"] <= duration["max"] + 0.5


def test_a_worker_started_late_joins_the_plan_at_its_current_stage(redis: RedisServer, kubeload_bin: str) -> None:
    keys = make_keys()
    load = {"executor": "ramping-vus", "thinkTime": "100ms",
            "stages": [{"duration": "3s", "target": 10, "name": "up"},
                       {"duration": "9s", "target": 10, "name": "hold"}]}
    with http_target() as target:
        spec = spec_for(target.url, load)
        plan = write_plan(redis, keys, spec, workers=2, interval=1.0)
        sampler = HeartbeatSampler(redis, keys, workers=2)
        with sampler.running():
            early = start_worker(kubeload_bin, redis, keys, 0, processes=2)
            late = None
            try:
                time.sleep(max(plan.start_at + 5.0 - time.time(), 0))
                late = start_worker(kubeload_bin, redis, keys, 1, processes=2)
                assert wait_all([early, late], timeout=30) == [0, 0]
            finally:
                stop_process(early)
                if late is not None:
                    stop_process(late)

    late_running = [b for b in sampler.beats if b.index == 1 and b.states == ["running", "running"]]
    assert late_running, "the late worker never ran"
    joined = late_running[0].at - plan.start_at
    assert 5.0 <= joined < 9.0  # started 5 s late, plus its own start-up on a busy machine
    # Until then worker 0 carried the whole plan (worker 1 was lost: no heartbeat). The late one
    # comes back CHANGE_DELAY_S after it runs, with its share of the "hold" stage (5 VUs): it
    # joined where the plan is, it did not start the ramp over. Beats are compared allowing
    # the sampler's lag.
    settled = joined + CHANGE_DELAY_S + 0.3
    assert all(abs(b.vus - 5) <= 1 for b in late_running if settled <= b.at - plan.start_at < 11.9)
    early_beats = [b for b in sampler.beats if b.index == 0 and b.states == ["running", "running"]]
    alone = [b.vus for b in early_beats if 3.0 + 0.3 <= b.at - plan.start_at < joined - 0.3]
    shared = [b.vus for b in early_beats if settled <= b.at - plan.start_at < 11.9]
    assert alone and set(alone) == {10}, alone
    assert shared and all(abs(v - 5) <= 1 for v in shared), shared
    # Its metrics start at the interval it joined in (1 s intervals), none before.
    totals = read_totals(redis, keys)
    both = [p for p in totals.series() if p.processes == 4]
    assert both and min(p.interval for p in both) >= 5
