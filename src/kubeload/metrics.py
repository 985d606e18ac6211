"""Worker metrics on the wire and their exact merge: the reader side of `RunKeys.metrics`.

Every worker process appends one *delta* per metrics interval to the run's metrics stream: the
counters of that interval and, per request name, an HdrHistogram of `http_req_duration` in
microseconds. Histograms and counters add up exactly, so a reader that merges every delta gets
the fleet's true percentiles; percentiles are never averaged.

The delta (the JSON in the stream entry's `payload` field), metric names as in k6::

    {"v": 1, "worker": "0", "process": 1, "instance": "9f2c...", "seq": 7,
     "interval": 6, "start": 1700000012.0, "end": 1700000014.0,   # epoch seconds
     "vus": 25, "vus_max": 30, "iterations": 5120, "dropped_iterations": 0,
     "requests": {"<name>": {"reqs": 5120, "failed": 3, "status": {"200": 5117, "503": 3},
                             "failures": {"status": 3}, "sent": 420000, "received": 800000,
                             "sum_us": 51200000, "min_us": 800, "max_us": 93000,
                             "hist": "<base64 HdrHistogram>"}},
     "counters": {"token_unauthorized": 0, ...},      # increases within the interval
     "gauges": {"token_version": 4, ...}}              # the process's value at the end

`interval` is the index of the metrics interval since the plan's start, the same for every
process, so the reader can line up a fleet-wide time series. `instance` and `seq` identify a
delta: a delta sent twice (its first XADD's reply was lost) is counted once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = [
    "DELTA_VERSION",
    "HISTOGRAM_MAX_US",
    "HISTOGRAM_MIN_US",
    "HISTOGRAM_SIGNIFICANT_DIGITS",
    "IntervalPoint",
    "MetricsTotals",
    "RequestTotals",
    "new_histogram",
    "parse_entry",
    "read_deltas",
]

DELTA_VERSION = 1
HISTOGRAM_MIN_US = 1
HISTOGRAM_MAX_US = 60_000_000  # 60 s; longer durations are recorded as 60 s
HISTOGRAM_SIGNIFICANT_DIGITS = 3
SUMMARY_PERCENTILES = (90.0, 95.0, 99.0)


def new_histogram() -> HdrHistogram:
    """An empty duration histogram: 1 µs to 60 s, 3 significant digits."""
    return HdrHistogram(HISTOGRAM_MIN_US, HISTOGRAM_MAX_US, HISTOGRAM_SIGNIFICANT_DIGITS)


def _percentile_ms(histogram: HdrHistogram, percentile: float) -> float:
    """The duration at `percentile` of `histogram` (µs) in milliseconds; 0.0 when it is empty."""
    if histogram.get_total_count() == 0:
        return 0.0
    return float(histogram.get_value_at_percentile(percentile)) / 1000.0


def _add_counts(into: dict[str, int], more: Mapping[str, Any]) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + int(value)


@dataclass
class RequestTotals:
    """Merged numbers of one request name (or of all requests)."""

    reqs: int = 0
    failed: int = 0
    status: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    received: int = 0
    sum_us: int = 0
    min_us: int | None = None
    max_us: int | None = None
    histogram: HdrHistogram = field(default_factory=new_histogram)

    def add(self, part: Mapping[str, Any], histogram: HdrHistogram | None) -> None:
        self.reqs += int(part.get("reqs", 0))
        self.failed += int(part.get("failed", 0))
        _add_counts(self.status, part.get("status", {}))
        _add_counts(self.failures, part.get("failures", {}))
        self.sent += int(part.get("sent", 0))
        self.received += int(part.get("received", 0))
        self.sum_us += int(part.get("sum_us", 0))
        if part.get("min_us") is not None:
            low = int(part["min_us"])
            self.min_us = low if self.min_us is None else min(self.min_us, low)
        if part.get("max_us") is not None:
            high = int(part["max_us"])
            self.max_us = high if self.max_us is None else max(self.max_us, high)
        if histogram is not None:
            self.histogram.add(histogram)

    def percentile_ms(self, percentile: float) -> float:
        return _percentile_ms(self.histogram, percentile)

    def duration_values(self, percentiles: Iterable[float] = SUMMARY_PERCENTILES) -> dict[str, float]:
        """k6's trend aggregations of http_req_duration, in milliseconds ({} without samples)."""
        timed = self.histogram.get_total_count()
        if timed == 0:
            return {}
        values = {
            "count": float(timed),
            # min, max and avg are exact (tracked beside the histogram), percentiles are not.
            "avg": self.sum_us / timed / 1000.0,
            "min": (self.min_us or 0) / 1000.0,
            "max": (self.max_us or 0) / 1000.0,
            "med": self.percentile_ms(50.0),
        }
        for pct in percentiles:
            values[f"p({pct:g})"] = self.percentile_ms(pct)
        return values


@dataclass
class IntervalPoint:
    """Fleet-wide numbers of one metrics interval."""

    interval: int
    start: float  # epoch seconds
    end: float
    reqs: int = 0
    failed: int = 0
    iterations: int = 0
    dropped_iterations: int = 0
    vus: int = 0  # summed over the processes that reported in this interval
    vus_max: int = 0
    processes: int = 0
    histogram: HdrHistogram = field(default_factory=new_histogram)

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)

    @property
    def rps(self) -> float:
        return self.reqs / self.seconds

    def percentile_ms(self, percentile: float) -> float:
        return _percentile_ms(self.histogram, percentile)

    def as_dict(self) -> dict[str, Any]:
        return {
            "interval": self.interval, "start": self.start, "end": self.end,
            "rps": round(self.rps, 3), "reqs": self.reqs, "errors": self.failed,
            "error_rate": self.failed / self.reqs if self.reqs else 0.0,
            "iterations": self.iterations, "dropped_iterations": self.dropped_iterations,
            "vus": self.vus, "vus_max": self.vus_max,
            "p50": self.percentile_ms(50), "p95": self.percentile_ms(95), "p99": self.percentile_ms(99),
        }


def parse_entry(fields: Mapping[bytes | str, bytes | str]) -> dict[str, Any]:
    """The delta of one metrics stream entry (its `payload` field)."""
    raw = fields.get(b"payload", fields.get("payload"))
    if raw is None:
        raise ValueError("metrics entry without a payload field")
    delta: dict[str, Any] = json.loads(raw)
    if delta.get("v") != DELTA_VERSION:
        raise ValueError(f"unsupported metrics delta version {delta.get('v')!r}")
    return delta


class MetricsTotals:
    """Everything merged so far: totals per request name, counters, a per-interval series.

    `values(metric, name)` has the shape `kubeload.judge.Lookup` expects, so thresholds are
    judged directly on it.
    """

    def __init__(self) -> None:
        self.by_name: dict[str, RequestTotals] = {}
        self.overall = RequestTotals()  # all request names together, kept beside `by_name`
        self.counters: dict[str, int] = {}
        self.iterations = 0
        self.dropped_iterations = 0
        self.intervals: dict[int, IntervalPoint] = {}
        self.first_start: float | None = None
        self.last_end: float | None = None
        self._seen: set[tuple[str, int]] = set()
        # The latest gauges of each process (instance): summed they are the fleet's current VUs.
        self._gauges: dict[str, tuple[int, int, int]] = {}  # instance -> (interval, vus, vus_max)
        self._other_gauges: dict[str, tuple[int, dict[str, float]]] = {}  # instance -> (interval, values)

    def add(self, delta: Mapping[str, Any]) -> bool:
        """Merge one delta; False (and nothing changes) when it was merged before."""
        identity = (str(delta.get("instance", "")), int(delta.get("seq", 0)))
        if identity in self._seen:
            return False
        self._seen.add(identity)
        start, end = float(delta["start"]), float(delta["end"])
        self.first_start = start if self.first_start is None else min(self.first_start, start)
        self.last_end = end if self.last_end is None else max(self.last_end, end)
        iterations, dropped = int(delta.get("iterations", 0)), int(delta.get("dropped_iterations", 0))
        self.iterations += iterations
        self.dropped_iterations += dropped
        _add_counts(self.counters, delta.get("counters", {}))

        index = int(delta["interval"])
        point = self.intervals.get(index)
        if point is None:
            point = self.intervals[index] = IntervalPoint(index, start, end)
        point.start, point.end = min(point.start, start), max(point.end, end)
        point.iterations += iterations
        point.dropped_iterations += dropped
        point.vus += int(delta.get("vus", 0))
        point.vus_max += int(delta.get("vus_max", 0))
        point.processes += 1
        instance = identity[0]
        latest = self._gauges.get(instance)
        if latest is None or latest[0] <= index:
            self._gauges[instance] = (index, int(delta.get("vus", 0)), int(delta.get("vus_max", 0)))
        others = delta.get("gauges") or {}
        if others and (instance not in self._other_gauges or self._other_gauges[instance][0] <= index):
            self._other_gauges[instance] = (index, {k: float(v) for k, v in others.items()})

        for name, part in delta.get("requests", {}).items():
            encoded = part.get("hist")
            histogram = HdrHistogram.decode(encoded) if encoded else None
            self.by_name.setdefault(name, RequestTotals()).add(part, histogram)
            self.overall.add(part, histogram)
            point.reqs += int(part.get("reqs", 0))
            point.failed += int(part.get("failed", 0))
            if histogram is not None:
                point.histogram.add(histogram)
        return True

    def add_all(self, deltas: Iterable[Mapping[str, Any]]) -> int:
        return sum(1 for delta in deltas if self.add(delta))

    # -- reading -------------------------------------------------------------------------

    @property
    def seconds(self) -> float:
        """Time covered by the data (first interval start to last interval end)."""
        if self.first_start is None or self.last_end is None:
            return 0.0
        return max(self.last_end - self.first_start, 1e-9)

    def requests(self, name: str | None = None) -> RequestTotals:
        """Totals of one request name, or of all requests when `name` is None.

        The totals of all requests are the live `overall` object: read it, do not change it.
        """
        if name is not None:
            return self.by_name.get(name, RequestTotals())
        return self.overall

    def gauge(self, name: str) -> dict[str, float]:
        """A per-process gauge (e.g. `token_version`) across the fleet's latest reports:
        {min, max, value (= max), processes}; {} when no process reports it."""
        values = [v[name] for _, v in self._other_gauges.values() if name in v]
        if not values:
            return {}
        return {"min": min(values), "max": max(values), "value": max(values), "processes": float(len(values))}

    @property
    def vus(self) -> int:
        """VUs of the latest interval each process reported, summed over the processes still
        reporting: one silent for two intervals (killed) no longer counts."""
        if not self._gauges:
            return 0
        newest = max(index for index, _, _ in self._gauges.values())
        return sum(vus for index, vus, _ in self._gauges.values() if index >= newest - 1)

    @property
    def vus_max(self) -> int:
        return sum(vus_max for _, _, vus_max in self._gauges.values())

    def values(self, metric: str, name: str | None = None,
               percentiles: Iterable[float] = SUMMARY_PERCENTILES) -> dict[str, float]:
        """k6 aggregations of one metric (optionally of one request name); {} without samples.

        Durations in milliseconds; `p(N)` for any N the caller asks for besides 90/95/99.
        """
        seconds = self.seconds

        def counted(count: int) -> dict[str, float]:
            return {"count": float(count), "rate": count / seconds if seconds else 0.0}

        if metric == "http_req_duration":
            return self.requests(name).duration_values(percentiles)
        if metric in ("http_reqs", "http_req_failed", "data_sent", "data_received"):
            totals = self.requests(name)
            if totals.reqs == 0 and metric != "data_sent":
                return {}
            if metric == "http_req_failed":
                return {"rate": totals.failed / totals.reqs, "passes": float(totals.failed),
                        "fails": float(totals.reqs - totals.failed)}
            count = {"http_reqs": totals.reqs, "data_sent": totals.sent,
                     "data_received": totals.received}[metric]
            return counted(count)
        if metric in ("iterations", "dropped_iterations"):
            count = self.iterations if metric == "iterations" else self.dropped_iterations
            if not self.intervals:
                return {}
            return counted(count)
        if metric in ("vus", "vus_max"):
            if not self.intervals:
                return {}
            series = [p.vus if metric == "vus" else p.vus_max for p in self.intervals.values()]
            return {"value": float(self.vus if metric == "vus" else self.vus_max),
                    "min": float(min(series)), "max": float(max(series))}
        if metric in self.counters:
            count = self.counters[metric]
            return counted(count)
        return {}

    def lookup(self, metric: str, name: str | None) -> Mapping[str, float]:
        """`kubeload.judge.Lookup`: asks for the percentiles a threshold may name on demand."""
        return _LazyValues(self, metric, name)

    def series(self) -> list[IntervalPoint]:
        """The fleet-wide time series, oldest interval first."""
        return [self.intervals[i] for i in sorted(self.intervals)]

    def summary(self) -> dict[str, Any]:
        """A k6-like summary: each metric's aggregations, overall and per request name."""
        metrics: dict[str, Any] = {}
        for metric in ("http_reqs", "http_req_failed", "http_req_duration", "iterations",
                       "dropped_iterations", "data_sent", "data_received", "vus", "vus_max"):
            values = self.values(metric)
            if values:
                metrics[metric] = _rounded(values)
        for counter in sorted(self.counters):
            metrics[counter] = _rounded(self.values(counter))
        gauge_names = sorted({name for _, values in self._other_gauges.values() for name in values})
        for gauge in gauge_names:
            metrics[gauge] = _rounded(self.gauge(gauge))
        per_name: dict[str, Any] = {}
        for name in sorted(self.by_name):
            totals = self.by_name[name]
            per_name[name] = {
                "http_reqs": _rounded(self.values("http_reqs", name)),
                "http_req_failed": _rounded(self.values("http_req_failed", name)),
                "http_req_duration": _rounded(self.values("http_req_duration", name)),
                "status": dict(sorted(totals.status.items())),
                "failures": dict(sorted(totals.failures.items())),
            }
        return {"seconds": round(self.seconds, 3), "metrics": metrics, "requests": per_name}


class _LazyValues(Mapping[str, float]):
    """Aggregations computed on first access, so `p(99.9)` works without precomputing it."""

    def __init__(self, totals: MetricsTotals, metric: str, name: str | None) -> None:
        self._totals, self._metric, self._name = totals, metric, name
        self._base = totals.values(metric, name)

    def __getitem__(self, key: str) -> float:
        if key in self._base:
            return self._base[key]
        if self._base and self._metric == "http_req_duration" and key.startswith("p("):
            return self._totals.requests(self._name).percentile_ms(float(key[2:-1]))
        raise KeyError(key)

    def __iter__(self) -> Any:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {key: (round(value, 3) if math.isfinite(value) else value) for key, value in values.items()}


async def read_deltas(client: Any, stream: str, after: str = "0-0",
                      count: int = 1000) -> tuple[list[dict[str, Any]], str]:
    """Deltas appended to `stream` after the entry id `after`, and the id to continue from.

    `client` is a `redis.asyncio.Redis`. Entries that do not parse are skipped (a newer
    worker's format must not stop an older reader).
    """
    deltas: list[dict[str, Any]] = []
    while True:
        entries = await client.xrange(stream, min=f"({after}", max="+", count=count)
        for entry_id, fields in entries:
            after = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            try:
                deltas.append(parse_entry(fields))
            except ValueError:
                continue
        if len(entries) < count:
            return deltas, after
