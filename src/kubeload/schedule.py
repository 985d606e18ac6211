"""Stage math shared by the worker, the local runner and the operator: pure functions of time.

Everything here answers "what should be happening `elapsed` seconds after the plan's start?",
so every worker process, the operator and the local runner compute the same answer without
talking to each other. A worker that starts late simply evaluates the same functions at a
later time and joins the plan where it is.

Targets are piecewise linear between the stages' end points, as in k6: the value starts at
`startVUs` / `startRate` and moves linearly to each stage's `target` over its `duration`.

How the load is split. Closed model: a worker's VUs (`worker_vus`) are split evenly over its
processes (`process_vus`). Open model: worker `w` of `W`, process `p` of `P` owns the *slot*
`p * W + w` of `W * P` slots; iterations are numbered globally (0, 1, 2, ...) and slot `i`
starts those whose number is `i` modulo the slot count, so together the slots start every
planned iteration once. The interleaving makes slot shares agree with splitting per worker
first: `split(total, W * P, p * W + w) == split(split(total, W, w), P, p)`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .api.durations import parse_duration

if TYPE_CHECKING:
    from .api.models import Load, LoadTestSpec

__all__ = [
    "DEFAULT_ARRIVAL_VUS",
    "SCALING_FIXED",
    "SCALING_STAGES",
    "Slot",
    "StagePosition",
    "active_workers",
    "arrival_vus",
    "first_iteration",
    "iteration_start",
    "iterations_due",
    "iterations_started_by",
    "next_owned",
    "peak_target",
    "planned_iterations",
    "process_vus",
    "rate_per_second",
    "slot",
    "split",
    "stage_at",
    "target_at",
    "total_duration",
    "vus_at",
    "worker_vus",
    "workers_needed",
]

SCALING_FIXED = "fixed"  # every planned worker runs from start to end
SCALING_STAGES = "stages"  # the number of running workers follows the VU target
DEFAULT_ARRIVAL_VUS = 100  # k6's spirit: some VUs when neither preAllocatedVUs nor maxVUs is set
# Tolerance for float noise when a linear ramp lands exactly on an integer (2.9999999 -> 3).
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class StagePosition:
    """Where the plan is: stage `index` (0-based) of `count`, and that stage's bounds."""

    index: int
    count: int
    name: str
    start: float  # seconds since the plan's start
    end: float
    target: int  # the stage's end target (VUs or iterations per timeUnit)

    @property
    def progress(self) -> str:
        """`2/3 ramp-up`, as `kubectl get lt` shows it."""
        return f"{self.index + 1}/{self.count} {self.name}"


@dataclass(frozen=True, slots=True)
class Slot:
    """A process's place among all processes of the active workers."""

    index: int
    count: int


def _breakpoints(load: Load) -> list[tuple[float, float]]:
    """The piecewise-linear target as (time, value) points, the first at time 0."""
    if load.executor == "constant-vus":
        value = float(load.vus or 0)
        return [(0.0, value), (parse_duration(load.duration or "0s"), value)]
    if load.executor == "constant-arrival-rate":
        value = float(load.rate or 0)
        return [(0.0, value), (parse_duration(load.duration or "0s"), value)]
    start = float(load.start_rate if load.executor == "ramping-arrival-rate" else load.start_vus)
    points = [(0.0, start)]
    clock = 0.0
    for stage in load.stages:
        clock += parse_duration(stage.duration)
        points.append((clock, float(stage.target)))
    return points


def total_duration(load: Load) -> float:
    """Seconds from the plan's start to its end (gracefulStop not included)."""
    return _breakpoints(load)[-1][0]


def _segment(points: list[tuple[float, float]], elapsed: float) -> int:
    """Index `i` of the segment points[i] -> points[i + 1] that holds `elapsed` (clamped)."""
    last = len(points) - 2
    for i in range(last + 1):
        if elapsed < points[i + 1][0]:
            return i
    return max(last, 0)


def _interpolate(points: list[tuple[float, float]], elapsed: float) -> float:
    if len(points) == 1:
        return points[0][1]
    elapsed = min(max(elapsed, 0.0), points[-1][0])
    i = _segment(points, elapsed)
    (t0, v0), (t1, v1) = points[i], points[i + 1]
    if t1 <= t0:
        return v1
    return v0 + (v1 - v0) * (elapsed - t0) / (t1 - t0)


def target_at(load: Load, elapsed: float) -> float:
    """The target (VUs, or iterations per `timeUnit`) at `elapsed`, linear within a stage.

    Before the start it is the start value; after the end it stays at the last target.
    """
    return _interpolate(_breakpoints(load), elapsed)


def vus_at(load: Load, elapsed: float) -> int:
    """Whole VUs at `elapsed` for the closed model (arrival-rate executors: 0).

    As in k6, a VU is added when the ramp *reaches* the next integer and retired when it
    reaches the one below: floor on the way up, ceil on the way down.
    """
    if load.is_arrival_rate:
        return 0
    points = _breakpoints(load)
    value = _interpolate(points, elapsed)
    if len(points) > 1:
        i = _segment(points, min(max(elapsed, 0.0), points[-1][0]))
        if points[i + 1][1] < points[i][1]:
            return max(0, math.ceil(value - _EPSILON))
    return max(0, math.floor(value + _EPSILON))


def stage_at(load: Load, elapsed: float) -> StagePosition:
    """The stage running at `elapsed` (clamped to the plan: the first before, the last after)."""
    points = _breakpoints(load)
    i = _segment(points, min(max(elapsed, 0.0), points[-1][0]))
    if load.executor.startswith("ramping"):
        stage = load.stages[i]
        name = stage.name or f"stage-{i + 1}"
        count = len(load.stages)
    else:
        name, count = load.executor, 1
    return StagePosition(i, count, name, points[i][0], points[i + 1][0], int(points[i + 1][1]))


def peak_target(load: Load, start: float, end: float) -> float:
    """The highest target over [start, end]: closed model in whole VUs, open model as a rate."""
    points = _breakpoints(load)
    start = max(start, 0.0)
    end = max(end, start)
    probes = [start, end, *(t for t, _ in points if start < t < end)]
    # A ramp's integer VU count is monotone within a stage, so probing the window's ends and
    # the stage boundaries inside it finds the peak.
    if load.is_arrival_rate:
        return max(_interpolate(points, t) for t in probes)
    inside = [t - _EPSILON for t, _ in points if start < t <= end]
    return float(max(vus_at(load, t) for t in (*probes, *inside)))


def split(total: int, parts: int, index: int) -> int:
    """Share `index` of `total` split into `parts` whole shares; the first ones get the remainder.

    `sum(split(total, parts, i) for i in range(parts)) == total` for any total >= 0.
    """
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    if not 0 <= index < parts:
        return 0
    quotient, remainder = divmod(total, parts)
    return quotient + (1 if index < remainder else 0)


def slot(worker: int, workers: int, process: int, processes: int) -> Slot:
    """The global slot of process `process` of worker `worker` (see the module docstring)."""
    if not (0 <= worker < workers and 0 <= process < processes):
        raise ValueError(f"worker {worker} of {workers}, process {process} of {processes}: out of range")
    return Slot(process * workers + worker, workers * processes)


def arrival_vus(load: Load) -> tuple[int, int]:
    """(preAllocatedVUs, maxVUs) of an arrival-rate load, defaults applied."""
    maximum = load.max_vus or load.pre_allocated_vus or DEFAULT_ARRIVAL_VUS
    pre = load.pre_allocated_vus if load.pre_allocated_vus is not None else maximum
    return min(pre, maximum), maximum


def workers_needed(spec: LoadTestSpec) -> int:
    """Workers the plan is made for: enough for the peak VUs (or maxVUs), capped by maxWorkers."""
    load, per_worker = spec.load, spec.workers.vus_per_worker
    vus = arrival_vus(load)[1] if load.is_arrival_rate else int(peak_target(load, 0.0, total_duration(load)))
    return min(spec.workers.max_workers, max(1, math.ceil(vus / per_worker)))


def active_workers(workers: int, scaling: str, spec: LoadTestSpec, elapsed: float,
                   lead_s: float = 0.0) -> int:
    """How many of the plan's `workers` run at `elapsed`.

    With scaling `stages` (closed model only) it is the fewest workers that hold the peak
    target of [elapsed, elapsed + lead_s] at `vusPerWorker` each: the operator passes the pod
    start-up time as `lead_s` so pods exist before they get load, the workers pass 0 to
    split the current target. Open-model runs keep all workers: their VU pool is fixed.
    """
    if scaling != SCALING_STAGES or spec.load.is_arrival_rate:
        return max(1, workers)
    peak = peak_target(spec.load, elapsed, elapsed + lead_s)
    return min(max(1, workers), max(1, math.ceil(peak / spec.workers.vus_per_worker)))


def worker_vus(spec: LoadTestSpec, workers: int, scaling: str, worker: int, elapsed: float) -> int:
    """VUs worker `worker` runs at `elapsed` (closed model).

    `fixed`: the VUs are split evenly over all workers. `stages`: workers fill up in index
    order, `vusPerWorker` each, so the first `active_workers()` hold all the VUs and one more
    VU in the plan changes exactly one worker by one (an even split would reshuffle every
    worker whenever the active count changes). Past `maxWorkers` x `vusPerWorker` the VUs are
    split evenly again.
    """
    total = vus_at(spec.load, elapsed)
    workers = max(1, workers)
    per_worker = spec.workers.vus_per_worker
    if scaling == SCALING_STAGES and total <= workers * per_worker:
        return min(per_worker, max(0, total - worker * per_worker))
    return split(total, workers, worker)


def process_vus(spec: LoadTestSpec, workers: int, scaling: str, *, worker: int,
                processes: int, process: int, elapsed: float) -> int:
    """VUs process `process` of worker `worker` runs at `elapsed` (closed model): the worker's
    share split evenly over its processes."""
    return split(worker_vus(spec, workers, scaling, worker, elapsed), processes, process)


def rate_per_second(load: Load, elapsed: float) -> float:
    """Iterations started per second at `elapsed` (open model)."""
    return target_at(load, elapsed) / parse_duration(load.time_unit)


def _rate_points(load: Load) -> list[tuple[float, float]]:
    unit = parse_duration(load.time_unit)
    return [(t, v / unit) for t, v in _breakpoints(load)]


def iterations_started_by(load: Load, elapsed: float) -> float:
    """Planned iterations (fractional) started in [0, elapsed): the integral of the rate."""
    points = _rate_points(load)
    elapsed = min(max(elapsed, 0.0), points[-1][0])
    total = 0.0
    for (t0, r0), (t1, r1) in itertools.pairwise(points):
        if elapsed <= t0:
            break
        upto = min(elapsed, t1)
        width = upto - t0
        rate_at_upto = r0 + (r1 - r0) * width / (t1 - t0) if t1 > t0 else r1
        total += (r0 + rate_at_upto) * width / 2
    return total


def planned_iterations(load: Load) -> int:
    """Iterations the whole plan starts: those numbered 0, 1, ... whose start is before the end."""
    return math.ceil(iterations_started_by(load, total_duration(load)) - _EPSILON)


def iteration_start(load: Load, number: int) -> float | None:
    """Seconds after the start at which global iteration `number` (0-based) starts, or None
    when the plan ends first. Iteration k starts when the integral of the rate reaches k."""
    points = _rate_points(load)
    done = 0.0
    for (t0, r0), (t1, r1) in itertools.pairwise(points):
        width = t1 - t0
        if width <= 0:
            continue
        in_segment = (r0 + r1) * width / 2
        if number < done + in_segment - _EPSILON or (number <= done + _EPSILON and r0 > 0):
            # Solve done + r0*x + (r1 - r0)/(2*width) * x^2 = number for x in [0, width],
            # in the form that stays exact when the rate is flat (a == 0).
            need = max(number - done, 0.0)
            a = (r1 - r0) / (2 * width)
            root = math.sqrt(max(r0 * r0 + 4 * a * need, 0.0))
            if r0 + root <= 0:
                return t0
            return t0 + min(width, 2 * need / (r0 + root))
        done += in_segment
    return None


def first_iteration(load: Load, place: Slot, elapsed: float) -> int:
    """The first iteration number slot `place` starts when it begins at `elapsed`.

    0-based iteration numbers due before `elapsed` belong to the past (a late worker skips
    them rather than bursting to catch up); among the rest, the slot's are `place.index`
    modulo `place.count`.
    """
    return next_owned(iterations_due(load, elapsed), place)


def next_owned(number: int, place: Slot) -> int:
    """The first iteration number from `number` on that slot `place` starts."""
    return number + (place.index - number) % place.count


def iterations_due(load: Load, elapsed: float) -> int:
    """The number of the first iteration that starts at or after `elapsed`: the ones before it
    are due before `elapsed`."""
    return max(0, math.ceil(iterations_started_by(load, elapsed) - _EPSILON)) if elapsed > 0 else 0
