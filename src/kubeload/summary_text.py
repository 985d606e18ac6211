"""The end-of-test summary as text, in the spirit of k6's, rendered from the summary document.

The summary document is the JSON `kubeload run --summary-export` writes and the operator keeps
in the `<name>-summary` ConfigMap, shaped like k6's summary export:

    {"metrics": {"http_reqs": {"count", "rate"}, "http_req_failed": {"rate", "passes", "fails"},
                 "http_req_duration": {"avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"},
                 "iterations": {"count", "rate"}, "dropped_iterations": {"count"},
                 "vus_max": {"value"}, "data_sent": {"count", "rate"}, "data_received": {...},
                 "http_req_duration{name:<request>}": {...}, "http_reqs{name:<request>}": {...}},
     "thresholds": {"<metric>": {"<condition>": {"ok": bool}}},
     "token": {"refreshes", "failures", "forced", "version", "unauthorized", "failovers"},
     "workers": {"planned", "failed", "processesLost"},
     "errors": {"<reason>": count}, "status": {"<code>": count},
     "verdict": "passed" | "failed", "duration": seconds}

`workers.failed` counts worker processes (local mode) or pods (the Job's count) that failed;
`workers.processesLost` the VU processes lost mid-run whose load the others took over.

As in k6, `http_req_failed.passes` counts failed requests (the rate's true values) and `fails`
the others. Durations are milliseconds.
"""

from __future__ import annotations

from typing import Any

__all__ = ["format_bytes", "format_ms", "render_summary"]

_WIDTH = 32


def format_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f}s"
    if value >= 1:
        return f"{value:.2f}ms"
    return f"{value * 1000:.0f}µs"


def format_bytes(value: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _line(name: str, value: str, indent: int = 5) -> str:
    label = " " * indent + name
    return f"{label}{'.' * max(2, _WIDTH + 5 - len(label))}: {value}"


def _trend(values: dict[str, float]) -> str:
    keys = ("avg", "min", "med", "max", "p(90)", "p(95)", "p(99)")
    return " ".join(f"{k}={format_ms(values.get(k))}" for k in keys)


def render_summary(summary: dict[str, Any]) -> str:
    metrics: dict[str, dict[str, float]] = summary.get("metrics", {})
    lines: list[str] = []
    for metric, conditions in sorted(summary.get("thresholds", {}).items()):
        for condition, result in conditions.items():
            mark = "✓" if result.get("ok") else "✗"
            observed = result.get("observed")
            seen = "" if observed is None else f" (observed {observed:g})"
            lines.append(f"  {mark} {metric}: {condition}{seen}")
    if lines:
        lines.append("")

    def counter(name: str, as_bytes: bool = False) -> None:
        values = metrics.get(name)
        if values is None:
            return
        count, rate = values.get("count", 0), values.get("rate", 0)
        shown = f"{format_bytes(count)}  {format_bytes(rate)}/s" if as_bytes else f"{count:g}  {rate:.2f}/s"
        lines.append(_line(name, shown))

    counter("data_received", as_bytes=True)
    counter("data_sent", as_bytes=True)
    if "http_req_duration" in metrics:
        lines.append(_line("http_req_duration", _trend(metrics["http_req_duration"])))
        for key in sorted(k for k in metrics if k.startswith("http_req_duration{")):
            lines.append(_line(key.removeprefix("http_req_duration"), _trend(metrics[key]), indent=7))
    failed = metrics.get("http_req_failed")
    if failed is not None:
        total = failed.get("passes", 0) + failed.get("fails", 0)
        lines.append(_line("http_req_failed", f"{failed.get('rate', 0) * 100:.2f}%  {failed.get('passes', 0):g} "
                           f"out of {total:g}"))
    errors: dict[str, int] = summary.get("errors", {})
    for reason, count in sorted(errors.items()):
        lines.append(_line(f"{{ reason:{reason} }}", f"{count}", indent=7))
    counter("http_reqs")
    for key in sorted(k for k in metrics if k.startswith("http_reqs{")):
        values = metrics[key]
        lines.append(_line(key.removeprefix("http_reqs"), f"{values.get('count', 0):g}  {values.get('rate', 0):.2f}/s",
                           indent=7))
    counter("iterations")
    if "dropped_iterations" in metrics:
        lines.append(_line("dropped_iterations", f"{metrics['dropped_iterations'].get('count', 0):g}"))
    if "vus_max" in metrics:
        lines.append(_line("vus_max", f"{metrics['vus_max'].get('value', 0):g}"))
    token = summary.get("token")
    if token:
        lines.append(_line("token", " ".join(f"{k}={token.get(k, 0)}" for k in
                                              ("version", "refreshes", "failures", "forced", "unauthorized",
                                               "failovers"))))
    workers = summary.get("workers")
    if workers and (workers.get("failed") or workers.get("processesLost")):
        lines.append(_line("workers", f"{workers.get('planned', 0)} planned, {workers.get('failed', 0)} failed, "
                                      f"{workers.get('processesLost', 0)} VU process(es) lost and taken over"))
    verdict = summary.get("verdict", "")
    if verdict:
        lines += ["", f"  verdict: {verdict.upper()}"]
    return "\n".join(lines) + "\n"
