"""/metrics of the operator, a worker and the refresher parse with Prometheus' parser and carry
the named series, over real HTTP servers on loopback."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubeload import __version__
from kubeload import observability as obs


def scrape(server: obs.MetricsServer) -> dict[str, Any]:
    with urllib.request.urlopen(server.url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    family_name = sample_name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
    family_name = family_name.removesuffix("_sum")
    for sample in families[family_name].samples:
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    raise AssertionError(f"no sample {sample_name}{labels} in {families[family_name].samples}")


@pytest.fixture
def servers() -> Iterator[list[obs.MetricsServer]]:
    started: list[obs.MetricsServer] = []
    yield started
    closers = [threading.Thread(target=server.close) for server in started]  # each takes ~0.5 s
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join()


def test_operator_metrics(servers: list[obs.MetricsServer]) -> None:
    registry = obs.new_registry("operator")
    metrics = obs.OperatorMetrics(registry)
    metrics.set_phase("team-a", "checkout", "Running")
    metrics.set_phase("team-a", "login", "Running")
    metrics.set_phase("team-b", "search", "Failed")
    metrics.set_phase("team-b", "gone", "Pending")
    metrics.forget("team-b", "gone")
    with metrics.reconcile("team-a", "checkout"):
        pass
    with pytest.raises(RuntimeError), metrics.reconcile("team-b", "search"):
        raise RuntimeError("boom")
    metrics.reconcile_error("team-b", "search", "TokenFailed")
    servers.append(obs.serve(registry, 0, host="127.0.0.1"))

    families = scrape(servers[0])
    assert families["kubeload_loadtests"].type == "gauge"
    assert value(families, "kubeload_loadtests", namespace="team-a", phase="Running") == 2
    assert value(families, "kubeload_loadtests", namespace="team-a", phase="Succeeded") == 0
    assert value(families, "kubeload_loadtests", namespace="team-b", phase="Failed") == 1
    assert value(families, "kubeload_loadtests", namespace="team-b", phase="Pending") == 0
    errors = "kubeload_operator_reconcile_errors_total"
    assert value(families, errors, namespace="team-b", loadtest="search", reason="RuntimeError") == 1
    assert value(families, errors, namespace="team-b", loadtest="search", reason="TokenFailed") == 1
    assert value(families, "kubeload_operator_reconcile_duration_seconds_count") == 2
    assert families["kubeload_operator_reconcile_duration_seconds"].type == "histogram"
    assert value(families, "kubeload_build_info", version=__version__, component="operator") == 1


def test_worker_metrics(servers: list[obs.MetricsServer]) -> None:
    registry = obs.new_registry("worker")
    metrics = obs.WorkerMetrics(registry, loadtest="checkout", worker="3")
    for seconds in (0.002, 0.004, 0.2):
        metrics.request("list-items", seconds)
    metrics.request("create-order", 0.03, error="status_500")
    metrics.request("create-order", 45.0, error="timeout")
    metrics.set_vus(17)
    metrics.iteration()
    metrics.dropped(2)
    metrics.unauthorized()
    servers.append(obs.serve(registry, 0, host="127.0.0.1"))

    families = scrape(servers[0])
    ids = {"loadtest": "checkout", "worker": "3"}
    assert value(families, "kubeload_worker_requests_total", request="list-items", **ids) == 3
    assert value(families, "kubeload_worker_requests_total", request="create-order", **ids) == 2
    errors = "kubeload_worker_request_errors_total"
    assert value(families, errors, request="create-order", reason="status_500", **ids) == 1
    assert value(families, errors, request="create-order", reason="timeout", **ids) == 1
    latency = families["kubeload_worker_request_duration_seconds"]
    assert latency.type == "histogram"
    bucket = "kubeload_worker_request_duration_seconds_bucket"
    assert value(families, bucket, request="list-items", le="0.005", **ids) == 2
    assert value(families, bucket, request="list-items", le="0.25", **ids) == 3
    assert value(families, bucket, request="create-order", le="30.0", **ids) == 1
    assert value(families, bucket, request="create-order", le="+Inf", **ids) == 2
    assert value(families, "kubeload_worker_request_duration_seconds_sum", request="list-items", **ids) == \
        pytest.approx(0.206)
    assert value(families, "kubeload_worker_vus", **ids) == 17
    assert value(families, "kubeload_worker_iterations_total", **ids) == 1
    assert value(families, "kubeload_worker_dropped_iterations_total", **ids) == 2
    assert value(families, "kubeload_worker_token_unauthorized_total", **ids) == 1


def test_refresher_metrics(servers: list[obs.MetricsServer]) -> None:
    registry = obs.new_registry("refresher")
    metrics = obs.RefresherMetrics(registry, loadtest="checkout", pod="checkout-refresher-abc")
    now = time.time()
    metrics.refreshed(1, now - 100, now + 200, trigger="initial")
    metrics.refreshed(2, now - 30, now + 270, trigger="forced")
    metrics.failed("http_503")
    metrics.set_leader(True)
    servers.append(obs.serve(registry, 0, host="127.0.0.1"))

    families = scrape(servers[0])
    ids = {"loadtest": "checkout", "pod": "checkout-refresher-abc"}
    assert value(families, "kubeload_refresher_token_version", **ids) == 2
    assert 29 <= value(families, "kubeload_refresher_token_age_seconds", **ids) < 40
    assert 260 < value(families, "kubeload_refresher_token_expires_in_seconds", **ids) <= 270
    assert value(families, "kubeload_refresher_refreshes_total", trigger="initial", **ids) == 1
    assert value(families, "kubeload_refresher_refreshes_total", trigger="forced", **ids) == 1
    assert value(families, "kubeload_refresher_refresh_failures_total", reason="http_503", **ids) == 1
    assert value(families, "kubeload_refresher_leader", **ids) == 1


def test_refresher_before_the_first_token_has_no_token_series(servers: list[obs.MetricsServer]) -> None:
    registry = obs.new_registry()
    obs.RefresherMetrics(registry, loadtest="checkout", pod="p")
    servers.append(obs.serve(registry, 0, host="127.0.0.1"))
    families = scrape(servers[0])
    assert "kubeload_refresher_token_age_seconds" not in families
    assert value(families, "kubeload_refresher_leader", loadtest="checkout", pod="p") == 0


def test_child_processes_are_merged_with_a_process_label(servers: list[obs.MetricsServer]) -> None:
    children = []
    for index in range(2):
        registry = obs.new_registry()
        metrics = obs.WorkerMetrics(registry, loadtest="checkout", worker="0")
        metrics.request("list-items", 0.01 * (index + 1))
        metrics.set_vus(10 + index)
        children.append(obs.serve(registry, 0, host="127.0.0.1"))
    servers.extend(children)
    parent = obs.new_registry("worker")
    dead = "http://127.0.0.1:9/metrics"  # a child that is not up yet is skipped
    parent.register(obs.ChildProcessesCollector([child.url for child in children] + [dead], timeout=0.5))
    servers.append(obs.serve(parent, 0, host="127.0.0.1"))

    families = scrape(servers[-1])
    assert value(families, "kubeload_worker_vus", loadtest="checkout", process="0") == 10
    assert value(families, "kubeload_worker_vus", loadtest="checkout", process="1") == 11
    assert value(families, "kubeload_worker_requests_total", process="1", request="list-items") == 1
    assert families["kubeload_worker_request_duration_seconds"].type == "histogram"
    assert value(families, "kubeload_worker_request_duration_seconds_bucket", process="0", le="0.01") == 1
    assert value(families, "kubeload_build_info", component="worker") == 1


def test_metrics_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(obs.ENV_METRICS_PORT, raising=False)
    assert obs.metrics_port() == obs.DEFAULT_METRICS_PORT
    monkeypatch.setenv(obs.ENV_METRICS_PORT, "0")
    assert obs.metrics_port() == 0
    monkeypatch.setenv(obs.ENV_METRICS_PORT, "70000")
    with pytest.raises(ValueError, match="KUBELOAD_METRICS_PORT"):
        obs.metrics_port()
    assert obs.child_url(9090, 1) == "http://127.0.0.1:9092/metrics"


def test_worker_metrics_from_interval_histograms(servers: list[obs.MetricsServer]) -> None:
    """The worker processes add one HdrHistogram per interval, not one call per request."""
    from kubeload.metrics import new_histogram

    registry = obs.new_registry()
    metrics = obs.WorkerMetrics(registry, loadtest="checkout", worker="0")
    first, second = new_histogram(), new_histogram()
    for micros in (900, 1000, 4_000, 200_000):  # 1 ms exactly is in le=0.001
        first.record_value(micros)
    second.record_value(45_000_000)
    second.record_value(2_000)
    metrics.add_interval("home", first, sum_seconds=0.2059, errors={"status_500": 1})
    metrics.add_interval("home", second, sum_seconds=45.002, errors={"timeout": 1, "status_500": 2})
    metrics.add_interval("home", new_histogram(), sum_seconds=0.0)  # an empty interval changes nothing
    assert obs.hdr_bucket_counts(new_histogram(), obs.LATENCY_BUCKETS) == [0] * (len(obs.LATENCY_BUCKETS) + 1)
    servers.append(obs.serve(registry, 0, host="127.0.0.1"))

    families = scrape(servers[0])
    ids = {"loadtest": "checkout", "worker": "0", "request": "home"}
    bucket = "kubeload_worker_request_duration_seconds_bucket"
    assert value(families, bucket, le="0.001", **ids) == 2
    assert value(families, bucket, le="0.0025", **ids) == 3
    assert value(families, bucket, le="0.005", **ids) == 4
    assert value(families, bucket, le="0.25", **ids) == 5
    assert value(families, bucket, le="30.0", **ids) == 5
    assert value(families, bucket, le="+Inf", **ids) == 6
    assert value(families, "kubeload_worker_request_duration_seconds_count", **ids) == 6
    assert value(families, "kubeload_worker_requests_total", **ids) == 6
    assert value(families, "kubeload_worker_request_duration_seconds_sum", **ids) == pytest.approx(45.2079)
    errors = "kubeload_worker_request_errors_total"
    assert value(families, errors, reason="status_500", **ids) == 3
    assert value(families, errors, reason="timeout", **ids) == 1
