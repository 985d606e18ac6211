"""The hot-path side of the metrics: record each request, hand out one delta per interval.

`record()` runs once per request, so it only bumps integers and records one histogram value.
`take_delta()` swaps in fresh counters and encodes the histograms (about 0.3 ms each), once
per metrics interval. The delta's format is documented in `kubeload.metrics`.
"""

from __future__ import annotations

import os
from typing import Any

from hdrh.histogram import HdrHistogram

from ..metrics import DELTA_VERSION, HISTOGRAM_MAX_US, HISTOGRAM_MIN_US, new_histogram

__all__ = ["Recorder", "RequestStats"]


class RequestStats:
    """Counters and the duration histogram of one request name within one interval."""

    __slots__ = ("failed", "failures", "histogram", "max_us", "min_us", "received", "reqs", "sent",
                 "status", "sum_us")

    def __init__(self) -> None:
        self.reqs = 0
        self.failed = 0
        self.status: dict[int, int] = {}
        self.failures: dict[str, int] = {}
        self.sent = 0
        self.received = 0
        self.sum_us = 0
        self.min_us = HISTOGRAM_MAX_US
        self.max_us = 0
        self.histogram: HdrHistogram = new_histogram()

    def record(self, status: int, duration_us: int, sent: int, received: int, failure: str) -> None:
        """One request: `status` 0 when no response came, `failure` "" when it succeeded."""
        self.reqs += 1
        self.status[status] = self.status.get(status, 0) + 1
        if failure:
            self.failed += 1
            self.failures[failure] = self.failures.get(failure, 0) + 1
        self.sent += sent
        self.received += received
        # Clamp to the histogram's range: hdrh silently drops values outside it.
        if duration_us < HISTOGRAM_MIN_US:
            duration_us = HISTOGRAM_MIN_US
        elif duration_us > HISTOGRAM_MAX_US:
            duration_us = HISTOGRAM_MAX_US
        self.sum_us += duration_us
        if duration_us < self.min_us:  # noqa: PLR1730 - a branch is cheaper than min() per request
            self.min_us = duration_us
        if duration_us > self.max_us:  # noqa: PLR1730
            self.max_us = duration_us
        self.histogram.record_value(duration_us)

    def as_delta(self) -> dict[str, Any]:
        return {
            "reqs": self.reqs,
            "failed": self.failed,
            "status": {str(code): count for code, count in self.status.items()},
            "failures": dict(self.failures),
            "sent": self.sent,
            "received": self.received,
            "sum_us": self.sum_us,
            "min_us": self.min_us if self.reqs else None,
            "max_us": self.max_us if self.reqs else None,
            "hist": self.histogram.encode().decode("ascii") if self.reqs else "",
        }


class Recorder:
    """All metrics of one worker process, as deltas per interval."""

    def __init__(self, worker: str, process: int) -> None:
        self.worker = worker
        self.process = process
        # A fresh id per process start: the reader deduplicates on (instance, seq), and a
        # restarted pod must not be mistaken for a replay of its predecessor.
        self.instance = f"{worker}/{process}/{os.getpid()}/{os.urandom(4).hex()}"
        self.seq = 0
        self.by_name: dict[str, RequestStats] = {}
        self.iterations = 0
        self.dropped_iterations = 0
        self.counters: dict[str, int] = {}

    def stats_for(self, name: str) -> RequestStats:
        """The stats object of a request name; callers keep it to skip a lookup per request."""
        stats = self.by_name.get(name)
        if stats is None:
            stats = self.by_name[name] = RequestStats()
        return stats

    def count(self, counter: str, increment: int = 1) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + increment

    def take_delta(self, *, interval: int, start: float, end: float, vus: int, vus_max: int,
                   extra_counters: dict[str, int] | None = None,
                   gauges: dict[str, float] | None = None) -> dict[str, Any]:
        """The interval's delta; counters restart from zero (the stats objects are reused)."""
        requests = {name: stats.as_delta() for name, stats in self.by_name.items() if stats.reqs}
        counters = dict(self.counters)
        for key, value in (extra_counters or {}).items():
            counters[key] = counters.get(key, 0) + value
        delta = {
            "v": DELTA_VERSION,
            "worker": self.worker,
            "process": self.process,
            "instance": self.instance,
            "seq": self.seq,
            "interval": interval,
            "start": start,
            "end": end,
            "vus": vus,
            "vus_max": vus_max,
            "iterations": self.iterations,
            "dropped_iterations": self.dropped_iterations,
            "requests": requests,
            "counters": counters,
            "gauges": dict(gauges or {}),
        }
        self.seq += 1
        for stats in self.by_name.values():
            if stats.reqs:
                # Reset in place: VUs hold references to these objects.
                histogram = stats.histogram
                stats.__init__()  # type: ignore[misc]
                histogram.reset()
                stats.histogram = histogram
        self.iterations = 0
        self.dropped_iterations = 0
        self.counters = {}
        return delta
