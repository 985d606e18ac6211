"""Stage math: targets over time, splits, scaling and the open-model iteration schedule."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeload.api.models import Load, LoadTestSpec
from kubeload.schedule import (
    active_workers,
    arrival_vus,
    first_iteration,
    iteration_start,
    iterations_started_by,
    peak_target,
    planned_iterations,
    process_vus,
    rate_per_second,
    slot,
    split,
    stage_at,
    target_at,
    total_duration,
    vus_at,
    worker_vus,
    workers_needed,
)


def load(**fields: Any) -> Load:
    return Load.model_validate(fields)


def spec(load_fields: dict[str, Any], **workers: Any) -> LoadTestSpec:
    return LoadTestSpec.model_validate({
        "target": {"baseURL": "http://127.0.0.1:1"},
        "requests": [{"name": "r"}],
        "load": load_fields,
        "workers": workers,
    })


RAMP = {"executor": "ramping-vus", "startVUs": 2,
        "stages": [{"duration": "10s", "target": 12}, {"duration": "5s", "target": 12},
                   {"duration": "10s", "target": 0, "name": "down"}]}


class TestTargets:
    def test_constant_vus_is_flat_for_its_duration(self) -> None:
        constant = load(executor="constant-vus", vus=7, duration="30s")
        assert total_duration(constant) == 30
        assert [target_at(constant, t) for t in (0, 15, 29.9, 30, 99)] == [7] * 5
        assert vus_at(constant, 10) == 7

    def test_ramping_vus_interpolates_from_start_vus(self) -> None:
        ramp = load(**RAMP)
        assert total_duration(ramp) == 25
        assert target_at(ramp, 0) == 2
        assert target_at(ramp, 5) == pytest.approx(7)
        assert target_at(ramp, 12) == 12
        assert target_at(ramp, 20) == pytest.approx(6)
        assert target_at(ramp, 25) == 0
        assert target_at(ramp, -3) == 2
        assert target_at(ramp, 100) == 0

    def test_whole_vus_step_when_the_ramp_reaches_them(self) -> None:
        up = load(executor="ramping-vus", stages=[{"duration": "10s", "target": 10},
                                                  {"duration": "10s", "target": 0}])
        # Up: a VU is added when the line reaches it (floor); down: retired at the line (ceil).
        assert [vus_at(up, t) for t in (0, 0.99, 1.0, 5.5, 9.99, 10)] == [0, 0, 1, 5, 9, 10]
        assert [vus_at(up, t) for t in (10.01, 11, 14.5, 19.99, 20)] == [10, 9, 6, 1, 0]

    def test_float_noise_does_not_lose_a_vu(self) -> None:
        ramp = load(executor="ramping-vus", stages=[{"duration": "3s", "target": 3}])
        assert vus_at(ramp, 0.1 + 0.2 + 0.7) == 1
        assert vus_at(ramp, 3 * (1 / 3) * 3) == 3

    def test_arrival_rate_has_no_closed_model_vus(self) -> None:
        rate = load(executor="constant-arrival-rate", rate=50, duration="10s", timeUnit="2s")
        assert vus_at(rate, 1) == 0
        assert target_at(rate, 1) == 50
        assert rate_per_second(rate, 1) == 25

    def test_stage_position(self) -> None:
        ramp = load(**RAMP)
        first = stage_at(ramp, 3)
        assert (first.index, first.count, first.name, first.start, first.end, first.target) == (
            0, 3, "stage-1", 0, 10, 12)
        assert stage_at(ramp, 10).index == 1
        last = stage_at(ramp, 24)
        assert (last.index, last.name, last.progress) == (2, "down", "3/3 down")
        assert stage_at(ramp, 500).index == 2
        assert stage_at(load(executor="constant-vus", vus=1, duration="5s"), 2).progress == (
            "1/1 constant-vus")

    def test_peak_over_a_window(self) -> None:
        ramp = load(**RAMP)
        assert peak_target(ramp, 0, 1) == 3
        assert peak_target(ramp, 8, 30) == 12  # a stage boundary inside the window
        assert peak_target(ramp, 20, 21) == 6
        assert peak_target(ramp, -10, 0) == 2


class TestSplit:
    @given(st.integers(0, 10_000), st.integers(1, 64))
    def test_shares_sum_to_the_total_and_differ_by_at_most_one(self, total: int, parts: int) -> None:
        shares = [split(total, parts, i) for i in range(parts)]
        assert sum(shares) == total
        assert max(shares) - min(shares) <= 1
        assert shares == sorted(shares, reverse=True)  # the first ones get the remainder

    def test_out_of_range_index_gets_nothing_and_zero_parts_is_refused(self) -> None:
        with pytest.raises(ValueError, match="out of range"):
            slot(2, 2, 0, 2)  # a worker beyond the plan would take worker 0's second slot
        assert split(10, 3, 3) == 0
        with pytest.raises(ValueError, match="parts"):
            split(1, 0, 0)

    @given(st.integers(0, 5_000), st.integers(1, 12), st.integers(1, 8))
    def test_slots_agree_with_splitting_workers_then_processes(
        self, total: int, workers: int, processes: int
    ) -> None:
        for w in range(workers):
            by_worker = split(total, workers, w)
            for p in range(processes):
                place = slot(w, workers, p, processes)
                assert split(total, place.count, place.index) == split(by_worker, processes, p)


class TestScaling:
    def test_stages_scaling_follows_the_target(self) -> None:
        s = spec(RAMP, vusPerWorker=4, maxWorkers=10)
        assert workers_needed(s) == 3
        assert active_workers(3, "stages", s, 0) == 1  # 2 VUs
        assert active_workers(3, "stages", s, 5) == 2  # 7 VUs
        assert active_workers(3, "stages", s, 12) == 3
        assert active_workers(3, "stages", s, 25) == 1  # never below one
        # A lead time raises the count early, so pods exist before they get load.
        assert active_workers(3, "stages", s, 0, lead_s=10) == 3
        assert active_workers(3, "fixed", s, 0) == 3

    def test_max_workers_caps(self) -> None:
        s = spec(RAMP, vusPerWorker=1, maxWorkers=5)
        assert workers_needed(s) == 5
        assert active_workers(5, "stages", s, 12) == 5

    def test_arrival_rate_workers_are_fixed_by_max_vus(self) -> None:
        s = spec({"executor": "ramping-arrival-rate", "maxVUs": 90, "preAllocatedVUs": 10,
                  "stages": [{"duration": "10s", "target": 1}]}, vusPerWorker=40, maxWorkers=10)
        assert workers_needed(s) == 3
        assert active_workers(3, "stages", s, 0) == 3
        assert arrival_vus(s.load) == (10, 90)
        assert arrival_vus(load(executor="constant-arrival-rate", rate=1, duration="1s")) == (100, 100)
        assert arrival_vus(load(executor="constant-arrival-rate", rate=1, duration="1s",
                                preAllocatedVUs=7)) == (7, 7)

    @pytest.mark.parametrize("scaling", ["fixed", "stages"])
    def test_processes_of_all_workers_sum_to_the_plan_at_every_moment(self, scaling: str) -> None:
        s = spec(RAMP, vusPerWorker=3, maxWorkers=10)
        workers, processes = workers_needed(s), 3
        for tenth in range(0, 260):
            t = tenth / 10
            per_worker = [worker_vus(s, workers, scaling, w, t) for w in range(workers)]
            assert sum(per_worker) == vus_at(s.load, t)
            for w in range(workers):
                shares = [process_vus(s, workers, scaling, worker=w, processes=processes, process=p, elapsed=t)
                          for p in range(processes)]
                assert sum(shares) == per_worker[w]
            if scaling == "stages":
                assert max(per_worker) <= 3  # no worker above vusPerWorker
                active = active_workers(workers, scaling, s, t)
                assert all(v > 0 for v in per_worker[:active]) or vus_at(s.load, t) == 0
                assert not any(per_worker[active:])

    @pytest.mark.parametrize("scaling", ["fixed", "stages"])
    def test_one_more_vu_in_the_plan_moves_one_worker_by_one(self, scaling: str) -> None:
        # Otherwise a worker's VUs would jump when the number of active workers changes.
        s = spec(RAMP, vusPerWorker=3, maxWorkers=10)
        workers = workers_needed(s)
        previous = [0] * workers
        for hundredth in range(0, 2600):
            t = hundredth / 100
            current = [worker_vus(s, workers, scaling, w, t) for w in range(workers)]
            step = abs(vus_at(s.load, t) - sum(previous))
            moved = [abs(a - b) for a, b in zip(current, previous, strict=True)]
            if step <= 1:
                assert sum(moved) == step, (t, previous, current)
            previous = current

    def test_stages_scaling_past_max_workers_splits_evenly(self) -> None:
        s = spec({"executor": "constant-vus", "vus": 10, "duration": "1s"}, vusPerWorker=2, maxWorkers=3)
        assert [worker_vus(s, 3, "stages", w, 0.5) for w in range(3)] == [4, 3, 3]


class TestOpenModel:
    def test_constant_rate_schedule(self) -> None:
        rate = load(executor="constant-arrival-rate", rate=10, duration="3s")
        assert planned_iterations(rate) == 30
        assert iteration_start(rate, 0) == 0
        assert iteration_start(rate, 1) == pytest.approx(0.1)
        assert iteration_start(rate, 29) == pytest.approx(2.9)
        assert iteration_start(rate, 30) is None

    def test_time_unit_scales_the_rate(self) -> None:
        rate = load(executor="constant-arrival-rate", rate=30, duration="4s", timeUnit="1m")
        assert planned_iterations(rate) == 2
        assert iteration_start(rate, 1) == pytest.approx(2.0)

    def test_ramping_rate_integral_and_inverse(self) -> None:
        ramp = load(executor="ramping-arrival-rate", startRate=0,
                    stages=[{"duration": "10s", "target": 100}, {"duration": "10s", "target": 100},
                            {"duration": "10s", "target": 0}])
        assert iterations_started_by(ramp, 10) == pytest.approx(500)
        assert iterations_started_by(ramp, 20) == pytest.approx(1500)
        assert planned_iterations(ramp) == 2000
        assert iterations_started_by(ramp, 5) == pytest.approx(125)
        for k in (0, 1, 124, 125, 499, 500, 1000, 1499, 1500, 1750, 1999):
            start = iteration_start(ramp, k)
            assert start is not None
            assert iterations_started_by(ramp, start) == pytest.approx(k, abs=1e-6)
        assert iteration_start(ramp, 2000) is None

    @given(st.integers(0, 300), st.integers(1, 50), st.integers(1, 50))
    def test_iteration_starts_increase(self, k: int, r0: int, r1: int) -> None:
        ramp = load(executor="ramping-arrival-rate", startRate=r0,
                    stages=[{"duration": "3s", "target": r1}, {"duration": "2s", "target": 0}])
        first, second = iteration_start(ramp, k), iteration_start(ramp, k + 1)
        if second is not None:
            assert first is not None
            assert first < second
        total = planned_iterations(ramp)
        assert (iteration_start(ramp, k) is None) == (k >= total)

    def test_a_late_slot_starts_with_its_first_iteration_still_ahead(self) -> None:
        rate = load(executor="constant-arrival-rate", rate=10, duration="10s")
        place = slot(1, 2, 1, 2)  # slot 3 of 4: iterations 3, 7, 11, ...
        assert first_iteration(rate, place, 0.0) == 3
        assert first_iteration(rate, place, -5.0) == 3
        # 5 s late: iteration 50 is due now; the slot's next one is 51.
        assert first_iteration(rate, place, 5.0) == 51
        start = iteration_start(rate, first_iteration(rate, place, 5.01))
        assert start is not None and 5.01 <= start < 5.01 + 0.4

    def test_slots_start_every_planned_iteration_once(self) -> None:
        ramp = load(executor="ramping-arrival-rate", startRate=5,
                    stages=[{"duration": "4s", "target": 40}, {"duration": "4s", "target": 5}])
        total = planned_iterations(ramp)
        assert total == math.ceil(iterations_started_by(ramp, 8) - 1e-9)
        workers, processes = 2, 3
        started = []
        for w in range(workers):
            for p in range(processes):
                place = slot(w, workers, p, processes)
                k = place.index
                while iteration_start(ramp, k) is not None:
                    started.append(k)
                    k += place.count
        assert sorted(started) == list(range(total))
