"""Prometheus metrics of the operator, the workers and the refresher.

Every process owns one registry (never the global default one), one metrics object for its
role, and serves the registry over HTTP at `/metrics`:

    from kubeload import observability as obs

    registry = obs.new_registry()
    server = obs.serve(registry, obs.metrics_port())   # a daemon thread; server.close() stops it

**Operator** (`kubeload_loadtests`, `kubeload_operator_reconcile_errors_total`,
`kubeload_operator_reconcile_duration_seconds`)::

    metrics = obs.OperatorMetrics(registry)
    with metrics.reconcile(namespace, name):           # times it; an exception counts as an error
        ...                                            # (reason = the exception's class name)
    metrics.reconcile_error(namespace, name, "TokenFailed")   # a handled error, by reason
    metrics.set_phase(namespace, name, status.phase)   # after each status write
    metrics.forget(namespace, name)                    # when the LoadTest is deleted

**Worker** (`kubeload_worker_requests_total`, `kubeload_worker_request_errors_total`,
`kubeload_worker_request_duration_seconds`, `kubeload_worker_vus`,
`kubeload_worker_iterations_total`, `kubeload_worker_dropped_iterations_total`,
`kubeload_worker_token_unauthorized_total`); cheap enough for the hot path (a dict lookup, a
bisect and a few additions, no lock)::

    metrics = obs.WorkerMetrics(registry, loadtest=name, worker=str(index))
    metrics.request("login", seconds, error=None)      # or error="status_500", "timeout", ...
    metrics.iteration(); metrics.dropped(); metrics.unauthorized(); metrics.set_vus(n)

The worker processes do not call `request()` per request: once per metrics interval, before
`Recorder.take_delta()` resets them, each request name's interval is added in one call::

    metrics.add_interval("login", stats.histogram, sum_seconds=stats.sum_us / 1e6,
                         errors=stats.failures)        # the interval's HdrHistogram (µs)
    metrics.iteration(delta_iterations); metrics.dropped(delta_dropped); ...

The counters and the histogram are then cumulative over the process's life but only move at
interval boundaries. Bucket counts come from the HdrHistogram's counts array (3 significant
digits): a request within 0.1 % above a bucket's bound may count in that bucket (e.g. `le=30`
holds values up to 30.015 s); `_sum` is exact, `_count` equals `requests_total`.

**Refresher** (`kubeload_refresher_token_age_seconds`, `..._token_expires_in_seconds`,
`..._token_version`, `..._refreshes_total`, `..._refresh_failures_total`, `..._leader`)::

    metrics = obs.RefresherMetrics(registry, loadtest=name, pod=pod_name)
    metrics.refreshed(version, obtained_at, expires_at, trigger="scheduled")  # or "initial", "forced"
    metrics.failed("http_503")                         # a reason without secrets
    metrics.set_leader(True)

**A pod with several processes** (a worker runs one event loop per CPU): process `i` serves
its own registry on `127.0.0.1:child_port(port, i)` and the parent serves the pod's port with
`ChildProcessesCollector`, which merges the children's series and adds a `process` label::

    registry = obs.new_registry()
    registry.register(obs.ChildProcessesCollector([obs.child_url(port, i) for i in range(n)]))
    obs.serve(registry, port)

Every pod's metrics port is `KUBELOAD_METRICS_PORT` (default 9090); the operator's pod spec
should expose it as a port named `metrics` with the `prometheus.io/*` annotations.
Label values are names, never tokens or secrets.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from . import __version__
from .api.status import Phase

__all__ = [
    "DEFAULT_METRICS_PORT",
    "ENV_METRICS_PORT",
    "LATENCY_BUCKETS",
    "ChildProcessesCollector",
    "MetricsServer",
    "OperatorMetrics",
    "RefresherMetrics",
    "WorkerMetrics",
    "child_port",
    "child_url",
    "hdr_bucket_counts",
    "metrics_port",
    "new_registry",
    "serve",
]

ENV_METRICS_PORT = "KUBELOAD_METRICS_PORT"
DEFAULT_METRICS_PORT = 9090
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
"""Request latency buckets in seconds (1 ms to 30 s); `+Inf` is added."""
RECONCILE_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def new_registry(component: str | None = None) -> CollectorRegistry:
    """A fresh registry; with `component`, it carries `kubeload_build_info{version,component}`."""
    registry = CollectorRegistry(auto_describe=True)
    if component:
        registry.register(_BuildInfo(component))
    return registry


def metrics_port(default: int = DEFAULT_METRICS_PORT) -> int:
    """The metrics port from `KUBELOAD_METRICS_PORT` (0 = do not serve), else `default`."""
    raw = os.environ.get(ENV_METRICS_PORT, "").strip()
    if not raw:
        return default
    port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError(f"{ENV_METRICS_PORT} must be a port number (0 disables), got {raw!r}")
    return port


def child_port(port: int, index: int) -> int:
    """The loopback port of child process `index` of a pod whose metrics port is `port`."""
    return port + 1 + index


def child_url(port: int, index: int) -> str:
    return f"http://127.0.0.1:{child_port(port, index)}/metrics"


@dataclass
class MetricsServer:
    """A running exposition server (a daemon thread); `close()` stops it."""

    host: str
    port: int
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(registry: CollectorRegistry, port: int, host: str = "0.0.0.0") -> MetricsServer:  # noqa: S104
    """Serve `registry` at `http://host:port/metrics` (port 0: a free port, see `.port`)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host=host, port=int(server.server_address[1]), _server=server, _thread=thread)


class _BuildInfo(Collector):
    def __init__(self, component: str) -> None:
        self._component = component

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("kubeload_build_info", "kubeload version of this process (always 1).",
                                   labels=["version", "component"])
        family.add_metric([__version__, self._component], 1)
        yield family


# --------------------------------------------------------------------------------- operator


class OperatorMetrics(Collector):
    """The operator's series: LoadTests by phase, reconcile errors and durations."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._phases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self.errors = Counter(
            "kubeload_operator_reconcile_errors", "Reconciles of a LoadTest that failed, by reason.",
            ["namespace", "loadtest", "reason"], registry=registry,
        )
        self.duration = Histogram(
            "kubeload_operator_reconcile_duration_seconds", "Duration of one reconcile of a LoadTest.",
            buckets=RECONCILE_BUCKETS, registry=registry,
        )
        registry.register(self)

    def set_phase(self, namespace: str, name: str, phase: str) -> None:
        """Record the current phase of a LoadTest (a `Phase` or its string)."""
        with self._lock:
            self._phases[(namespace, name)] = str(phase)

    def forget(self, namespace: str, name: str) -> None:
        """The LoadTest is gone: it no longer counts in `kubeload_loadtests`."""
        with self._lock:
            self._phases.pop((namespace, name), None)

    def reconcile_error(self, namespace: str, name: str, reason: str) -> None:
        self.errors.labels(namespace, name, reason).inc()

    @contextmanager
    def reconcile(self, namespace: str, name: str) -> Iterator[None]:
        """Time one reconcile; an exception escaping it counts as an error, then propagates."""
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            self.reconcile_error(namespace, name, type(exc).__name__)
            raise
        finally:
            self.duration.observe(time.perf_counter() - start)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            phases = dict(self._phases)
        counts: dict[tuple[str, str], int] = {}
        for (namespace, _), phase in phases.items():
            for known in Phase:  # every phase of a namespace is present, zeros included
                counts.setdefault((namespace, known.value), 0)
            counts[(namespace, phase)] = counts.get((namespace, phase), 0) + 1
        family = GaugeMetricFamily("kubeload_loadtests", "LoadTests known to the operator, by namespace and phase.",
                                   labels=["namespace", "phase"])
        for (namespace, phase), count in sorted(counts.items()):
            family.add_metric([namespace, phase], count)
        yield family


# ----------------------------------------------------------------------------------- worker


class _RequestSeries:
    __slots__ = ("buckets", "count", "errors", "sum")

    def __init__(self, size: int) -> None:
        self.count = 0
        self.sum = 0.0
        self.buckets = [0] * size  # non-cumulative; the last one is +Inf
        self.errors: dict[str, int] = {}


class WorkerMetrics(Collector):
    """One worker process's series, labelled `loadtest` and `worker`.

    Updated from the event loop without locks: the scrape thread only copies plain counters.
    """

    def __init__(self, registry: CollectorRegistry, loadtest: str, worker: str,
                 buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self._labels = [loadtest, worker]
        self._bounds = sorted(buckets)
        self._series: dict[str, _RequestSeries] = {}
        self.vus = 0
        self.iterations = 0
        self.dropped_iterations = 0
        self.unauthorized_count = 0
        registry.register(self)

    def request(self, name: str, seconds: float, error: str | None = None) -> None:
        """One finished request `name` that took `seconds`; `error` is its failure reason, if any."""
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = _RequestSeries(len(self._bounds) + 1)
        series.count += 1
        series.sum += seconds
        series.buckets[bisect.bisect_left(self._bounds, seconds)] += 1
        if error is not None:
            series.errors[error] = series.errors.get(error, 0) + 1

    def add_interval(self, name: str, histogram: Any, *, sum_seconds: float,
                     errors: Mapping[str, int] | None = None) -> None:
        """One interval's requests `name`: `histogram` an HdrHistogram of durations in
        microseconds (read, not changed), `sum_seconds` their exact sum, `errors` the failed
        ones by reason. A few thousand additions, whatever the request count."""
        counts = hdr_bucket_counts(histogram, self._bounds)
        if not any(counts):
            return
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = _RequestSeries(len(self._bounds) + 1)
        # A new list swapped in at once: a concurrent scrape sees the old or the new buckets.
        series.buckets = [old + new for old, new in zip(series.buckets, counts, strict=True)]
        series.count += sum(counts)
        series.sum += sum_seconds
        for reason, count in (errors or {}).items():
            series.errors[reason] = series.errors.get(reason, 0) + count

    def iteration(self, count: int = 1) -> None:
        self.iterations += count

    def dropped(self, count: int = 1) -> None:
        """Iterations of the open model dropped because every VU was busy."""
        self.dropped_iterations += count

    def unauthorized(self, count: int = 1) -> None:
        """A 401 that made the worker ask for a new token."""
        self.unauthorized_count += count

    def set_vus(self, vus: int) -> None:
        self.vus = vus

    def collect(self) -> Iterable[Metric]:
        base = ["loadtest", "worker"]
        requests = CounterMetricFamily("kubeload_worker_requests", "HTTP requests sent, by request name.",
                                       labels=[*base, "request"])
        errors = CounterMetricFamily("kubeload_worker_request_errors", "Failed HTTP requests, by request and reason.",
                                     labels=[*base, "request", "reason"])
        latency = HistogramMetricFamily(
            "kubeload_worker_request_duration_seconds",
            "Request latency (open model: from the intended start of the iteration).",
            labels=[*base, "request"],
        )
        for name, series in list(self._series.items()):
            labels = [*self._labels, name]
            counts = list(series.buckets)
            cumulative, total = [], 0
            for bound, count in zip([*self._bounds, float("inf")], counts, strict=True):
                total += count
                cumulative.append((_bucket_label(bound), total))
            requests.add_metric(labels, total)
            latency.add_metric(labels, cumulative, series.sum)
            for reason, count in list(series.errors.items()):
                errors.add_metric([*labels, reason], count)
        yield requests
        yield errors
        yield latency
        vus = GaugeMetricFamily("kubeload_worker_vus", "Active virtual users.", labels=base)
        vus.add_metric(self._labels, self.vus)
        yield vus
        for name, text, value in (
            ("kubeload_worker_iterations", "Iterations started.", self.iterations),
            ("kubeload_worker_dropped_iterations", "Iterations dropped because every VU was busy.",
             self.dropped_iterations),
            ("kubeload_worker_token_unauthorized", "Responses 401 that asked for a new token.",
             self.unauthorized_count),
        ):
            counter = CounterMetricFamily(name, text, labels=base)
            counter.add_metric(self._labels, value)
            yield counter


def hdr_bucket_counts(histogram: Any, bounds: Sequence[float]) -> list[int]:
    """Non-cumulative counts of an HdrHistogram of microseconds per bucket of `bounds`
    (seconds, sorted), the last one `+Inf`: each bound takes the HdrHistogram slot holding
    it whole (values up to its highest equivalent value, within the histogram's precision)."""
    counts = histogram.counts
    size = int(histogram.counts_len)
    result: list[int] = []
    start = 0
    for bound in bounds:
        end = min(size, int(histogram.get_counts_array_index(round(bound * 1_000_000))) + 1)
        result.append(sum(counts[start:end]) if end > start else 0)
        start = max(start, end)
    result.append(sum(counts[start:size]) if size > start else 0)
    return result


def _bucket_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


# -------------------------------------------------------------------------------- refresher


class RefresherMetrics(Collector):
    """The refresher's series, labelled `loadtest` and `pod`; token age is computed at scrape."""

    def __init__(self, registry: CollectorRegistry, loadtest: str, pod: str) -> None:
        self._labels = [loadtest, pod]
        self._lock = threading.Lock()
        self._version: int | None = None
        self._obtained_at = 0.0
        self._expires_at = 0.0
        self._refreshes: dict[str, int] = {}
        self._failures: dict[str, int] = {}
        self._leader = False
        registry.register(self)

    def refreshed(self, version: int, obtained_at: float, expires_at: float, trigger: str = "scheduled") -> None:
        """A new token (epoch seconds); `trigger` is `initial`, `scheduled` or `forced` (after a 401)."""
        with self._lock:
            self._version, self._obtained_at, self._expires_at = version, obtained_at, expires_at
            self._refreshes[trigger] = self._refreshes.get(trigger, 0) + 1

    def adopted(self, version: int, obtained_at: float, expires_at: float) -> None:
        """The current token is one another replica obtained (not counted as a refresh)."""
        with self._lock:
            self._version, self._obtained_at, self._expires_at = version, obtained_at, expires_at

    def failed(self, reason: str) -> None:
        """A failed attempt to obtain a token; `reason` must not contain secrets."""
        with self._lock:
            self._failures[reason] = self._failures.get(reason, 0) + 1

    def set_leader(self, leader: bool) -> None:
        """Whether this replica holds the refresher lease."""
        with self._lock:
            self._leader = leader

    def collect(self) -> Iterable[Metric]:
        base = ["loadtest", "pod"]
        with self._lock:
            version, obtained, expires = self._version, self._obtained_at, self._expires_at
            refreshes, failures, leader = dict(self._refreshes), dict(self._failures), self._leader
        now = time.time()
        leader_family = GaugeMetricFamily("kubeload_refresher_leader", "1 when this replica holds the lease.",
                                          labels=base)
        leader_family.add_metric(self._labels, 1 if leader else 0)
        yield leader_family
        if version is not None:
            for name, text, value in (
                ("kubeload_refresher_token_version", "Version of the current token.", float(version)),
                ("kubeload_refresher_token_age_seconds", "Seconds since the current token was obtained.",
                 max(0.0, now - obtained)),
                ("kubeload_refresher_token_expires_in_seconds", "Seconds until the current token expires.",
                 expires - now),
            ):
                gauge = GaugeMetricFamily(name, text, labels=base)
                gauge.add_metric(self._labels, value)
                yield gauge
        refresh_family = CounterMetricFamily("kubeload_refresher_refreshes", "Tokens obtained, by trigger.",
                                             labels=[*base, "trigger"])
        for trigger, count in sorted(refreshes.items()):
            refresh_family.add_metric([*self._labels, trigger], count)
        yield refresh_family
        failure_family = CounterMetricFamily("kubeload_refresher_refresh_failures",
                                             "Failed attempts to obtain a token, by reason.",
                                             labels=[*base, "reason"])
        for reason, count in sorted(failures.items()):
            failure_family.add_metric([*self._labels, reason], count)
        yield failure_family


# ------------------------------------------------------------------------ child processes


class ChildProcessesCollector(Collector):
    """Merges the expositions of a pod's child processes, adding a `process` label (0, 1, ...).

    A child that does not answer within `timeout` is left out of that scrape.
    """

    def __init__(self, urls: Sequence[str], timeout: float = 1.0) -> None:
        self._urls = list(urls)
        self._timeout = timeout

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for index, url in enumerate(self._urls):
            try:
                with urllib.request.urlopen(url, timeout=self._timeout) as response:  # noqa: S310 - loopback
                    text = response.read().decode("utf-8")
            except OSError:
                continue
            for family in text_string_to_metric_families(text):
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                for sample in family.samples:
                    target.add_sample(sample.name, {**sample.labels, "process": str(index)}, sample.value,
                                      sample.timestamp, sample.exemplar)
        yield from merged.values()
