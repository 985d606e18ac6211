"""Threshold verdicts on merged values: k6 semantics, abortOnFail with delayAbortEval."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from kubeload.api.models import Threshold
from kubeload.judge import (
    abort_trigger,
    evaluate,
    evaluate_one,
    failure_message,
    verdict,
)

DATA: dict[tuple[str, str | None], dict[str, float]] = {
    ("http_req_duration", None): {"avg": 120.0, "min": 3.0, "med": 100.0, "max": 900.0,
                                  "p(90)": 300.0, "p(95)": 450.0, "p(99)": 800.0},
    ("http_req_duration", "login"): {"avg": 40.0, "p(95)": 70.0, "p(99.9)": 95.0},
    ("http_req_failed", None): {"rate": 0.02},
    ("http_reqs", None): {"count": 1000.0, "rate": 50.0},
    ("dropped_iterations", None): {"count": 0.0},
    ("vus", None): {"value": 10.0, "min": 0.0, "max": 10.0},
}


def lookup(metric: str, name: str | None) -> Mapping[str, float]:
    return DATA.get((metric, name), {})


def t(metric: str, condition: str, **extra: object) -> Threshold:
    return Threshold.model_validate({"metric": metric, "condition": condition, **extra})


@pytest.mark.parametrize(
    ("metric", "condition", "ok", "observed"),
    [
        ("http_req_duration", "p(95)<500", True, 450.0),
        ("http_req_duration", "p(95)<400", False, 450.0),
        ("http_req_duration", "p(95.0)<500", True, 450.0),
        ("http_req_duration", "avg<=120", True, 120.0),
        ("http_req_duration", "max<900", False, 900.0),
        ("http_req_duration", "med>50", True, 100.0),
        ("http_req_duration{name:login}", "p(95)<50", False, 70.0),
        ("http_req_duration{name:login}", "p(99.9)<100", True, 95.0),
        ("http_req_failed", "rate<0.01", False, 0.02),
        ("http_reqs", "count>=1000", True, 1000.0),
        ("http_reqs", "rate>100", False, 50.0),
        ("dropped_iterations", "count<10", True, 0.0),
        ("vus", "value==10", True, 10.0),
        ("vus", "max!=10", False, 10.0),
    ],
)
def test_each_aggregation_reads_its_value(metric: str, condition: str, ok: bool, observed: float) -> None:
    result = evaluate_one(t(metric, condition), lookup)
    assert result.ok is ok
    assert result.observed == observed


def test_no_samples_is_not_a_failure_and_says_so() -> None:
    result = evaluate_one(t("http_req_duration{name:never}", "p(95)<1"), lookup)
    assert result.ok is True and result.observed is None
    assert "no data" in failure_message(result)


def test_verdict_fails_when_any_threshold_fails() -> None:
    assert verdict([]) == "passed"
    assert verdict(evaluate([t("http_reqs", "count>1")], lookup)) == "passed"
    results = evaluate([t("http_reqs", "count>1"), t("http_req_failed", "rate<0.01")], lookup)
    assert verdict(results) == "failed"


def test_abort_waits_for_delay_abort_eval() -> None:
    results = evaluate(
        [
            t("http_req_failed", "rate<0.01"),  # fails, but no abortOnFail
            t("http_req_duration", "p(95)<100", abortOnFail=True, delayAbortEval="30s"),
        ],
        lookup,
    )
    assert abort_trigger(results, elapsed=10.0) is None
    trigger = abort_trigger(results, elapsed=30.0)
    assert trigger is not None and trigger.condition == "p(95)<100"
    assert failure_message(trigger) == "threshold http_req_duration p(95)<100 failed (observed 450)"


def test_passing_abort_threshold_never_triggers() -> None:
    results = evaluate([t("http_req_duration", "p(95)<1000", abortOnFail=True)], lookup)
    assert abort_trigger(results, elapsed=1e6) is None
