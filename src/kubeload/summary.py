"""The summary document of a finished (or running) test, shaped like k6's summary export.

One builder for both places it lands: `kubeload run --summary-export` and the operator's
`<name>-summary` ConfigMap. `kubeload.summary_text` documents the shape and renders it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .judge import ThresholdVerdict, Verdict
from .metrics import MetricsTotals

__all__ = ["build_summary", "timeline", "token_section"]

_PER_NAME_METRICS = ("http_reqs", "http_req_failed", "http_req_duration")


def token_section(stats: Mapping[str, str], totals: MetricsTotals) -> dict[str, Any]:
    """Token numbers from the refresher's stats hash and the workers' counters."""

    def number(key: str) -> int:
        try:
            return int(float(stats.get(key, "0")))
        except ValueError:
            return 0

    return {
        "refreshes": number("refreshes"),
        "failures": number("failures"),
        "forced": number("forced"),
        "version": number("version"),
        "unauthorized": int(totals.counters.get("token_unauthorized", 0)),
        "failovers": number("failovers"),
        "state": stats.get("state", ""),
    }


def _summed(per_name: Mapping[str, Mapping[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for values in per_name.values():
        for item, count in values.get(key, {}).items():
            out[item] = out.get(item, 0) + int(count)
    return dict(sorted(out.items()))


def build_summary(
    raw: Mapping[str, Any],
    verdicts: Sequence[ThresholdVerdict],
    verdict: Verdict,
    token: Mapping[str, Any] | None = None,
    *,
    reason: str = "",
    workers: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The summary document from `MetricsTotals.summary()` (`raw`), the verdicts, token numbers
    and `workers` ({planned, failed, processesLost})."""
    metrics: dict[str, Any] = dict(raw.get("metrics", {}))
    metrics.pop("vus", None)  # a gauge of the moment; vus_max is the summary's number
    requests: Mapping[str, Mapping[str, Any]] = raw.get("requests", {})
    for name, per_name in requests.items():
        for metric in _PER_NAME_METRICS:
            if per_name.get(metric):
                metrics[f"{metric}{{name:{name}}}"] = per_name[metric]
    thresholds: dict[str, dict[str, dict[str, Any]]] = {}
    for v in verdicts:
        thresholds.setdefault(v.metric, {})[v.condition] = {"ok": v.ok, "observed": v.observed}
    return {
        "metrics": metrics,
        "thresholds": thresholds,
        "token": dict(token) if token is not None else None,
        "workers": dict(workers) if workers is not None else None,
        "errors": _summed(requests, "failures"),
        "status": _summed(requests, "status"),
        "duration": raw.get("seconds", 0.0),
        "verdict": verdict,
        "reason": reason,
    }


def timeline(totals: MetricsTotals, token_versions: Mapping[int, int] | None = None) -> list[dict[str, float]]:
    """The per-interval series for plots: seconds since the first interval, rps, vus, latency."""
    series = totals.series()
    if not series:
        return []
    origin = series[0].start
    points = []
    for point in series:
        row = point.as_dict()
        points.append({
            "t": round(point.end - origin, 3),
            "rps": row["rps"],
            "vus": float(row["vus"]),
            "p50": row["p50"],
            "p95": row["p95"],
            "p99": row["p99"],
            "errors": round(point.failed / point.seconds, 3),
            "tokenVersion": float((token_versions or {}).get(point.interval, 0)),
        })
    return points
