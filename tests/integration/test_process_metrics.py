"""Prometheus /metrics of real processes: a `kubeload worker` with two VU processes (the pod's
port merges them with a `process` label) and a `kubeload refresher` (on its probe port).

Real redis-server, a real HTTP target, the real demo auth server; the expositions are parsed
with Prometheus' own parser.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.procs import RedisServer, env_with, stop_process
from support.target import http_target
from support.workers import make_keys, wait_all, write_plan
from test_token_harness import auth_for, demo_target, start_refresher

pytestmark = pytest.mark.integration

Families = dict[str, Any]


def scrape(url: str) -> Families:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(families: Families, family: str, sample: str | None = None) -> list[Any]:
    if family not in families:
        return []
    return [s for s in families[family].samples if s.name == (sample or family)]


def total(families: Families, family: str, sample: str | None = None) -> float:
    return sum(s.value for s in samples(families, family, sample))


def ports_free(first: int, count: int) -> bool:
    for port in range(first, first + count):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def metrics_ports(processes: int) -> int:
    """A port whose `processes` next ports are free too (the VU processes' loopback ports)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + processes < 65535 and ports_free(port, processes + 1):
            return port
    raise RuntimeError("no run of free ports")


def test_worker_serves_merged_metrics_of_its_processes(redis: RedisServer, kubeload_bin: str) -> None:
    keys = make_keys()
    port = metrics_ports(2)
    url = f"http://127.0.0.1:{port}/metrics"
    load = {"executor": "constant-vus", "vus": 4, "duration": "4s", "thinkTime": "20ms"}
    with http_target() as target:
        spec = {"target": {"baseURL": target.url}, "requests": [{"name": "home", "path": "/"}], "load": load}
        write_plan(redis, keys, spec, workers=1, start_in=2.0, interval=1.0)
        proc = subprocess.Popen(
            [kubeload_bin, "worker", "--redis-url", redis.url, "--run", f"{keys.namespace}/{keys.name}/{keys.run_id}",
             "--index", "0", "--processes", "2", "--id", "w0"],
            env=env_with(KUBELOAD_REDIS_PASSWORD=redis.password, KUBELOAD_METRICS_PORT=str(port)))
        try:
            families: Families = {}
            deadline = time.monotonic() + 15
            # Mid-run: both processes have reported at least one interval of requests.
            while time.monotonic() < deadline:
                try:
                    families = scrape(url)
                except OSError:
                    families = {}
                processes = {s.labels["process"] for s in samples(families, "kubeload_worker_requests",
                                                                  "kubeload_worker_requests_total")
                             if s.value > 0}
                if processes == {"0", "1"} and total(families, "kubeload_worker_vus") > 0:
                    break
                time.sleep(0.25)
            else:
                pytest.fail(f"no requests from both processes in /metrics: {sorted(families)}")
            assert wait_all([proc], timeout=20) == [0]
        finally:
            stop_process(proc)

    requests = samples(families, "kubeload_worker_requests", "kubeload_worker_requests_total")
    assert sum(s.value for s in requests) > 0
    for sample in requests:
        assert sample.labels["loadtest"] == keys.name
        assert sample.labels["worker"] == "0"
        assert sample.labels["process"] in {"0", "1"}
        assert sample.labels["request"] == "home"
    latency = families["kubeload_worker_request_duration_seconds"]
    assert latency.type == "histogram"
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for sample in samples(families, latency.name, latency.name + "_bucket"):
        buckets[sample.labels["process"]].append((float(sample.labels["le"]), sample.value))
    counts = {s.labels["process"]: s.value for s in samples(families, latency.name, latency.name + "_count")}
    by_process = {s.labels["process"]: s.value for s in requests}
    assert counts == by_process  # the histogram's count is the requests counter, per process
    for process, series in buckets.items():
        series.sort()
        assert len(series) > 10
        assert series[-1] == (float("inf"), counts[process])
        assert all(a[1] <= b[1] for a, b in pairwise(series))  # cumulative
    assert total(families, latency.name, latency.name + "_sum") > 0
    vus = samples(families, "kubeload_worker_vus")
    assert sum(s.value for s in vus) > 0
    assert {s.labels["process"] for s in vus} == {"0", "1"}
    assert all(s.labels["loadtest"] == keys.name and s.labels["worker"] == "0" for s in vus)
    assert total(families, "kubeload_worker_iterations", "kubeload_worker_iterations_total") > 0
    assert samples(families, "kubeload_build_info")[0].labels["component"] == "worker"
    # No errors against a healthy target: the family exists, without samples.
    assert total(families, "kubeload_worker_request_errors", "kubeload_worker_request_errors_total") == 0


def test_refresher_serves_metrics_on_its_probe_port(redis: RedisServer, tmp_path: Path) -> None:
    with demo_target(tmp_path, lifetime="30s") as demo:
        refresher = start_refresher(tmp_path, redis, "tests/metrics/r1run", auth_for(demo, "client_credentials"))
        try:
            refresher.wait_ready()
            families = scrape(f"http://127.0.0.1:{refresher.probe_port}/metrics")
        finally:
            refresher.stop()
    ids = {"loadtest": "metrics", "pod": "r1"}
    for name in ("kubeload_refresher_token_version", "kubeload_refresher_leader",
                 "kubeload_refresher_token_age_seconds", "kubeload_refresher_token_expires_in_seconds"):
        (sample,) = samples(families, name)
        assert sample.labels == ids, name
    assert samples(families, "kubeload_refresher_token_version")[0].value >= 1
    assert samples(families, "kubeload_refresher_leader")[0].value == 1
    assert 0 < samples(families, "kubeload_refresher_token_expires_in_seconds")[0].value <= 30
    assert samples(families, "kubeload_refresher_token_age_seconds")[0].value >= 0
    refreshes = samples(families, "kubeload_refresher_refreshes", "kubeload_refresher_refreshes_total")
    assert sum(s.value for s in refreshes) >= 1
    assert {s.labels["trigger"] for s in refreshes} == {"initial"}
    assert "kubeload_refresher_refresh_failures" in families
    assert samples(families, "kubeload_build_info")[0].labels["component"] == "refresher"
