from __future__ import annotations

import pytest

from kubeload.api.durations import format_duration, parse_duration
from kubeload.api.thresholds import ThresholdSyntaxError, parse_condition, parse_metric


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("2m", 120), ("1h30m", 5400),
                                               ("1.5s", 1.5), ("1m30s", 90), ("0s", 0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "-1s", "1d", "s", "1 s", "1.s", "10sec"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(0.25, "250ms"), (30, "30s"), (90, "1m30s"), (3600, "1h")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_condition_and_judge() -> None:
    cond = parse_condition("http_req_duration", "p(95) < 500")
    assert (cond.aggregation, cond.percentile, cond.op, cond.bound) == ("p(95)", 95.0, "<", 500.0)
    assert cond.passes(499.9) and not cond.passes(500)
    assert parse_condition("http_req_duration", "p(99.9)<=1").aggregation == "p(99.9)"
    assert parse_condition("http_req_duration", "p(95.0)<1").aggregation == "p(95)"
    assert parse_condition("http_req_failed", "rate<0.01").passes(0.001)
    assert parse_condition("http_reqs", "count>=100").passes(100)
    assert parse_condition("vus", "value==3").passes(3)


@pytest.mark.parametrize(("metric", "condition", "fragment"), [
    ("http_req_duration", "p95<500", "invalid condition"),
    ("http_req_duration", "rate<0.1", "does not apply"),
    ("http_req_failed", "avg<1", "does not apply"),
    ("http_reqs", "p(90)<1", "does not apply"),
    ("http_req_duration", "p(101)<5", "between 0 and 100"),
    ("http_req_duration", "avg<<5", "invalid condition"),
])
def test_parse_condition_refuses(metric: str, condition: str, fragment: str) -> None:
    with pytest.raises(ThresholdSyntaxError, match=fragment):
        parse_condition(metric, condition)


def test_parse_metric_with_request_filter() -> None:
    assert parse_metric("http_req_duration{name:login}") == ("http_req_duration", "login")
    assert parse_metric("http_reqs") == ("http_reqs", None)
    with pytest.raises(ThresholdSyntaxError, match="unknown metric"):
        parse_metric("http_req_duration{status:200}")
