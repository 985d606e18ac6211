"""Worker processes and whole workers (pods) killed mid-run: the others take the share.

Real `kubeload worker` processes (2 workers x 2 processes, 1 s metrics interval), a real
redis-server and a loopback HTTP target. Injected: SIGKILL of one VU process; SIGKILL of a
whole worker (its supervisor and processes, as when a pod is killed) and a replacement with the
same index (as the Job creates). What must hold: within one metrics interval (a process) or
LOST_AFTER_S + PEER_CHECK_S + CHANGE_DELAY_S (a silent pod, 2 s = the operator's interval) the
survivors run the whole target; the replacement gets its share back without doubling; every
planned iteration of the open model still starts once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support.manifests import manifest
from support.procs import RedisServer, command_line, processes_of_run, stop_process
from support.target import http_target
from support.workers import (
    Beat,
    HeartbeatSampler,
    client_for,
    make_keys,
    read_totals,
    start_worker,
    wait_all,
    workers_running,
    write_plan,
)

from kubeload.api.models import Load
from kubeload.membership import CHANGE_DELAY_S, LOST_AFTER_S, Membership
from kubeload.schedule import iterations_started_by, planned_iterations
from kubeload.worker.liveness import PEER_CHECK_S

pytestmark = [pytest.mark.faults, pytest.mark.integration]

INTERVAL_S = 1.0
SAMPLER_LAG_S = 0.3  # heartbeats every 0.25 s, sampled every 0.1 s


def spec_for(url: str, load: dict[str, Any]) -> dict[str, Any]:
    return {"target": {"baseURL": url, "timeout": "10s"}, "requests": [{"name": "home", "path": "/"}], "load": load}


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def wait_until(plan_start: float, elapsed: float) -> None:
    time.sleep(max(plan_start + elapsed - time.time(), 0))


def vus_at(beats: list[Beat], index: int, at: float) -> int | None:
    """Worker `index`'s VUs in its latest heartbeat written at or before epoch `at`; None when
    that is older than LOST_AFTER_S (a dead worker's last one), as the operator counts."""
    before = [b for b in beats if b.index == index and at - LOST_AFTER_S <= b.at <= at]
    return max(before, key=lambda b: b.at).vus if before else None


def fleet_vus(beats: list[Beat], workers: int, at: float) -> int:
    return sum(vus_at(beats, i, at) or 0 for i in range(workers))


def test_a_killed_process_s_vus_move_to_the_others_within_one_interval(redis: RedisServer,
                                                                          kubeload_bin: str) -> None:
    load = {"executor": "constant-vus", "vus": 40, "duration": "10s", "thinkTime": "50ms"}
    keys = make_keys()
    with http_target() as target:
        plan = write_plan(redis, keys, spec_for(target.url, load), workers=2, start_in=4.0, interval=INTERVAL_S)
        sampler = HeartbeatSampler(redis, keys, workers=2)
        with sampler.running(), workers_running(kubeload_bin, redis, keys, 2, processes=2) as procs:
            wait_until(plan.start_at, 3.0)
            victim = children(procs[1].pid)[0]
            os.kill(victim, signal.SIGKILL)
            killed_at = time.time()
            codes = wait_all(procs, timeout=40)

    assert codes == [0, 1]  # the worker that lost a process says so; the other ran to the end
    epochs = Membership.from_json(client_for(redis).get(keys.membership)).epochs
    assert len(epochs) == 1 and len(epochs[0].lost) == 1 and next(iter(epochs[0].lost))[0] == 1
    applied = plan.start_at + epochs[0].at
    print(f"process killed: its share moved {applied - killed_at:.2f}s after the kill")
    assert 0 < applied - killed_at <= INTERVAL_S, applied - killed_at
    # Before the kill and from one interval after it on, the fleet runs all 40 VUs: the dead
    # process's 10 are split over the three left (worker 0: 20 + 7, worker 1: 10 + 3).
    beats = sampler.beats
    for elapsed in (1.0, 2.5):
        assert fleet_vus(beats, 2, plan.start_at + elapsed) == 40
    for at in (killed_at + INTERVAL_S + SAMPLER_LAG_S, plan.start_at + 7.0, plan.start_at + 9.5):
        assert fleet_vus(beats, 2, at) == 40, at - plan.start_at
        assert vus_at(beats, 0, at) == 27 and vus_at(beats, 1, at) == 13
    # The metrics say the same: three processes report 40 VUs per interval after the takeover.
    totals = read_totals(redis, keys)
    after = [p for p in totals.series() if killed_at + INTERVAL_S <= p.start and p.end <= plan.start_at + 9.9]
    assert len(after) >= 4 and all((p.processes, p.vus) == (3, 40) for p in after), after


def test_arrival_rate_survives_a_killed_process_with_each_iteration_started_once(redis: RedisServer,
                                                                                kubeload_bin: str) -> None:
    load = {"executor": "constant-arrival-rate", "rate": 200, "duration": "10s", "preAllocatedVUs": 20,
            "maxVUs": 80}
    model = Load.model_validate(load)
    keys = make_keys()
    with http_target() as target:
        plan = write_plan(redis, keys, spec_for(target.url, load), workers=2, start_in=4.0, interval=INTERVAL_S)
        with workers_running(kubeload_bin, redis, keys, 2, processes=2) as procs:
            wait_until(plan.start_at, 3.0)
            os.kill(children(procs[1].pid)[1], signal.SIGKILL)
            killed = time.time() - plan.start_at
            codes = wait_all(procs, timeout=40)
        served = target.stats()["requests"]

    assert codes == [0, 1]
    planned = planned_iterations(model)
    assert planned == 2000
    # Lost for good: the dead slot's iterations between the kill and the epoch (<= one interval
    # of a quarter of the rate), and the requests it made in its last, unreported interval.
    dead_slot_share = 200 / 4 * INTERVAL_S
    totals = read_totals(redis, keys)
    started = totals.iterations + totals.counters.get("interrupted_iterations", 0)
    assert planned - dead_slot_share - 0.01 * planned <= served <= planned + 0.01 * planned, served
    assert served - dead_slot_share <= started <= served
    assert totals.dropped_iterations == 0
    # Interval by interval after the takeover, the fleet starts what the plan says (an iteration
    # delayed on a busy machine may count in the next interval), and all of it over those intervals.
    after = [p for p in totals.series() if p.start - plan.start_at >= killed + INTERVAL_S
             and p.end - p.start >= 0.9 and p.end - plan.start_at <= 9.9]
    assert len(after) >= 4
    for point in after:
        begin, end = point.start - plan.start_at, point.end - plan.start_at
        expected = iterations_started_by(model, end) - iterations_started_by(model, begin)
        assert abs(point.iterations - expected) <= 0.1 * expected + 4, (point.as_dict(), expected)
    expected_all = (iterations_started_by(model, after[-1].end - plan.start_at)
                    - iterations_started_by(model, after[0].start - plan.start_at))
    assert abs(sum(p.iterations for p in after) - expected_all) <= 0.02 * expected_all + 4


def test_a_killed_worker_s_share_moves_and_its_replacement_takes_it_back(redis: RedisServer,
                                                                          kubeload_bin: str) -> None:
    load = {"executor": "constant-vus", "vus": 40, "duration": "14s", "thinkTime": "50ms"}
    keys = make_keys()
    takeover_s = LOST_AFTER_S + PEER_CHECK_S + CHANGE_DELAY_S
    with http_target() as target:
        plan = write_plan(redis, keys, spec_for(target.url, load), workers=2, start_in=4.0, interval=INTERVAL_S)
        sampler = HeartbeatSampler(redis, keys, workers=2)
        with sampler.running(), workers_running(kubeload_bin, redis, keys, 2, processes=2) as procs:
            wait_until(plan.start_at, 3.0)
            # A pod killed: the supervisor and its processes at once, nobody says goodbye.
            for pid in [procs[1].pid, *children(procs[1].pid)]:
                os.kill(pid, signal.SIGKILL)
            killed_at = time.time()
            wait_until(plan.start_at, 7.0)
            replacement = start_worker(kubeload_bin, redis, keys, 1, processes=2)
            codes = wait_all([procs[0], replacement], timeout=40)
            assert procs[1].wait(5) == -signal.SIGKILL

    assert codes == [0, 0]
    beats = sampler.beats
    assert fleet_vus(beats, 2, killed_at - 0.5) == 40
    alone = killed_at + takeover_s + 2 * SAMPLER_LAG_S  # the last beat before the kill may be 0.25 s old
    took = min(b.at for b in beats if b.index == 0 and b.at > killed_at and b.vus == 40) - killed_at
    print(f"worker killed: worker 0 ran all 40 VUs {took:.2f}s after the kill")
    assert vus_at(beats, 0, alone) == 40, "worker 0 did not take the lost worker's share in time"
    back = [b for b in beats if b.index == 1 and b.at > killed_at and b.states == ["running", "running"]]
    assert back, "the replacement never ran"
    settled = back[0].at + CHANGE_DELAY_S + SAMPLER_LAG_S
    for at in (settled, plan.start_at + 12.0, plan.start_at + 13.5):
        assert (vus_at(beats, 0, at), vus_at(beats, 1, at)) == (20, 20), at - plan.start_at
    # Never more than the target: the replacement waited for its epoch before taking load.
    # (Around an epoch's start the two workers' beats, 0.25 s apart, may show both sides.)
    changes = [plan.start_at + e.at for e in Membership.from_json(client_for(redis).get(keys.membership)).epochs]
    assert len(changes) == 2  # lost, back
    running = [b for b in beats if b.at > alone and all(abs(b.at - t) > SAMPLER_LAG_S for t in changes)]
    assert max(fleet_vus(beats, 2, b.at) for b in running) <= 40


def test_kubeload_run_completes_and_counts_a_killed_process(kubeload_bin: str, tmp_path: Path) -> None:
    """`kubeload run` with 2 workers x 2 processes; one VU process SIGKILLed mid-run.
    Must hold: exit 0, the summary counts the failed worker and the lost process, the load is
    kept (20 VUs with a short think time: the request rate one interval after the kill is the
    rate before it), and nothing of the run is left running."""
    with http_target() as target:
        path = manifest(tmp_path, "fault-kill", target.url,
                        {"executor": "constant-vus", "vus": 20, "duration": "12s", "thinkTime": "20ms"})
        export = tmp_path / "summary.json"
        proc = subprocess.Popen([kubeload_bin, "run", str(path), "--plain", "--workers", "2", "--processes", "2",
                                 "--summary-export", str(export)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            worker = wait_for_worker("fault-kill", 1, timeout=20)
            time.sleep(2.0 + 2.0)  # the plan starts 2 s after the workers: measure 2 s into the load
            rate_before = request_rate(target, 2.0)
            os.kill(children(worker)[0], signal.SIGKILL)
            time.sleep(INTERVAL_S + 0.5)  # one interval for the takeover
            rate_after = request_rate(target, 2.0)
            out, err = proc.communicate(timeout=60)
        finally:
            stop_process(proc)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    summary = json.loads(export.read_text())
    assert summary["workers"] == {"planned": 2, "failed": 1, "processesLost": 1}
    assert "worker-1 exited with code 1" in out + err
    print(f"request rate before the kill {rate_before:.0f}/s, after the takeover {rate_after:.0f}/s")
    assert rate_after >= 0.85 * rate_before, (rate_before, rate_after)
    assert summary["metrics"]["http_reqs"]["count"] > 0
    assert processes_of_run("fault-kill") == []


def request_rate(target: Any, seconds: float) -> float:
    """Requests per second the target served over the next `seconds`."""
    count, start = target.stats()["requests"], time.monotonic()
    time.sleep(seconds)
    return (target.stats()["requests"] - count) / (time.monotonic() - start)


def wait_for_worker(name: str, index: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in processes_of_run(name):
            if f"worker --index {index} " in command_line(pid) and len(children(pid)) >= 1:
                return pid
        time.sleep(0.1)
    raise AssertionError(f"worker {index} of {name} never started")
