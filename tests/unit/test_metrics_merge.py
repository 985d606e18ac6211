"""Metrics deltas: recorded per process, merged exactly by the reader, summarised like k6."""

from __future__ import annotations

import json
import random

import pytest

from kubeload.metrics import MetricsTotals, new_histogram, parse_entry
from kubeload.worker.recorder import Recorder


def delta_of(recorder: Recorder, interval: int, durations_us: list[int], *, name: str = "home",
             status: int = 200, failure: str = "", vus: int = 1) -> dict[str, object]:
    stats = recorder.stats_for(name)
    for duration in durations_us:
        stats.record(status, duration, 100, 200, failure)
        recorder.iterations += 1
    return recorder.take_delta(interval=interval, start=1000.0 + interval, end=1001.0 + interval, vus=vus,
                               vus_max=vus)


def test_merged_percentiles_equal_those_of_one_histogram_of_everything() -> None:
    rng = random.Random(7)
    processes = [Recorder("w0", 0), Recorder("w0", 1), Recorder("w1", 0)]
    everything = new_histogram()
    totals = MetricsTotals()
    for interval in range(4):
        for recorder in processes:
            # Very different latency profiles per process: averaging percentiles would be wrong.
            scale = 1_000 if recorder.process == 0 else 250_000
            values = [int(rng.expovariate(1 / scale)) + 1 for _ in range(500)]
            for value in values:
                everything.record_value(value)
            assert totals.add(delta_of(recorder, interval, values))
    merged = totals.requests("home")
    assert merged.reqs == 6000
    for pct in (50, 90, 95, 99, 99.9):
        assert merged.histogram.get_value_at_percentile(pct) == everything.get_value_at_percentile(pct)
    values = totals.values("http_req_duration")
    assert values["p(95)"] == pytest.approx(everything.get_value_at_percentile(95) / 1000)
    assert values["min"] <= values["med"] <= values["p(90)"] <= values["p(95)"] <= values["p(99)"] <= values["max"]


def test_exact_min_max_avg_and_counters() -> None:
    recorder = Recorder("w0", 0)
    totals = MetricsTotals()
    totals.add(delta_of(recorder, 0, [1_000, 3_000]))
    totals.add(delta_of(recorder, 1, [2_000], status=503, failure="status"))
    totals.add(delta_of(recorder, 1, [70_000_000], status=0, failure="timeout"))  # clamped to 60 s
    values = totals.values("http_req_duration")
    assert values["min"] == 1.0
    assert values["max"] == 60_000.0
    assert values["avg"] == pytest.approx((1 + 3 + 2 + 60_000) / 4)
    failed = totals.values("http_req_failed")
    assert failed["rate"] == 0.5
    home = totals.requests("home")
    assert home.status == {"200": 2, "503": 1, "0": 1}
    assert home.failures == {"status": 1, "timeout": 1}
    assert home.sent == 400 and home.received == 800
    assert totals.values("http_reqs")["count"] == 4
    assert totals.values("iterations")["count"] == 4
    assert totals.values("http_req_duration", "other") == {}


def test_a_delta_sent_twice_is_counted_once_and_the_wire_format_round_trips() -> None:
    recorder = Recorder("w0", 0)
    delta = delta_of(recorder, 0, [5_000, 6_000])
    entry = {b"payload": json.dumps(delta).encode(), b"worker": b"w0"}
    totals = MetricsTotals()
    assert totals.add(parse_entry(entry)) is True
    assert totals.add(parse_entry(entry)) is False
    assert totals.requests().reqs == 2
    with pytest.raises(ValueError, match="version"):
        parse_entry({"payload": json.dumps({**delta, "v": 99})})


def test_recorder_starts_each_interval_from_zero() -> None:
    recorder = Recorder("w0", 0)
    stats = recorder.stats_for("home")
    first = delta_of(recorder, 0, [1_000])
    second = recorder.take_delta(interval=1, start=1001.0, end=1002.0, vus=0, vus_max=1)
    assert first["seq"] == 0 and second["seq"] == 1
    assert second["requests"] == {} and second["iterations"] == 0
    assert recorder.stats_for("home") is stats  # VUs keep their reference across intervals
    assert stats.histogram.get_total_count() == 0


def test_series_lines_up_processes_per_interval_and_vus_are_summed() -> None:
    a, b = Recorder("w0", 0), Recorder("w1", 0)
    totals = MetricsTotals()
    totals.add_all([delta_of(a, 0, [1_000] * 10, vus=3), delta_of(b, 0, [1_000] * 30, vus=4),
                    delta_of(a, 1, [2_000] * 10, vus=5)])
    series = totals.series()
    assert [p.interval for p in series] == [0, 1]
    assert (series[0].reqs, series[0].vus, series[0].processes) == (40, 7, 2)
    assert series[0].rps == pytest.approx(40.0)
    assert series[1].as_dict()["p50"] == pytest.approx(2.0, rel=0.01)
    # Current VUs: each process's latest report (a: 5 at interval 1, b: 4 at interval 0).
    assert totals.vus == 9
    assert totals.values("vus") == {"value": 9.0, "min": 5.0, "max": 7.0}


def test_lookup_answers_any_percentile_a_threshold_names() -> None:
    recorder = Recorder("w0", 0)
    totals = MetricsTotals()
    totals.add(delta_of(recorder, 0, list(range(1_000, 101_000, 1_000))))
    looked_up = totals.lookup("http_req_duration", None)
    assert looked_up.get("p(99.9)") == pytest.approx(100.0, rel=0.01)
    assert looked_up.get("p(50)") == pytest.approx(50.0, rel=0.01)
    assert looked_up.get("rate") is None
    assert totals.lookup("http_req_duration", "nobody").get("p(95)") is None


def test_gauges_keep_each_process_latest_value_and_counters_add_up() -> None:
    a, b = Recorder("w0", 0), Recorder("w0", 1)
    totals = MetricsTotals()
    for recorder, version, unauthorized in ((a, 3, 1), (b, 4, 2)):
        totals.add(recorder.take_delta(interval=0, start=0.0, end=1.0, vus=0, vus_max=0,
                                       extra_counters={"token_unauthorized": unauthorized},
                                       gauges={"token_version": version}))
    assert totals.gauge("token_version") == {"min": 3.0, "max": 4.0, "value": 4.0, "processes": 2.0}
    assert totals.values("token_unauthorized")["count"] == 3
    summary = totals.summary()
    assert summary["metrics"]["token_version"]["min"] == 3.0
    assert summary["metrics"]["token_unauthorized"]["count"] == 3
