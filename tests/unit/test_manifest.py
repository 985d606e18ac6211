"""Manifests: every example is valid; every invalid one is refused with its field named."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeload.api.manifest import ManifestError, load_manifests, parse_loadtest
from kubeload.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INVALID_EXAMPLES = sorted((ROOT / "examples" / "invalid").glob("*.yaml"))

BASE: dict[str, Any] = {
    "apiVersion": "kubeload.dev/v1alpha1",
    "kind": "LoadTest",
    "metadata": {"name": "t"},
    "spec": {
        "target": {"baseURL": "http://127.0.0.1:8080"},
        "requests": [{"name": "home", "path": "/"}],
        "load": {"executor": "constant-vus", "vus": 5, "duration": "10s"},
    },
}


def with_changes(path: str, value: Any) -> dict[str, Any]:
    """BASE with the dotted `path` set to `value` (`...` deletes it)."""
    doc = copy.deepcopy(BASE)
    parts = path.split(".")
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    last = parts[-1]
    if value is ...:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


INVALID = [
    # (what is set, value, field the error must name, message fragment)
    ("spec.target.baseURL", ..., "spec.target.baseURL", "required"),
    ("spec.target.baseURL", "ftp://x", "spec.target.baseURL", "does not match"),
    ("spec.target.baseURL", 42, "spec.target.baseURL", "string"),
    ("spec.target.timeout", "-5s", "spec.target.timeout", "does not match"),
    ("spec.target.timeout", "0s", "spec.target.timeout", "timeout must be positive"),
    ("spec.target.headers", {"X-Bad": "a\nInjected: 1"}, "spec.target.headers.X-Bad", "does not match"),
    ("spec.target.colour", "blue", "spec.target.colour", "unknown field"),
    ("spec.requests", [], "spec.requests", "at least 1"),
    ("spec.requests.0.method", "FETCH", "spec.requests[0].method", "GET"),
    ("spec.requests.0.path", "no-slash", "spec.requests[0].path", "does not match"),
    ("spec.requests.0.weight", 0, "spec.requests[0].weight", "greater than or equal to 1"),
    ("spec.requests.0.expect", {"status": [700]}, "spec.requests[0].expect.status[0]", "less than or equal to 599"),
    ("spec.load.executor", "spike", "spec.load.executor", "ramping-vus"),
    ("spec.load", {"executor": "ramping-vus", "stages": []}, "spec.load.stages", "at least one stage"),
    ("spec.load", {"executor": "ramping-vus", "stages": [{"duration": "-1s", "target": 1}]},
     "spec.load.stages[0].duration", "does not match"),
    ("spec.load", {"executor": "ramping-vus", "stages": [{"duration": "10s", "target": "many"}]},
     "spec.load.stages[0].target", "integer"),
    ("spec.load.vus", -3, "spec.load.vus", "greater than or equal to 1"),
    ("spec.load.vus", 10**12, "spec.load.vus", "less than or equal to"),
    ("spec.load", {"executor": "constant-arrival-rate", "duration": "1m"}, "spec.load.rate", "needs rate"),
    ("spec.load", {"executor": "constant-arrival-rate", "rate": 5, "duration": "1m", "preAllocatedVUs": 20,
                   "maxVUs": 10}, "spec.load.preAllocatedVUs", "must not exceed maxVUs"),
    ("spec.load", {"executor": "ramping-vus", "maxVUs": 5, "stages": [{"duration": "1m", "target": 50}]},
     "spec.load.stages", "must not exceed maxVUs"),
    ("spec.thresholds", [{"metric": "http_req_duration", "condition": "p95<500"}],
     "spec.thresholds[0].condition", "does not match"),
    ("spec.thresholds", [{"metric": "http_req_latency", "condition": "p(95)<500"}],
     "spec.thresholds[0].metric", "does not match"),
    ("spec.thresholds", [{"metric": "http_req_failed", "condition": "p(95)<500"}],
     "spec.thresholds[0].condition", "does not apply to http_req_failed"),
    ("spec.thresholds", [{"metric": "http_req_duration", "condition": "p(150)<500"}],
     "spec.thresholds[0].condition", "between 0 and 100"),
    ("spec.auth", {"tokenURL": "http://127.0.0.1/t", "clientID": {"value": "a"},
                   "clientSecret": {"value": "b", "env": "SECRET"}}, "spec.auth.clientSecret", "exactly one"),
    ("spec.auth", {"grant": "password", "tokenURL": "http://127.0.0.1/t"}, "spec.auth.password",
     "needs username and password"),
    ("spec.auth", {"grant": "request"}, "spec.auth.request", "grant request needs request"),
    ("spec.auth", {"grant": "client_credentials", "clientID": {"value": "a"}, "clientSecret": {"value": "b"}},
     "spec.auth.tokenURL", "needs tokenURL"),
    ("spec.auth", {"grant": "implicit"}, "spec.auth.grant", "client_credentials"),
    ("spec.auth", {"grant": "request", "request": {"url": "http://127.0.0.1/t"}, "refreshBefore": "120%"},
     "spec.auth.refreshBefore", "does not match"),
    ("spec.workers.maxWorkers", 0, "spec.workers.maxWorkers", "greater than or equal to 1"),
    ("spec.workers.resources", {"limits": {"gpu": "1"}}, "spec.workers.resources.limits.gpu", "cpu"),
    ("spec.redis.url", "http://redis:6379", "spec.redis.url", "does not match"),
    ("spec.cleanup.policy", "Sometimes", "spec.cleanup.policy", "OnSuccess"),
    ("metadata.name", "Upper_Case", "metadata.name", "does not match"),
    ("metadata.name", "a" * 41, "metadata.name", "at most 40"),
    ("apiVersion", "kubeload.dev/v1", "apiVersion", "kubeload.dev/v1alpha1"),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "fragment"), INVALID, ids=[f"{c[0]}={c[1]!r}"[:60] for c in INVALID]
)
def test_invalid_manifest_names_the_field(path: str, value: Any, field: str, fragment: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_loadtest(with_changes(path, value))
    errors = {str(e.path): e.message for e in caught.value.errors}
    assert field in errors, f"expected an error at {field}, got {errors}"
    assert fragment in errors[field], errors[field]


def test_every_error_is_reported_not_just_the_first() -> None:
    doc = with_changes("spec.target.baseURL", ...)
    doc["spec"]["requests"][0]["weight"] = -1
    with pytest.raises(ManifestError) as caught:
        parse_loadtest(doc)
    assert {e.path for e in caught.value.errors} >= {"spec.target.baseURL", "spec.requests[0].weight"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_valid(path: Path) -> None:
    assert load_manifests(path)


def _expectation(path: Path) -> tuple[str, str]:
    text = path.read_text()
    field = re.search(r"^# expect-field: (.+)$", text, re.M)
    message = re.search(r"^# expect-message: (.+)$", text, re.M)
    assert field and message, f"{path.name} must state expect-field and expect-message"
    return field[1].strip(), message[1].strip()


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=[p.name for p in INVALID_EXAMPLES])
def test_invalid_examples_fail_with_their_stated_error(path: Path) -> None:
    field, message = _expectation(path)
    with pytest.raises(ManifestError) as caught:
        load_manifests(path)
    assert [(e.path, e.message) for e in caught.value.errors] == [(field, message)]


def test_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(BASE))
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(INVALID_EXAMPLES[0])]) == 2
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2
    (tmp_path / "bad.yaml").write_text("spec: [unclosed")
    assert main(["validate", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "cannot read the file" in err


def test_validate_multi_document_file_reports_each_document(tmp_path: Path) -> None:
    bad = with_changes("spec.requests", [])
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(BASE) + "---\n" + yaml.safe_dump(bad))
    with pytest.raises(ManifestError) as caught:
        load_manifests(path)
    assert [e.path for e in caught.value.errors] == ["spec.requests"]
    assert caught.value.errors[0].message.startswith("document 2: ")


def test_oversized_manifest_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * 2_000_000)
    with pytest.raises(ManifestError, match="larger than"):
        load_manifests(path)


def test_console_script_validate_examples(kubeload_bin: str) -> None:
    result = subprocess.run([kubeload_bin, "validate", *map(str, EXAMPLES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([kubeload_bin, "validate", str(INVALID_EXAMPLES[0])], capture_output=True, text=True)
    assert result.returncode == 2
    assert _expectation(INVALID_EXAMPLES[0])[0] in result.stderr


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "kubeload", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("kubeload ")
