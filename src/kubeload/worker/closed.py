"""The closed model (constant-vus, ramping-vus): VU coroutines that loop over iterations.

A controller evaluates the process's share of the plan every tick and starts or retires VUs to
match it. A retired VU starts no new iteration; one in the middle of an iteration has
`gracefulRampDown` to finish it before it is interrupted. At the end (or on stop) every VU
stops starting iterations and in-flight ones get `gracefulStop`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from .clock import PlanClock
from .iteration import IterationGuard

__all__ = ["ClosedModel"]

TICK_S = 0.05  # how often the VU count is matched to the plan; 50 ms keeps ramps smooth


class _Vu:
    __slots__ = ("busy", "retired", "task", "timer")

    def __init__(self) -> None:
        self.busy = False
        self.retired = False
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None


class ClosedModel:
    """Keeps `share(elapsed)` VUs running until the plan ends or `stop` is set."""

    def __init__(
        self,
        run_iteration: Callable[[], Awaitable[None]],
        *,
        share: Callable[[float], int],
        clock: PlanClock,
        think_s: float,
        ramp_down_s: float,
        on_interrupted: Callable[[], None] = lambda: None,
    ) -> None:
        self._run_iteration = run_iteration
        self._share = share
        self._clock = clock
        self._think_s = think_s
        self._ramp_down_s = ramp_down_s
        self._guard = IterationGuard(on_interrupted)
        self._active: list[_Vu] = []
        self._leaving: set[_Vu] = set()  # retired, finishing their iteration
        self.vus_max = 0

    @property
    def vus(self) -> int:
        """VUs that run iterations now (retired ones finishing their last are not counted)."""
        return len(self._active)

    async def run(self, until_elapsed: float, stop: asyncio.Event) -> None:
        """Follow the plan until `until_elapsed` (seconds since its start) or `stop`."""
        while not stop.is_set():
            elapsed = self._clock.elapsed()
            if elapsed >= until_elapsed:
                break
            self.resize(self._share(elapsed))
            # Wake at the next tick or at the end of the plan, whichever comes first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(TICK_S, max(until_elapsed - elapsed, 0.001)))

    def resize(self, wanted: int) -> None:
        while len(self._active) < wanted:
            self._start_vu()
        while len(self._active) > wanted:
            self._retire(self._active.pop(), self._ramp_down_s)

    async def drain(self, graceful_stop_s: float) -> None:
        """Stop starting iterations; give in-flight ones `graceful_stop_s`, then interrupt."""
        for vu in self._active:
            self._retire(vu, graceful_stop_s)
        self._active.clear()
        tasks = [vu.task for vu in self._leaving if vu.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=graceful_stop_s + 0.5)
        for vu in list(self._leaving):
            if vu.task is not None and not vu.task.done():
                vu.task.cancel()
        remaining = [vu.task for vu in self._leaving if vu.task is not None]
        if remaining:
            await asyncio.wait(remaining, timeout=1.0)

    def _start_vu(self) -> None:
        vu = _Vu()
        vu.task = asyncio.create_task(self._loop(vu))
        self._active.append(vu)
        self.vus_max = max(self.vus_max, len(self._active))

    def _retire(self, vu: _Vu, grace_s: float) -> None:
        vu.retired = True
        self._leaving.add(vu)
        if vu.task is None:
            return
        if not vu.busy:
            vu.task.cancel()  # between iterations (thinking): nothing to lose
        else:
            vu.timer = asyncio.get_running_loop().call_later(grace_s, vu.task.cancel)

    async def _loop(self, vu: _Vu) -> None:
        try:
            while not vu.retired:
                vu.busy = True
                try:
                    await self._guard.run(self._run_iteration())
                finally:
                    vu.busy = False
                if self._think_s > 0 and not vu.retired:
                    await asyncio.sleep(self._think_s)
        except asyncio.CancelledError:
            pass
        finally:
            if vu.timer is not None:
                vu.timer.cancel()
            self._leaving.discard(vu)
