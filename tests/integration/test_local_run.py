"""`kubeload run` as a subprocess against real servers on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.manifests import manifest
from support.procs import free_port, processes_of_run, stop_process, wait_for_port
from support.target import http_target

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def descendants(root: int) -> dict[int, str]:
    """Every process below `root`, with its command name (comm)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm_end = stat.rindex(")")
        names[int(entry.name)] = stat[stat.index("(") + 1:comm_end]
        parents[int(entry.name)] = int(stat[comm_end + 2:].split()[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = names[pid]
                frontier.append(pid)
    return found


def alive(pids: dict[int, str]) -> dict[int, str]:
    still = {}
    for pid, name in pids.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if name in stat and " Z " not in stat:
            still[pid] = name
    return still


def run(kubeload_bin: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kubeload_bin, "run", *args, "--plain"], capture_output=True, text=True, timeout=timeout)


def test_summary_matches_the_targets_count_and_passes(kubeload_bin: str, tmp_path: Path) -> None:
    with http_target() as target:
        path = manifest(tmp_path, "count-match", target.url,
                        {"executor": "constant-vus", "vus": 10, "duration": "6s", "gracefulStop": "5s"},
                        thresholds=[{"metric": "http_req_failed", "condition": "rate<0.01"}])
        export, report = tmp_path / "summary.json", tmp_path / "report.html"
        result = run(kubeload_bin, str(path), "--summary-export", str(export), "--out", str(report))
        served = target.stats()["requests"]
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(export.read_text())
    counted = summary["metrics"]["http_reqs"]["count"]
    assert served > 100
    assert abs(counted - served) <= served * 0.01, (counted, served)
    assert summary["verdict"] == "passed"
    assert summary["thresholds"]["http_req_failed"]["rate<0.01"]["ok"] is True
    for key in ("avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"):
        assert key in summary["metrics"]["http_req_duration"]
    assert summary["metrics"]["vus_max"]["value"] == 10
    assert "http_reqs" in result.stdout and "verdict: PASSED" in result.stdout
    html = report.read_text()
    data = json.loads(re.search(r'id="kubeload-data">(.*?)</script>', html, re.S)[1])  # type: ignore[index]
    assert len(data["timeline"]) >= 4 and max(p["rps"] for p in data["timeline"]) > 0
    assert "<polyline" in html and "http://" not in html.replace(target.url, "")  # nothing loaded from the net
    assert processes_of_run("count-match") == []


def test_failing_threshold_exits_99(kubeload_bin: str, tmp_path: Path) -> None:
    with http_target() as target:
        path = manifest(tmp_path, "slow-fails", target.url + "", {"executor": "constant-vus", "vus": 4,
                        "duration": "4s", "gracefulStop": "5s"},
                        requests=[{"name": "slow", "path": "/slow?sleep_ms=30"}],
                        thresholds=[{"metric": "http_req_duration", "condition": "p(95)<10"}])
        export = tmp_path / "summary.json"
        result = run(kubeload_bin, str(path), "--summary-export", str(export))
    assert result.returncode == 99, result.stdout + result.stderr
    summary = json.loads(export.read_text())
    assert summary["verdict"] == "failed"
    assert summary["thresholds"]["http_req_duration"]["p(95)<10"]["ok"] is False
    assert "✗ http_req_duration: p(95)<10" in result.stdout


def test_abort_on_fail_stops_the_run_early(kubeload_bin: str, tmp_path: Path) -> None:
    with http_target() as target:
        path = manifest(tmp_path, "aborts", target.url, {"executor": "constant-vus", "vus": 4, "duration": "60s",
                                                          "gracefulStop": "2s"},
                        requests=[{"name": "broken", "path": "/x?status=500"}],
                        thresholds=[{"metric": "http_req_failed", "condition": "rate<0.1", "abortOnFail": True,
                                     "delayAbortEval": "2s"}])
        started = time.monotonic()
        result = run(kubeload_bin, str(path), "--summary-export", str(tmp_path / "s.json"))
        took = time.monotonic() - started
    assert result.returncode == 99, result.stdout + result.stderr
    assert took < 20, f"an aborting threshold must stop a 60 s run early, took {took:.1f}s"
    assert "aborting: threshold http_req_failed rate<0.1 failed" in result.stdout
    assert json.loads((tmp_path / "s.json").read_text())["reason"].startswith("threshold http_req_failed")


def test_invalid_manifest_exits_2_with_field_errors(kubeload_bin: str) -> None:
    result = run(kubeload_bin, str(ROOT / "examples" / "invalid" / "zero-stage-duration.yaml"))
    assert result.returncode == 2
    assert "spec.load.stages[0].duration: a stage's duration must be positive" in result.stderr


def test_bad_option_exits_2(kubeload_bin: str) -> None:
    result = run(kubeload_bin, str(ROOT / "examples" / "quickstart.yaml"), "--workers", "0")
    assert result.returncode == 2 and "--workers" in result.stderr


def test_sigint_stops_cleanly_and_leaves_nothing_running(kubeload_bin: str, tmp_path: Path) -> None:
    with http_target() as target:
        path = manifest(tmp_path, "interrupted", target.url,
                        {"executor": "constant-vus", "vus": 5, "duration": "60s", "gracefulStop": "3s"})
        proc = subprocess.Popen([kubeload_bin, "run", str(path), "--plain"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while target.stats()["requests"] < 50 and time.monotonic() < deadline:
            time.sleep(0.2)
        running = descendants(proc.pid)
        assert any("redis" in name for name in running.values()), running
        assert len(running) >= 3, f"redis-server and worker processes should be running: {running}"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "stopping" in out and "http_reqs" in out
    assert alive(running) == {}  # no worker, refresher or redis-server left
    assert processes_of_run("interrupted") == []


def test_quickstart_example_rotates_the_token_with_no_401(kubeload_bin: str, tmp_path: Path) -> None:
    """examples/quickstart.yaml (what `make demo` runs) against the demo target, on a free port."""
    port = free_port()
    text = (ROOT / "examples" / "quickstart.yaml").read_text().replace("8787", str(port))
    path = tmp_path / "quickstart.yaml"
    path.write_text(text)
    secret = "planted-demo-secret-4711"
    env = {**os.environ, "KUBELOAD_DEMO_CLIENT_SECRET": secret}
    demo = subprocess.Popen([kubeload_bin, "demo-target", "--port", str(port), "--token-lifetime", "6s",
                             "--secrets-from-env"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        export, report = tmp_path / "summary.json", tmp_path / "report.html"
        result = subprocess.run([kubeload_bin, "run", str(path), "--plain", "--summary-export", str(export),
                                 "--out", str(report)], env=env, capture_output=True, text=True, timeout=120)
    finally:
        stop_process(demo)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(export.read_text())
    detail = json.dumps({k: summary[k] for k in ("token", "errors", "status")}) + result.stdout[-3000:]
    assert summary["token"]["refreshes"] >= 4, detail
    assert summary["token"]["unauthorized"] == 0, detail
    assert summary["metrics"]["http_req_failed"]["passes"] == 0, detail
    for text_out in (result.stdout, result.stderr, report.read_text(), export.read_text()):
        assert secret not in text_out
