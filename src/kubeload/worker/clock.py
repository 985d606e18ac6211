"""The plan's clock: seconds since the plan's start, on the process's monotonic clock.

The plan's start is an epoch time (the one clock all pods share); within a process every
schedule runs on `time.perf_counter()`, which has sub-microsecond resolution and never jumps
(uvloop's `loop.time()` is cached per loop iteration at millisecond resolution).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["PlanClock"]


@dataclass(frozen=True, slots=True)
class PlanClock:
    start_at: float  # epoch seconds of the plan's start
    anchor: float  # the perf_counter() value at start_at

    @classmethod
    def starting_at(cls, start_at: float) -> PlanClock:
        return cls(start_at, time.perf_counter() + (start_at - time.time()))

    def elapsed(self) -> float:
        """Seconds since the plan's start (negative before it)."""
        return time.perf_counter() - self.anchor

    def epoch(self, elapsed: float) -> float:
        return self.start_at + elapsed

    def counter_at(self, elapsed: float) -> float:
        """The perf_counter() value at `elapsed`."""
        return self.anchor + elapsed
