"""k6 threshold expressions: parse `p(95)<500` and judge it against observed values.

Pure functions: the local runner and the operator both judge merged fleet data with them.
"""

from __future__ import annotations

import operator as _op
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CONDITION_PATTERN",
    "METRICS",
    "METRIC_PATTERN",
    "Condition",
    "MetricKind",
    "ThresholdSyntaxError",
    "parse_condition",
    "parse_metric",
]

MetricKind = Literal["trend", "rate", "counter", "gauge"]

# The metrics a threshold may name, with k6's metric types.
METRICS: dict[str, MetricKind] = {
    "http_req_duration": "trend",
    "http_req_failed": "rate",
    "http_reqs": "counter",
    "iterations": "counter",
    "dropped_iterations": "counter",
    "data_sent": "counter",
    "data_received": "counter",
    "vus": "gauge",
    "vus_max": "gauge",
    "token_unauthorized": "counter",
    "token_refresh_failures": "counter",
}

# Aggregations allowed per metric type, as in k6.
AGGREGATIONS: dict[MetricKind, tuple[str, ...]] = {
    "trend": ("avg", "min", "med", "max", "p(N)"),
    "rate": ("rate",),
    "counter": ("count", "rate"),
    "gauge": ("value", "min", "max"),
}

_METRIC_NAMES = "|".join(sorted(METRICS))
METRIC_PATTERN = rf"^({_METRIC_NAMES})(\{{name:[A-Za-z0-9][A-Za-z0-9._-]{{0,62}}\}})?$"
CONDITION_PATTERN = (
    r"^\s*(avg|min|med|max|rate|count|value|p\([0-9]+(\.[0-9]+)?\))\s*"
    r"(<=|>=|==|!=|<|>)\s*-?[0-9]+(\.[0-9]+)?\s*$"
)
_CONDITION = re.compile(
    r"^\s*(?P<agg>avg|min|med|max|rate|count|value|p\((?P<pct>[0-9]+(?:\.[0-9]+)?)\))\s*"
    r"(?P<op><=|>=|==|!=|<|>)\s*(?P<value>-?[0-9]+(?:\.[0-9]+)?)\s*$"
)
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": _op.lt,
    "<=": _op.le,
    ">": _op.gt,
    ">=": _op.ge,
    "==": _op.eq,
    "!=": _op.ne,
}


class ThresholdSyntaxError(ValueError):
    """A threshold metric or condition that k6's syntax does not allow."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed condition, e.g. aggregation `p(95)`, operator `<`, bound 500."""

    aggregation: str  # "avg", "p(95)", "rate", ...
    percentile: float | None
    op: str
    bound: float

    def passes(self, observed: float) -> bool:
        return _OPERATORS[self.op](observed, self.bound)

    def value_from(self, values: Mapping[str, float]) -> float | None:
        """The observed value this condition reads from a metric's aggregated values."""
        return values.get(self.aggregation)


def parse_metric(text: str) -> tuple[str, str | None]:
    """`http_req_duration{name:login}` -> ("http_req_duration", "login")."""
    if not re.fullmatch(METRIC_PATTERN, text):
        raise ThresholdSyntaxError(
            f"unknown metric {text!r}: allowed are {', '.join(sorted(METRICS))}, "
            "optionally with a request filter such as http_req_duration{name:login}"
        )
    name, _, selector = text.partition("{")
    return name, (selector[len("name:") : -1] if selector else None)


def parse_condition(metric: str, text: str) -> Condition:
    """Parse a k6 condition and check the aggregation suits the metric's type."""
    match = _CONDITION.match(text)
    if match is None:
        raise ThresholdSyntaxError(
            f"invalid condition {text!r}: use <aggregation><operator><number> such as "
            "p(95)<500, avg<=200, rate<0.01 or count>100; operators are <, <=, >, >=, ==, !="
        )
    kind = METRICS[parse_metric(metric)[0]]
    pct = float(match["pct"]) if match["pct"] is not None else None
    # Normalised so `p(95.0)` and `p(95)` read the same observed value.
    aggregation = f"p({pct:g})" if pct is not None else match["agg"]
    allowed = AGGREGATIONS[kind]
    key = "p(N)" if pct is not None else aggregation
    if key not in allowed:
        raise ThresholdSyntaxError(
            f"aggregation {aggregation!r} does not apply to {metric} (a {kind} metric): "
            f"allowed are {', '.join(allowed)}"
        )
    if pct is not None and not 0 <= pct <= 100:
        raise ThresholdSyntaxError(f"percentile {pct:g} in {text!r} must be between 0 and 100")
    return Condition(aggregation, pct, match["op"], float(match["value"]))
