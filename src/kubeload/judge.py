"""Threshold verdicts on merged fleet data: pure functions shared by the operator and local runner.

The caller owns the data. It hands in a `Lookup`: `(metric, request_name | None)` returns the
aggregated values of that metric over the whole fleet so far, keyed as k6 names its
aggregations (`avg`, `min`, `med`, `max`, `p(95)`, `rate`, `count`, `value`). An empty mapping
means "no samples yet".

k6 semantics kept on purpose:

- a threshold whose metric has no samples is not failed (k6 does not evaluate it); its
  result says `observed: None`, so a report can show "no data";
- `abortOnFail` stops the test at the first evaluation that fails, but not before
  `delayAbortEval` of the test has run (so early, noisy percentiles do not abort a run);
- the verdict is `failed` when any threshold fails at the end, whether or not it aborts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .api.durations import parse_duration
from .api.models import Threshold
from .api.thresholds import parse_condition, parse_metric

__all__ = [
    "Lookup",
    "ThresholdVerdict",
    "Verdict",
    "abort_trigger",
    "evaluate",
    "evaluate_one",
    "failure_message",
    "verdict",
]

Lookup = Callable[[str, str | None], Mapping[str, float]]
Verdict = Literal["passed", "failed"]


@dataclass(frozen=True, slots=True)
class ThresholdVerdict:
    """The result of one threshold on the data seen so far."""

    metric: str  # as written in the spec, e.g. `http_req_duration{name:login}`
    condition: str  # as written, e.g. `p(95)<500`
    ok: bool
    observed: float | None  # None: the metric has no samples yet (not evaluated, k6-style)
    abort_on_fail: bool
    delay_abort_eval: float  # seconds

    @property
    def key(self) -> str:
        return f"{self.metric}: {self.condition}"


def evaluate_one(threshold: Threshold, lookup: Lookup) -> ThresholdVerdict:
    """Judge one threshold; a metric without samples passes with `observed=None`."""
    name, request = parse_metric(threshold.metric)
    condition = parse_condition(threshold.metric, threshold.condition)
    observed = condition.value_from(lookup(name, request))
    return ThresholdVerdict(
        metric=threshold.metric,
        condition=threshold.condition,
        ok=True if observed is None else condition.passes(observed),
        observed=observed,
        abort_on_fail=threshold.abort_on_fail,
        delay_abort_eval=parse_duration(threshold.delay_abort_eval),
    )


def evaluate(thresholds: Sequence[Threshold], lookup: Lookup) -> list[ThresholdVerdict]:
    """Judge every threshold, in spec order."""
    return [evaluate_one(t, lookup) for t in thresholds]


def abort_trigger(verdicts: Sequence[ThresholdVerdict], elapsed: float) -> ThresholdVerdict | None:
    """The first failing `abortOnFail` threshold whose `delayAbortEval` has passed, if any.

    `elapsed` is the test's running time in seconds (since the plan's start).
    """
    for result in verdicts:
        if result.abort_on_fail and not result.ok and elapsed >= result.delay_abort_eval:
            return result
    return None


def verdict(verdicts: Sequence[ThresholdVerdict]) -> Verdict:
    """`failed` when any threshold fails, else `passed` (also with no thresholds)."""
    return "passed" if all(v.ok for v in verdicts) else "failed"


def failure_message(result: ThresholdVerdict) -> str:
    """A one-line reason, e.g. `threshold http_req_duration p(95)<500 failed (observed 734.2)`."""
    observed = "no data" if result.observed is None else f"observed {result.observed:g}"
    return f"threshold {result.metric} {result.condition} failed ({observed})"
