"""The merged metrics of one run, as the operator keeps them between reconciles.

The metrics stream in Redis is the durable log: every worker delta is an entry, and merging is
exact and idempotent (`MetricsTotals` drops a delta it has seen). The operator keeps the
merged totals in memory and the id of the last entry read; after a restart it replays the
stream from the start, so no interval is lost and none is counted twice. The checkpoint in
the summary ConfigMap (`lastId`, `entries`) lets a restarted operator notice when the
stream was trimmed below what it had read (it then says so in an Event).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..metrics import MetricsTotals
from .model import MetricsView

__all__ = ["FleetMetrics", "view"]


@dataclass
class FleetMetrics:
    totals: MetricsTotals = field(default_factory=MetricsTotals)
    last_id: str = "0-0"
    entries: int = 0  # deltas merged

    def checkpoint(self) -> dict[str, Any]:
        return {"lastId": self.last_id, "entries": self.entries}


def _recent_rps(totals: MetricsTotals) -> float:
    """Requests per second of the newest complete interval (the last one may still be
    missing some processes' deltas)."""
    series = totals.series()
    if not series:
        return 0.0
    point = series[-2] if len(series) >= 2 else series[-1]
    return point.rps


def view(fleet: FleetMetrics) -> MetricsView:
    """What the planner needs from the merged totals."""
    totals = fleet.totals
    everything = totals.requests(None)
    duration = everything.duration_values((50.0, 90.0, 95.0, 99.0))
    seconds = totals.seconds
    return MetricsView(
        requests=everything.reqs,
        failed_requests=everything.failed,
        iterations=totals.iterations,
        dropped_iterations=totals.dropped_iterations,
        rps=_recent_rps(totals),
        average_rps=everything.reqs / seconds if seconds else 0.0,
        p50=duration.get("p(50)", 0.0),
        p90=duration.get("p(90)", 0.0),
        p95=duration.get("p(95)", 0.0),
        p99=duration.get("p(99)", 0.0),
        max=duration.get("max", 0.0),
        metrics=totals.summary(),
        lookup=totals.lookup,
    )
