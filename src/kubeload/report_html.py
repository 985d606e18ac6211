"""A self-contained HTML report: inline SVG plots over time and the summary table.

No script, font or style is loaded from the network: the file opens anywhere, offline. The
series are also embedded as JSON (`<script type="application/json" id="kubeload-data">`) so the
numbers behind every plot can be read back.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from .summary_text import render_summary

__all__ = ["render_report"]

_W, _H, _PAD = 760, 200, 40
_COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea")


def _polyline(xs: Sequence[float], ys: Sequence[float], x_max: float, y_max: float, color: str) -> str:
    points = " ".join(
        f"{_PAD + (x / x_max) * (_W - 2 * _PAD):.1f},{_H - _PAD - (y / y_max) * (_H - 2 * _PAD):.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{points}"/>'


def _chart(title: str, series: dict[str, list[float]], times: list[float], rotations: list[float], unit: str) -> str:
    x_max = max(times[-1] if times else 1.0, 1e-9)
    y_max = max([max(values, default=0.0) for values in series.values()] + [1e-9]) * 1.1
    parts = [f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{html.escape(title)}">',
             f'<rect x="{_PAD}" y="{_PAD}" width="{_W - 2 * _PAD}" height="{_H - 2 * _PAD}" fill="#fafafa" '
             'stroke="#ddd"/>']
    for frac in (0, 0.5, 1):
        y = _H - _PAD - frac * (_H - 2 * _PAD)
        parts.append(f'<text x="{_PAD - 4}" y="{y + 4:.0f}" font-size="10" text-anchor="end">'
                     f"{y_max / 1.1 * frac:.4g}</text>")
    parts.append(f'<text x="{_W - _PAD}" y="{_H - _PAD + 14}" font-size="10" text-anchor="end">{x_max:.0f}s</text>')
    for at in rotations:
        x = _PAD + (at / x_max) * (_W - 2 * _PAD)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_PAD}" y2="{_H - _PAD}" stroke="#f59e0b" '
                     'stroke-dasharray="4 3"><title>token rotated</title></line>')
    for values, color in zip(series.values(), _COLORS, strict=False):
        if len(values) > 1:
            parts.append(_polyline(times, values, x_max, y_max, color))
    legend = " ".join(f'<span style="color:{c}">■ {html.escape(n)}</span>'
                      for n, c in zip(series, _COLORS, strict=False))
    parts.append("</svg>")
    heading = f"<h2>{html.escape(title)} <small>({unit})</small></h2>"
    return f"<section>{heading}<div>{legend}</div>{''.join(parts)}</section>"


def render_report(title: str, summary: dict[str, Any], timeline: list[dict[str, float]]) -> str:
    """`timeline`: one point per metrics interval: t (s since start), rps, vus, p50, p95, p99
    (ms), errors (failed requests per second), tokenVersion."""
    times = [p.get("t", 0.0) for p in timeline]

    def col(name: str) -> list[float]:
        return [float(p.get(name, 0.0)) for p in timeline]

    versions = col("tokenVersion")
    rotations = [times[i] for i in range(1, len(versions)) if versions[i] > versions[i - 1]]
    charts = [
        _chart("Requests per second", {"rps": col("rps")}, times, rotations, "req/s"),
        _chart("Active VUs", {"vus": col("vus")}, times, rotations, "VUs"),
        _chart("Latency", {"p50": col("p50"), "p95": col("p95"), "p99": col("p99")}, times, rotations, "ms"),
        _chart("Errors", {"failed/s": col("errors")}, times, rotations, "failed req/s"),
    ]
    data = json.dumps({"summary": summary, "timeline": timeline}).replace("</", "<\\/")
    verdict = summary.get("verdict", "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:820px;margin:2em auto;color:#111}}
h2{{font-size:1.05em;margin:1.4em 0 .3em}} pre{{background:#f4f4f5;padding:1em;overflow-x:auto}}
.passed{{color:#16a34a}} .failed{{color:#dc2626}} svg{{width:100%;height:auto}}</style></head>
<body><h1>{html.escape(title)} <span class="{html.escape(verdict)}">{html.escape(verdict.upper())}</span></h1>
<p>Dashed orange lines mark token rotations.</p>
{"".join(charts)}
<h2>Summary</h2><pre>{html.escape(render_summary(summary))}</pre>
<script type="application/json" id="kubeload-data">{data}</script>
</body></html>
"""
