"""The open model with real workers: the planned iterations start, on schedule, drops counted.

2 workers x 2 processes share one global iteration schedule; the target is a real HTTP server
on loopback that can stall; the numbers come from the merged metrics stream.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.procs import RedisServer
from support.target import http_target
from support.workers import HeartbeatSampler, make_keys, read_totals, wait_all, workers_running, write_plan

from kubeload.api.models import Load
from kubeload.schedule import iterations_started_by, planned_iterations

pytestmark = pytest.mark.integration


def spec_for(url: str, load: dict[str, Any], path: str = "/") -> dict[str, Any]:
    return {"target": {"baseURL": url, "timeout": "10s"}, "requests": [{"name": "home", "path": path}],
            "load": load}


def test_constant_arrival_rate_starts_the_planned_iterations(redis: RedisServer, kubeload_bin: str) -> None:
    load = {"executor": "constant-arrival-rate", "rate": 150, "duration": "5s", "preAllocatedVUs": 8,
            "maxVUs": 40}
    keys = make_keys()
    with http_target() as target:
        write_plan(redis, keys, spec_for(target.url, load), workers=2)
        with workers_running(kubeload_bin, redis, keys, 2, processes=2) as procs:
            assert wait_all(procs, timeout=40) == [0, 0]
        served = target.stats()["requests"]

    planned = planned_iterations(Load.model_validate(load))
    assert planned == 750
    totals = read_totals(redis, keys)
    started = totals.iterations + totals.counters.get("interrupted_iterations", 0)
    assert abs(started - planned) <= 0.02 * planned, (started, planned)
    assert totals.dropped_iterations == 0
    assert totals.requests().reqs == served == totals.iterations
    assert totals.vus_max <= 40


def test_ramping_arrival_rate_follows_the_stages(redis: RedisServer, kubeload_bin: str) -> None:
    load = {"executor": "ramping-arrival-rate", "startRate": 20, "preAllocatedVUs": 8, "maxVUs": 40,
            "stages": [{"duration": "3s", "target": 200}, {"duration": "3s", "target": 200},
                       {"duration": "3s", "target": 40}]}
    keys = make_keys()
    with http_target() as target:
        plan = write_plan(redis, keys, spec_for(target.url, load), workers=2, interval=1.0)
        with workers_running(kubeload_bin, redis, keys, 2, processes=2) as procs:
            assert wait_all(procs, timeout=40) == [0, 0]

    model = Load.model_validate(load)
    planned = planned_iterations(model)
    assert planned == 1290  # (20+200)/2*3 + 200*3 + (200+40)/2*3
    totals = read_totals(redis, keys)
    started = totals.iterations + totals.counters.get("interrupted_iterations", 0)
    assert abs(started - planned) <= 0.02 * planned, (started, planned)
    assert totals.dropped_iterations == 0
    # Interval by interval the fleet started what the plan says for that second.
    for point in totals.series():
        begin, end = point.start - plan.start_at, point.end - plan.start_at
        if end - begin < 0.9 or end > 9.0:
            continue  # partial intervals at the edges
        expected = iterations_started_by(model, end) - iterations_started_by(model, begin)
        assert abs(point.iterations - expected) <= 0.1 * expected + 4, (point.as_dict(), expected)


def test_a_stalled_server_makes_arrival_rate_drop_iterations_and_measures_from_the_planned_start(
    redis: RedisServer, kubeload_bin: str
) -> None:
    load = {"executor": "constant-arrival-rate", "rate": 40, "duration": "6s", "preAllocatedVUs": 4,
            "maxVUs": 8, "gracefulStop": "5s"}
    keys = make_keys()
    with http_target() as target:
        plan = write_plan(redis, keys, spec_for(target.url, load), workers=2)
        target.control(stall=True)
        sampler = HeartbeatSampler(redis, keys, workers=2)
        with sampler.running(), workers_running(kubeload_bin, redis, keys, 2, processes=2) as procs:
            # Stall the first 3 s of the plan: every VU (2 per process) hangs on a request.
            time.sleep(max(plan.start_at + 3.0 - time.time(), 0))
            target.control(stall=False)
            assert wait_all(procs, timeout=40) == [0, 0]

    planned = planned_iterations(Load.model_validate(load))
    totals = read_totals(redis, keys)
    started = totals.iterations + totals.counters.get("interrupted_iterations", 0)
    # 40/s over 3 s of stall with 8 VUs: about 110 iterations found no free VU.
    assert 80 <= totals.dropped_iterations <= 125, totals.dropped_iterations
    assert abs(started + totals.dropped_iterations - planned) <= 0.02 * planned
    # The first iterations waited ~3 s for the server: measured from their planned start.
    duration = totals.values("http_req_duration")
    assert duration["max"] >= 2500
    # Busy VUs peaked at the whole pool while the server stalled.
    assert max(b.vus for b in sampler.beats if b.index == 0) == 4
