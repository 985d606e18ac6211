"""Property-based bad input: every invalid manifest or threshold gets a field error, nothing else escapes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeload.api.manifest import ManifestError, parse_loadtest
from kubeload.api.models import Threshold
from kubeload.api.thresholds import ThresholdSyntaxError, parse_condition, parse_metric

pytestmark = pytest.mark.faults

VALID: dict[str, Any] = {
    "apiVersion": "kubeload.dev/v1alpha1",
    "kind": "LoadTest",
    "metadata": {"name": "prop"},
    "spec": {
        "target": {"baseURL": "http://127.0.0.1:8080", "headers": {"X-Env": "test"}},
        "requests": [{"name": "home", "path": "/", "weight": 1}],
        "load": {"executor": "ramping-vus", "stages": [{"duration": "10s", "target": 5}]},
        "thresholds": [{"metric": "http_req_duration", "condition": "p(95)<500"}],
        "auth": {"tokenURL": "http://127.0.0.1:8080/t", "clientID": {"value": "a"}, "clientSecret": {"env": "S"}},
    },
}

# Values no field accepts everywhere: wrong types, hostile strings, huge numbers.
hostile = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["a\nInjected: 1", "\r\n", "\x00", "💥" * 10, "x" * 70000, "-1s", "0s", "p(95)<<1",
                     "../../etc/passwd", "${HOME}", "🙂name"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


ALL_PATHS = paths(VALID)


def set_path(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), hostile), min_size=1, max_size=3))
def test_mutated_manifests_are_refused_with_field_errors_or_accepted(changes: list[tuple[Any, Any]]) -> None:
    doc = VALID
    for path, value in changes:
        try:
            doc = set_path(doc, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced the parent
    try:
        parse_loadtest(doc)
    except ManifestError as exc:
        assert exc.errors
        for error in exc.errors:
            assert error.message, error
            assert error.path or "mapping" in error.message, error


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.sampled_from(["http_req_duration", "http_req_failed", "http_reqs", "vus"]))
def test_any_condition_text_parses_or_gets_a_syntax_error(text: str, metric: str) -> None:
    try:
        condition = parse_condition(metric, text)
    except ThresholdSyntaxError as exc:
        assert str(exc)
        return
    assert condition.op in ("<", "<=", ">", ">=", "==", "!=")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_metric_text_parses_or_gets_a_syntax_error(text: str) -> None:
    try:
        name, _ = parse_metric(text)
    except ThresholdSyntaxError:
        return
    assert name


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"(avg|min|med|max|p\([0-9]{1,3}\))(<|<=|>|>=|==)[0-9]{1,6}", fullmatch=True))
def test_generated_trend_conditions_are_accepted_or_refused_by_range(text: str) -> None:
    try:
        Threshold(metric="http_req_duration", condition=text)
    except ValueError as exc:
        assert "between 0 and 100" in str(exc)


@pytest.mark.parametrize(("path", "value", "field"), [
    (("spec", "target", "headers"), {"X-A": "ok\r\nSet-Cookie: x"}, "spec.target.headers.X-A"),
    (("spec", "target", "headers"), {"Bad Name": "v"}, "spec.target.headers.Bad Name"),
    (("spec", "requests", 0, "name"), "ünïcode", "spec.requests[0].name"),
    (("spec", "requests", 0, "path"), "/a b", "spec.requests[0].path"),
    (("spec", "load", "stages", 0, "target"), 10**30, "spec.load.stages[0].target"),
    (("spec", "load", "stages", 0, "duration"), "9" * 40 + "s", "spec.load.stages[0].duration"),
    (("spec", "requests", 0, "body"), "x" * 70000, "spec.requests[0].body"),
    (("metadata", "name"), "a\nb", "metadata.name"),
])
def test_hostile_strings_and_huge_numbers_are_refused(path: tuple[Any, ...], value: Any, field: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_loadtest(set_path(VALID, path, value))
    assert field in {e.path for e in caught.value.errors}, caught.value.errors
