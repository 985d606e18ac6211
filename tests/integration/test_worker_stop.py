"""Stopping workers (control channel, stop key, SIGTERM, gracefulStop) and losing Redis mid-run."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from support.procs import RedisServer
from support.target import http_target
from support.workers import (
    client_for,
    make_keys,
    read_totals,
    wait_all,
    workers_running,
    write_plan,
)

from kubeload.metrics import MetricsTotals, parse_entry

pytestmark = pytest.mark.integration


def spec_for(url: str, load: dict[str, Any], path: str = "/") -> dict[str, Any]:
    return {"target": {"baseURL": url}, "requests": [{"name": "home", "path": path}], "load": load}


def sleep_until(moment: float) -> None:
    time.sleep(max(moment - time.time(), 0))


def test_stop_on_the_control_channel_lets_in_flight_iterations_finish(redis: RedisServer, kubeload_bin: str) -> None:
    load = {"executor": "constant-vus", "vus": 6, "duration": "60s", "gracefulStop": "5s"}
    keys = make_keys()
    with http_target() as target:
        plan = write_plan(redis, keys, spec_for(target.url, load, path="/?sleep_ms=400"), workers=2)
        with workers_running(kubeload_bin, redis, keys, 2, processes=2) as procs:
            sleep_until(plan.start_at + 2.0)
            stopped_at = time.monotonic()
            client_for(redis).publish(keys.control, "stop")
            assert wait_all(procs, timeout=15) == [0, 0]
            took = time.monotonic() - stopped_at
        served = target.stats()["requests"]

    assert took < 4.0  # in-flight requests take 0.4 s; nothing waited for the 60 s plan
    totals = read_totals(redis, keys)
    # The requests in flight at the stop finished and were published in the last interval.
    assert totals.requests().reqs == served
    assert totals.counters.get("interrupted_iterations", 0) == 0
    assert totals.requests().failed == 0


def test_sigterm_stops_one_worker_and_the_stop_key_stops_the_rest(redis: RedisServer, kubeload_bin: str) -> None:
    load = {"executor": "constant-vus", "vus": 4, "duration": "60s", "thinkTime": "50ms"}
    keys = make_keys()
    with http_target() as target:
        plan = write_plan(redis, keys, spec_for(target.url, load), workers=2)
        with workers_running(kubeload_bin, redis, keys, 2, processes=1) as procs:
            sleep_until(plan.start_at + 1.5)
            procs[1].send_signal(signal.SIGTERM)
            assert procs[1].wait(10) == 0
            time.sleep(1.0)
            assert procs[0].poll() is None  # a SIGTERM is one pod's business
            client_for(redis).set(keys.stop, "test")
            assert wait_all(procs[:1], timeout=10) == [0]
        served = target.stats()["requests"]
    assert read_totals(redis, keys).requests().reqs == served


def test_graceful_stop_bounds_the_wait_for_a_stalled_server(redis: RedisServer, kubeload_bin: str) -> None:
    load = {"executor": "constant-vus", "vus": 2, "duration": "3s", "gracefulStop": "1s"}
    keys = make_keys()
    with http_target() as target:
        plan = write_plan(redis, keys, spec_for(target.url, load), workers=1)
        with workers_running(kubeload_bin, redis, keys, 1, processes=1) as procs:
            sleep_until(plan.start_at + 1.0)
            target.control(stall=True)
            assert wait_all(procs, timeout=20) == [0]
            ended = time.time()
            target.control(stall=False)
    # The plan ends at 3 s; stalled iterations get gracefulStop (1 s) and are interrupted.
    assert ended - plan.start_at < 3.0 + 1.0 + 2.5
    totals = read_totals(redis, keys)
    assert totals.counters.get("interrupted_iterations", 0) == 2


def test_a_worker_that_loses_redis_keeps_the_load_going_and_catches_up(redis: RedisServer, kubeload_bin: str) -> None:
    load = {"executor": "constant-vus", "vus": 3, "duration": "9s", "thinkTime": "50ms"}
    keys = make_keys()
    seen = MetricsTotals()
    with http_target() as target:
        plan = write_plan(redis, keys, spec_for(target.url, load), workers=1, interval=1.0)
        with workers_running(kubeload_bin, redis, keys, 1, processes=2) as procs:
            sleep_until(plan.start_at + 2.5)
            for _, fields in client_for(redis).xrange(keys.metrics):
                seen.add(parse_entry(fields))
            redis.stop()  # no persistence: what the stream held is gone with it
            served_at_outage = target.stats()["requests"]
            time.sleep(3.0)
            served_after_outage = target.stats()["requests"]
            redis.start()
            assert wait_all(procs, timeout=30) == [0]
        served = target.stats()["requests"]

    assert served_after_outage - served_at_outage > 50  # 3 VUs kept going without Redis
    # Deltas buffered during the outage were sent when Redis returned: with what was read
    # before the outage, every request is counted exactly once.
    for _, fields in client_for(redis).xrange(keys.metrics):
        seen.add(parse_entry(fields))
    assert seen.requests().reqs == served
    assert {p.interval for p in seen.series()} >= set(range(9))
