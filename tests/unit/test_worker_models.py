"""The closed and open models in one event loop, with real (sleeping) iterations: no HTTP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kubeload.api.models import Load, LoadTestSpec
from kubeload.membership import MembershipView
from kubeload.worker.arrival import OpenModel
from kubeload.worker.clock import PlanClock
from kubeload.worker.closed import ClosedModel
from kubeload.worker.cpus import available_cpus, cgroup_cpu_limit
from kubeload.worker.prepared import prepare_requests
from kubeload.worker.process import split_token_stats
from kubeload.worker.recorder import Recorder


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


class Counter:
    def __init__(self) -> None:
        self.value = 0

    def __call__(self) -> None:
        self.value += 1


def test_closed_model_follows_its_share_and_retired_vus_finish_their_iteration() -> None:
    async def scenario() -> None:
        in_flight = 0
        finished = 0

        async def iteration() -> None:
            nonlocal in_flight, finished
            in_flight += 1
            try:
                await asyncio.sleep(0.3)
                finished += 1
            finally:
                in_flight -= 1

        clock = PlanClock.starting_at(time.time())
        share = {"vus": 5}
        interrupted = Counter()
        model = ClosedModel(iteration, share=lambda _: share["vus"], clock=clock, think_s=0.0,
                            ramp_down_s=1.0, on_interrupted=interrupted)
        stop = asyncio.Event()
        runner = asyncio.create_task(model.run(60.0, stop))
        await asyncio.sleep(0.1)
        assert model.vus == 5 and in_flight == 5
        share["vus"] = 2
        await asyncio.sleep(0.1)
        assert model.vus == 2
        assert in_flight == 5  # the three retired VUs are finishing their iteration
        await asyncio.sleep(0.25)
        assert in_flight == 2  # ...and then start no other
        assert finished == 5
        assert interrupted.value == 0
        stop.set()
        await runner
        await model.drain(graceful_stop_s=1.0)
        assert in_flight == 0 and interrupted.value == 0
        assert model.vus_max == 5

    run(scenario())


def test_closed_model_interrupts_after_graceful_ramp_down() -> None:
    async def scenario() -> None:
        async def endless() -> None:
            await asyncio.sleep(60)

        share = {"vus": 3}
        interrupted = Counter()
        model = ClosedModel(endless, share=lambda _: share["vus"], clock=PlanClock.starting_at(time.time()),
                            think_s=0.0, ramp_down_s=0.2, on_interrupted=interrupted)
        stop = asyncio.Event()
        runner = asyncio.create_task(model.run(60.0, stop))
        await asyncio.sleep(0.1)
        share["vus"] = 1
        await asyncio.sleep(0.1)
        assert interrupted.value == 0
        await asyncio.sleep(0.25)
        assert interrupted.value == 2
        stop.set()
        await runner
        started = time.monotonic()
        await model.drain(graceful_stop_s=0.3)
        assert interrupted.value == 3
        assert time.monotonic() - started < 1.5

    run(scenario())


def test_closed_model_stops_at_the_end_of_the_plan() -> None:
    async def scenario() -> None:
        count = Counter()

        async def quick() -> None:
            count()
            await asyncio.sleep(0.01)

        model = ClosedModel(quick, share=lambda _: 2, clock=PlanClock.starting_at(time.time()),
                            think_s=0.0, ramp_down_s=1.0)
        started = time.monotonic()
        await model.run(0.3, asyncio.Event())
        await model.drain(1.0)
        assert 0.25 < time.monotonic() - started < 0.6
        assert 40 <= count.value <= 70  # 2 VUs, 10 ms each, 0.3 s

    run(scenario())


def arrival(rate: int, duration: str) -> Load:
    return Load.model_validate({"executor": "constant-arrival-rate", "rate": rate, "duration": duration})


def test_open_model_starts_its_slot_of_the_schedule_on_time() -> None:
    async def scenario() -> None:
        starts: list[float] = []
        clock = PlanClock.starting_at(time.time() + 0.05)

        async def iteration(due: float) -> None:
            starts.append(time.perf_counter() - due)  # lateness against the plan
            await asyncio.sleep(0.01)

        dropped = Counter()
        model = OpenModel(iteration, load=arrival(200, "1s"), clock=clock, view=MembershipView(1, 2, 0, 1),
                          pre_allocated=4, max_vus=20, on_dropped=dropped)
        await model.run(asyncio.Event())
        await model.drain(1.0)
        assert len(starts) == 100  # the odd-numbered half of 200 iterations
        assert dropped.value == 0
        assert max(starts) < 0.05  # none started late by more than a scheduling hiccup
        assert model.vus_max <= 10

    run(scenario())


def test_open_model_drops_when_every_vu_is_busy_and_does_not_wait_for_responses() -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        clock = PlanClock.starting_at(time.time())

        async def stuck(due: float) -> None:
            await release.wait()

        dropped = Counter()
        model = OpenModel(stuck, load=arrival(100, "0.5s"), clock=clock, view=MembershipView(0, 1, 0, 1),
                          pre_allocated=1, max_vus=5, on_dropped=dropped, on_interrupted=Counter())
        await model.run(asyncio.Event())
        assert model.started == 5 and dropped.value == 45
        assert model.vus == 5 and model.vus_max == 5
        release.set()
        await model.drain(1.0)
        assert model.vus == 0

    run(scenario())


def test_prepared_requests_merge_headers_encode_json_and_pick_by_weight() -> None:
    spec = LoadTestSpec.model_validate({
        "target": {"baseURL": "http://127.0.0.1:1/api/", "headers": {"X-A": "1", "X-B": "target"}},
        "load": {"executor": "constant-vus", "vus": 1, "duration": "1s"},
        "requests": [
            {"name": "read", "path": "/items?x=1", "weight": 3, "headers": {"X-B": "request"}},
            {"name": "write", "method": "POST", "path": "/items", "json": {"a": [1, 2]},
             "expect": {"status": [201]}},
        ],
    })
    picker = prepare_requests(spec, Recorder("w", 0))
    read, write = picker.requests
    assert read.url == "http://127.0.0.1:1/api/items?x=1"
    assert read.headers == {"X-A": "1", "X-B": "request"}
    assert write.body == b'{"a":[1,2]}' and write.headers["Content-Type"] == "application/json"
    assert read.accepts(204) and read.accepts(302) and not read.accepts(404)
    assert write.accepts(201) and not write.accepts(200)
    with_token = read.headers_with(("Authorization", "Bearer a"))
    assert with_token["Authorization"] == "Bearer a" and "Authorization" not in read.headers
    assert read.headers_with(("Authorization", "Bearer a")) is with_token  # built once per token
    picks = [picker.pick().name for _ in range(8000)]
    assert picks.count("read") / len(picks) == pytest.approx(0.75, abs=0.03)


def test_cgroup_cpu_limits(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_limit(v1) == 2.0
    assert available_cpus() >= 1


def test_token_stats_split_into_counter_increases_and_gauges() -> None:
    before: dict[str, int] = {}
    first = split_token_stats({"token_unauthorized": 2, "token_version": 3, "token_age_s": 1.5}, before)
    assert first == ({"token_unauthorized": 2}, {"token_version": 3.0, "token_age_s": 1.5})
    second = split_token_stats({"token_unauthorized": 5, "token_version": 4, "token_age_s": 0.1}, before)
    assert second == ({"token_unauthorized": 3}, {"token_version": 4.0, "token_age_s": 0.1})
