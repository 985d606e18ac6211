"""The open model (constant-arrival-rate, ramping-arrival-rate): iterations start on a schedule.

The schedule is the plan's global numbering of iterations (`kubeload.schedule`); this process
starts the numbers of its slot, each at its planned time, whatever the responses do. When the
run's membership changes (`kubeload.membership`: a process was lost or came back) the numbers
starting from the change on are dealt over the new set of live slots. An
iteration is handed to an idle VU; with none idle a new VU is allocated up to the process's
share of `maxVUs`; with all of those busy the iteration is dropped and counted in
`dropped_iterations`. Each iteration's latency is measured from its planned start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ..api.models import Load
from ..membership import MembershipView
from ..schedule import iteration_start, iterations_due, next_owned, split
from .clock import PlanClock
from .iteration import IterationGuard

__all__ = ["OpenModel"]

# uvloop's timers have millisecond resolution: iterations due within this much of now are
# started in the same wake-up (their latency still counts from their own planned time).
_BATCH_S = 0.001
# Longest sleep between two checks of `stop`, so a low rate still stops promptly.
_MAX_SLEEP_S = 0.05
_YIELD_EVERY = 64
# Iterations due at most this long before the process began are still started (late, and
# measured from their planned time): start-up jitter must not lose the first iterations.
# Older ones are left out: they belonged to the time this worker was not there yet.
CATCH_UP_S = 1.0


class OpenModel:
    """Starts this slot's iterations of the plan on time, with a bounded pool of VUs."""

    def __init__(
        self,
        run_iteration: Callable[[float], Awaitable[None]],
        *,
        load: Load,
        clock: PlanClock,
        view: MembershipView,
        pre_allocated: int,
        max_vus: int,
        on_dropped: Callable[[], None],
        on_interrupted: Callable[[], None] = lambda: None,
    ) -> None:
        """`pre_allocated` and `max_vus` are the plan's; this slot gets its split of them."""
        self._run_iteration = run_iteration
        self._load = load
        self._clock = clock
        self._view = view
        self._plan_pre_allocated = min(pre_allocated, max_vus)
        self._plan_max_vus = max_vus
        self._max_vus = 0
        self._stride = 1
        self._on_dropped = on_dropped
        self._guard = IterationGuard(on_interrupted)
        self._idle: list[asyncio.Future[float | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.busy = 0
        self.started = 0

    @property
    def vus(self) -> int:
        """VUs running an iteration now."""
        return self.busy

    @property
    def vus_max(self) -> int:
        """VUs allocated (idle or busy)."""
        return len(self._tasks)

    def _aim(self, considered: int) -> tuple[int | None, float | None]:
        """(the first number from `considered` on that this slot starts, when the ownership
        next changes); the number is None while this slot is not live."""
        start = iteration_start(self._load, considered)
        at = self._clock.elapsed() if start is None else start
        change = self._view.next_change(at)
        place = self._view.place_at(at)
        if place is None:
            return None, change
        self._stride = place.count
        self._max_vus = split(self._plan_max_vus, place.count, place.index)
        return next_owned(considered, place), change

    async def run(self, stop: asyncio.Event) -> None:
        """Start this slot's iterations until the plan's last one or `stop`."""
        place = self._view.place_at(max(self._clock.elapsed(), 0.0))
        if place is not None:
            for _ in range(split(self._plan_pre_allocated, place.count, place.index)):
                self._allocate(None)
        # Every number below `considered` is started or belongs to another slot. The catch-up
        # never reaches back past a membership change: a process joining then (a replacement)
        # would start again what the one it replaces started.
        now = self._clock.elapsed()
        changed = self._view.last_change(now)
        since = now - CATCH_UP_S if changed is None else max(now - CATCH_UP_S, changed)
        considered = iterations_due(self._load, since)
        seen = -1
        number: int | None = None
        change: float | None = None
        burst = 0
        while not stop.is_set():
            if seen != self._view.version:
                seen = self._view.version
                number, change = self._aim(considered)
            if number is None:  # not live: wait for the next change, or the plan's end
                now = self._clock.elapsed()
                if change is not None and now >= change:
                    considered, seen = max(considered, iterations_due(self._load, change)), -1
                    continue
                considered = max(considered, iterations_due(self._load, now))
                if iteration_start(self._load, considered) is None:
                    break
                await asyncio.sleep(_MAX_SLEEP_S)
                continue
            start = iteration_start(self._load, number)
            if start is None:
                break
            if change is not None and start >= change:  # the numbers from here on are dealt anew
                considered, seen = max(considered, iterations_due(self._load, change)), -1
                continue
            due = self._clock.counter_at(start)
            delay = due - time.perf_counter()
            if delay > _BATCH_S:
                burst = 0
                await asyncio.sleep(min(delay, _MAX_SLEEP_S))
                continue
            self._dispatch(due)
            considered = number + 1
            number += self._stride
            burst += 1
            if burst % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # behind schedule: let the VUs run between bursts

    def _dispatch(self, due: float) -> None:
        self.started += 1
        if self._idle:
            self._idle.pop().set_result(due)
        elif len(self._tasks) < self._max_vus:
            self._allocate(due)
        else:
            self.started -= 1
            self._on_dropped()

    def _allocate(self, first: float | None) -> None:
        task = asyncio.create_task(self._vu(first))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _vu(self, job: float | None) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if job is None:
                waiter: asyncio.Future[float | None] = loop.create_future()
                self._idle.append(waiter)
                job = await waiter
                if job is None:
                    return
            self.busy += 1
            try:
                await self._guard.run(self._run_iteration(job))
            finally:
                self.busy -= 1
            job = None

    async def drain(self, graceful_stop_s: float) -> None:
        """Start nothing more; give in-flight iterations `graceful_stop_s`, then interrupt."""
        self._stopping = True
        for waiter in self._idle:
            if not waiter.done():
                waiter.set_result(None)
        self._idle.clear()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=graceful_stop_s + 0.5)
        for task in set(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
