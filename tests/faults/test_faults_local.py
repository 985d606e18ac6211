"""Faults injected into `kubeload run` (real processes on loopback): what must still hold.

Every case states what is injected and asserts numbers. Each run is short (a few seconds of
load) and bounded by a subprocess timeout; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import yaml
from support.manifests import manifest
from support.procs import RedisServer, command_line, free_port, processes_of_run, stop_process
from support.target import http_target
from support.token_watch import TokenWatch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS / "integration") not in sys.path:
    sys.path.insert(0, str(TESTS / "integration"))

from test_token_harness import CLIENT_SECRET, DEMO_ENV, Demo, demo_target  # noqa: E402

from kubeload.protocol import RunKeys  # noqa: E402

pytestmark = pytest.mark.faults

REDIS_PASSWORD_PLANTED = "planted-redis-pw-9c41e7d2"


def run(kubeload_bin: str, path: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 90) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    export, report = tmp_path / "summary.json", tmp_path / "report.html"
    result = subprocess.run([kubeload_bin, "run", str(path), "--plain", "--summary-export", str(export),
                             "--out", str(report), *args], capture_output=True, text=True, timeout=timeout,
                            env=env)
    return result, export, report


def detail(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


# -- target faults ------------------------------------------------------------------------------

def test_slow_target_fails_with_reason_timeout_and_stops_in_time(kubeload_bin: str, tmp_path: Path) -> None:
    """Injected: every response takes 2 s, spec.target.timeout is 300ms.
    Must hold: every request fails with reason `timeout` (errors.timeout == http_reqs), no request
    succeeds, and the run ends within duration (4 s) + start delay + gracefulStop (2 s) + margin."""
    with http_target() as target:
        path = manifest(tmp_path, "fault-slow", target.url,
                        {"executor": "constant-vus", "vus": 5, "duration": "4s", "gracefulStop": "2s"},
                        requests=[{"name": "slow", "path": "/slow?sleep_ms=2000"}])
        path_doc = yaml.safe_load(path.read_text())
        path_doc["spec"]["target"]["timeout"] = "300ms"
        path.write_text(yaml.safe_dump(path_doc))
        started = time.monotonic()
        result, export, _ = run(kubeload_bin, path, tmp_path, timeout=60)
        took = time.monotonic() - started
    summary = json.loads(export.read_text())
    errors = summary["errors"]
    reqs = summary["metrics"]["http_reqs"]["count"]
    assert reqs >= 5 * 4 * 2, (reqs, detail(result))  # ~5 VUs x 4 s / 0.3 s each
    assert errors.get("timeout", 0) == reqs, (errors, reqs)
    assert set(errors) == {"timeout"}, errors
    assert summary["metrics"]["http_req_failed"]["rate"] == 1.0
    # duration 4 s + START_DELAY 2 s + gracefulStop 2 s + process start/merge margin
    assert took < 4 + 2 + 2 + 8, f"run took {took:.1f}s"
    assert result.returncode in (0, 99), detail(result)
    assert processes_of_run("fault-slow") == []


def test_stalled_target_stops_within_graceful_stop(kubeload_bin: str, tmp_path: Path) -> None:
    """Injected: after ~1.5 s of load the target holds every request (stall), with the default
    10 s request timeout and gracefulStop 2s, duration 5s.
    Must hold: the run ends within start delay (2 s) + 5 s + gracefulStop 2 s + margin, i.e. the
    workers give up the hung requests at gracefulStop instead of waiting for the 10 s timeout or
    being killed by the runner ("did not stop in time" is never printed); exit 0 (no threshold);
    the requests served before the stall are all counted."""
    with http_target() as target:
        path = manifest(tmp_path, "fault-stall", target.url,
                        {"executor": "constant-vus", "vus": 4, "duration": "5s", "gracefulStop": "2s",
                         "thinkTime": "10ms"})
        started = time.monotonic()
        proc = subprocess.Popen([kubeload_bin, "run", str(path), "--plain", "--summary-export",
                                 str(tmp_path / "summary.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            wait_until(lambda: target.stats()["requests"] > 50, 20, "no load reached the target")
            time.sleep(1.5)
            target.control(stall=True)
            out, err = proc.communicate(timeout=60)
        finally:
            stop_process(proc)
        took = time.monotonic() - started
        stats = target.stats()
        target.control(stall=False)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert stats["in_flight"] >= 1, stats  # the stall held requests until the run ended
    assert "did not stop in time" not in out + err, detail(result)
    assert took < 2 + 5 + 2 + 6, f"run took {took:.1f}s: {detail(result)}"
    assert result.returncode == 0, detail(result)
    summary = json.loads((tmp_path / "summary.json").read_text())
    counted = summary["metrics"]["http_reqs"]["count"]
    completed = stats["requests"] - stats["in_flight"]
    assert completed > 100, stats
    # Every completed request is counted; held ones may count as interrupted failures.
    assert completed <= counted <= stats["requests"], (counted, stats)
    assert processes_of_run("fault-stall") == []


def test_refused_connections_count_connect_errors_and_exit_99(kubeload_bin: str, tmp_path: Path) -> None:
    """Injected: baseURL points at a free loopback port where nothing listens.
    Must hold: errors.connect > 0 and equals every request, nothing else succeeds, the threshold
    `http_req_failed rate<0.01` fails (exit 99), and the run does not hang (bounded wall time)."""
    port = free_port()
    path = manifest(tmp_path, "fault-refused", f"http://127.0.0.1:{port}",
                    {"executor": "constant-vus", "vus": 3, "duration": "3s", "gracefulStop": "2s",
                     "thinkTime": "20ms"},
                    thresholds=[{"metric": "http_req_failed", "condition": "rate<0.01"}])
    started = time.monotonic()
    result, export, _ = run(kubeload_bin, path, tmp_path, timeout=60)
    took = time.monotonic() - started
    assert result.returncode == 99, detail(result)
    summary = json.loads(export.read_text())
    reqs = summary["metrics"]["http_reqs"]["count"]
    assert summary["errors"].get("connect", 0) > 0, summary["errors"]
    assert summary["errors"]["connect"] == reqs, (summary["errors"], reqs)
    assert summary["metrics"]["http_req_failed"]["rate"] == 1.0
    assert summary["thresholds"]["http_req_failed"]["rate<0.01"]["ok"] is False
    assert took < 3 + 2 + 2 + 8, f"run took {took:.1f}s"
    assert processes_of_run("fault-refused") == []


# -- Redis restarted mid-run --------------------------------------------------------------------

def auth_spec(demo: Demo, **extra: Any) -> dict[str, Any]:
    return {"grant": "client_credentials", "tokenURL": demo.token_url, "clientID": {"value": "demo-client"},
            "clientSecret": {"env": "T_CLIENT_SECRET"}, **extra}


def run_env(redis_password: str) -> dict[str, str]:
    return {**os.environ, **DEMO_ENV, "T_CLIENT_SECRET": CLIENT_SECRET, "KUBELOAD_REDIS_PASSWORD": redis_password}


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def served_by(demo: Demo) -> int:
    stats = demo.stats()
    return int(stats["served"]) + int(stats["unauthorized"])


def test_redis_restart_mid_run_keeps_load_and_counts(kubeload_bin: str, redis: RedisServer,
                                                     tmp_path: Path) -> None:
    """Injected: the external Redis (`--redis-url`, password from KUBELOAD_REDIS_PASSWORD) is stopped
    for 3 s in the middle of a 12 s run, then started again on the same port (empty: no persistence).
    Must hold: the target keeps receiving requests during the gap (cached token), the run exits 0,
    no 401, and the requests counted by the target equal the summary's http_reqs ±1 %."""
    with demo_target(tmp_path, lifetime="60s", latency="2ms") as demo:
        path = manifest(tmp_path, "fault-redis", demo.url,
                        {"executor": "constant-vus", "vus": 4, "duration": "12s", "gracefulStop": "3s",
                         "thinkTime": "10ms"},
                        requests=[{"name": "items", "path": "/api/items"}], auth=auth_spec(demo),
                        thresholds=[{"metric": "http_req_failed", "condition": "rate<0.01"}])
        export, report = tmp_path / "summary.json", tmp_path / "report.html"
        proc = subprocess.Popen([kubeload_bin, "run", str(path), "--plain", "--redis-url", redis.url,
                                 "--summary-export", str(export), "--out", str(report)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=run_env(redis.password))
        try:
            wait_until(lambda: served_by(demo) > 200, 30, "no load reached the target")
            time.sleep(2)
            redis.stop()
            before_gap = served_by(demo)
            time.sleep(3)
            during_gap = served_by(demo) - before_gap
            redis.start()
            out, err = proc.communicate(timeout=60)
        finally:
            stop_process(proc)
        served = served_by(demo)
        stats = demo.stats()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert result.returncode == 0, detail(result)
    assert during_gap > 100, f"load must go on while Redis is down: {during_gap} requests in 3 s"
    assert stats["unauthorized"] == 0, stats
    summary = json.loads(export.read_text())
    counted = summary["metrics"]["http_reqs"]["count"]
    assert abs(counted - served) <= served * 0.01, (counted, served, detail(result))
    assert summary["verdict"] == "passed"
    assert processes_of_run("fault-redis") == []


# -- auth server down longer than the token's lifetime ------------------------------------------

def run_with_auth_outage(kubeload_bin: str, tmp_path: Path, name: str, on_expired: str,
                         redis_url: str | None = None, redis_password: str = "", duration: int = 14,
                         argv_seen: list[str] | None = None) -> tuple[
                             subprocess.CompletedProcess[str], Path, Path, dict[str, Any], float]:
    """A `duration` s run (default 14) against the demo API with 3 s tokens; after ~2 s of load the token endpoint
    answers 500 for 8 s (longer than the token's lifetime). Returns the result, the summary and
    report paths, the demo's stats and the wall time; `argv_seen` gets the command lines of the
    run's processes (runner, refresher, workers) once load is flowing."""
    with demo_target(tmp_path, lifetime="3s", latency="2ms") as demo:
        path = manifest(tmp_path, name, demo.url,
                        {"executor": "constant-vus", "vus": 3, "duration": f"{duration}s", "gracefulStop": "2s",
                         "thinkTime": "20ms"},
                        requests=[{"name": "items", "path": "/api/items"}],
                        auth=auth_spec(demo, onExpired=on_expired))
        export, report = tmp_path / "summary.json", tmp_path / "report.html"
        argv = [kubeload_bin, "run", str(path), "--plain", "--summary-export", str(export), "--out", str(report)]
        if redis_url:
            argv += ["--redis-url", redis_url]
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=run_env(redis_password))
        try:
            wait_until(lambda: demo.stats()["served"] > 50, 30, "no load reached the demo API")
            if argv_seen is not None:
                argv_seen.extend(command_line(pid) for pid in [proc.pid, *processes_of_run(name)])
            demo.fail_auth(8)
            out, err = proc.communicate(timeout=60)
        finally:
            stop_process(proc)
        took = time.monotonic() - started
        stats = demo.stats()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), export, report, stats, took


def test_auth_outage_with_on_expired_fail_fails_the_run_clearly(kubeload_bin: str, tmp_path: Path) -> None:
    """Injected: the token endpoint fails (500) for 8 s; tokens live 3 s; auth.onExpired: Fail.
    Must hold: exit 1, stderr/stdout say the token expired, the run stops early (at the expiry,
    ~5-8 s into the load, not after its 24 s), and the 401s the target saw are not a flood counted
    as load (at most a few per VU: the run stops within one poll of the expiry)."""
    result, export, _, stats, took = run_with_auth_outage(kubeload_bin, tmp_path, "fault-auth-fail", "Fail",
                                                           duration=24)
    assert result.returncode == 1, detail(result)
    assert re.search(r"token expired", result.stdout + result.stderr), detail(result)
    assert stats["authFailuresInjected"] >= 1, stats
    summary = json.loads(export.read_text())
    assert summary["verdict"] == "failed"
    assert "token expired" in summary["reason"], summary["reason"]
    counted = summary["metrics"]["http_reqs"]["count"]
    seen = stats["served"] + stats["unauthorized"]
    assert abs(counted - seen) <= seen * 0.01, (counted, stats)
    assert counted - summary["metrics"]["http_req_failed"]["passes"] >= 50, summary["metrics"]
    # 3 VUs at ~20 ms per iteration would flood ~150 401s a second; a 401 makes a VU wait (up to
    # 5 s) for a new token and retry once, and the run stops within a poll of the expiry: at most
    # a few 401s per VU.
    assert stats["unauthorized"] <= 3 * 4, stats
    assert took < 2 + 24 - 6, f"the run should stop at the expiry, not run its 24 s: took {took:.1f}s"
    assert processes_of_run("fault-auth-fail") == []


def test_auth_outage_with_on_expired_continue_counts_401s(kubeload_bin: str, tmp_path: Path) -> None:
    """Injected: the same 8 s token-endpoint outage with 3 s tokens; auth.onExpired: Continue.
    Must hold: the run completes (exit 0: no threshold set), the 401s of the outage are counted
    (token.unauthorized > 0 and http_req_failed > 0, consistent with what the demo API rejected),
    http_reqs matches what the demo API saw ±1 %, and the run ends on time (no hang)."""
    result, export, _, stats, took = run_with_auth_outage(kubeload_bin, tmp_path, "fault-auth-cont", "Continue")
    assert result.returncode == 0, detail(result)
    assert took < 2 + 14 + 2 + 10, f"run took {took:.1f}s"
    summary = json.loads(export.read_text())
    failed = summary["metrics"]["http_req_failed"]["passes"]
    assert summary["token"]["unauthorized"] > 0, summary["token"]
    assert failed > 0, summary["metrics"]["http_req_failed"]
    assert stats["unauthorized"] > 0, stats
    # Every 401 the demo API sent is seen by the workers; a request fails after its one retry.
    assert summary["token"]["unauthorized"] == stats["unauthorized"], (summary["token"], stats)
    assert failed <= stats["unauthorized"], (failed, stats)
    # The refresher kept trying through the outage. Whether a new token arrives before the end is
    # left open: after the expiry its backoff may already be at backoff-max (see the report).
    assert summary["token"]["failures"] >= 2, summary["token"]
    assert summary["token"]["state"] in ("ok", "expired"), summary["token"]
    counted, seen = summary["metrics"]["http_reqs"]["count"], stats["served"] + stats["unauthorized"]
    assert abs(counted - seen) <= seen * 0.01, (counted, stats)
    assert stats["issuedTotal"] >= 2, stats  # the first token and at least one refresh before the outage
    assert processes_of_run("fault-auth-cont") == []


# -- secret scan --------------------------------------------------------------------------------

def redis_values(client: redis_lib.Redis) -> dict[str, str]:
    """Every key of the Redis with its value rendered as text (hash, stream, list, set, string)."""
    out: dict[str, str] = {}
    for raw_key in client.scan_iter(count=1000):
        key = raw_key.decode(errors="replace")
        kind = client.type(raw_key).decode()
        value: Any
        if kind == "string":
            value = client.get(raw_key)
        elif kind == "hash":
            value = client.hgetall(raw_key)
        elif kind == "stream":
            value = client.xrange(raw_key)
        elif kind == "list":
            value = client.lrange(raw_key, 0, -1)
        elif kind == "set":
            value = client.smembers(raw_key)
        elif kind == "zset":
            value = client.zrange(raw_key, 0, -1, withscores=True)
        else:
            value = kind
        out[key] = repr(value)
    return out


@pytest.mark.parametrize("on_expired", ["Fail", "Continue"])
def test_no_planted_secret_leaks_anywhere(kubeload_bin: str, tmp_path: Path, on_expired: str) -> None:
    """Injected: the auth-outage run above (with its error path: failed refreshes, expiry,
    401s) with a planted client secret (`clientSecret: {env: T_CLIENT_SECRET}`) and a planted
    Redis password (external Redis, KUBELOAD_REDIS_PASSWORD).
    Must hold: neither planted string, nor the last access token, appears in stdout, stderr, the
    summary JSON, the HTML report, or any Redis value other than the token hash itself
    (`token:stats`, the plan, the metrics stream, ... are all scanned), nor in the command line of
    any process of the run (visible to every local user through `ps`)."""
    from support.procs import redis_server

    argv_seen: list[str] = []
    with redis_server(password=REDIS_PASSWORD_PLANTED) as server:
        result, export, report, _, _ = run_with_auth_outage(
            kubeload_bin, tmp_path, f"fault-leak-{on_expired.lower()}", on_expired,
            redis_url=server.url, redis_password=server.password, argv_seen=argv_seen)
        client = redis_lib.Redis(host="127.0.0.1", port=server.port, password=server.password)
        try:
            values = redis_values(client)
            token_keys = [k for k in values if k.endswith(":token")]
            tokens = [v.decode() for k in token_keys if (v := client.hget(k, "token"))]
        finally:
            client.close()
    assert result.returncode == (1 if on_expired == "Fail" else 0), detail(result)
    assert len(token_keys) == 1 and tokens, sorted(values)
    kinds = {k.rsplit(":", 1)[-1] for k in values}
    assert {"plan", "metrics", "stats"} <= kinds, sorted(values)
    argv_seen = [argv for argv in argv_seen if argv]
    assert len(argv_seen) >= 3 and any(" refresher" in a for a in argv_seen), argv_seen  # runner, refresher, worker
    texts = {"stdout": result.stdout, "stderr": result.stderr, "summary": export.read_text(),
             "report": report.read_text()}
    texts |= {f"argv {i}": argv for i, argv in enumerate(argv_seen)}
    texts |= {f"redis {k}": v for k, v in values.items() if k not in token_keys}
    planted = {"client secret": CLIENT_SECRET, "redis password": REDIS_PASSWORD_PLANTED,
               "access token": tokens[0]}
    leaks = [(where, what) for where, text in texts.items() for what, secret in planted.items() if secret in text]
    assert leaks == [], leaks
    assert len(texts) >= 10


def test_wrong_client_secret_fails_fast_without_echoing_it(kubeload_bin: str, tmp_path: Path) -> None:
    """Injected: a wrong client secret (planted, via `{env}`): the token endpoint answers 401.
    Must hold: exit 1 within 20 s (no load), the message names the refresher / the HTTP status,
    and neither the wrong secret nor the right one is in stdout or stderr (the runner prints the
    refresher's log tail on this path)."""
    wrong = "planted-wrong-secret-0e9b77"
    with demo_target(tmp_path, lifetime="30s") as demo:
        path = manifest(tmp_path, "fault-badsecret", demo.url,
                        {"executor": "constant-vus", "vus": 2, "duration": "5s", "gracefulStop": "1s"},
                        requests=[{"name": "items", "path": "/api/items"}], auth=auth_spec(demo))
        started = time.monotonic()
        result = subprocess.run([kubeload_bin, "run", str(path), "--plain"], capture_output=True, text=True,
                                timeout=60, env={**run_env(""), "T_CLIENT_SECRET": wrong})
        took = time.monotonic() - started
        stats = demo.stats()
    assert result.returncode == 1, detail(result)
    assert took < 20, f"took {took:.1f}s"
    assert stats["authRejected"] >= 1 and stats["served"] == 0, stats
    output = result.stdout + result.stderr
    assert "refresher" in output and "401" in output, detail(result)
    assert wrong not in output and CLIENT_SECRET not in output
    assert processes_of_run("fault-badsecret") == []


# -- the refresher killed mid-run (no standby) --------------------------------------------------

def run_keys(client: redis_lib.Redis, name: str) -> RunKeys:
    """The keys of the one run of `name` in this Redis (found by its plan)."""
    plans = [str(k) for k in client.scan_iter(match=f"kubeload:{{local/{name}/*}}:plan")]
    assert len(plans) == 1, plans
    run_id = plans[0].split("}")[0].rsplit("/", 1)[1]
    keys = RunKeys("local", name, run_id)
    assert keys.plan == plans[0], (keys.plan, plans)
    return keys


def test_refresher_killed_mid_run_is_restarted(kubeload_bin: str, redis: RedisServer, tmp_path: Path) -> None:
    """Injected: SIGKILL of the refresher process (the only one: no standby in local mode) ~5 s into
    a 20 s run, right after it published a token version; tokens live 6 s and are refreshed at 80 %.
    Must hold: the runner says it starts the refresher again and does; the new one takes the lease
    over (the runner frees the dead one's lease) and continues with the token in Redis, which never
    lapses; exit 0; zero 401s at the target and in the summary; the summary's token section counts
    the failover and versions past the one at the kill; no secret or token in stdout or stderr."""
    name = "fault-refresher"
    with demo_target(tmp_path, lifetime="6s", latency="2ms") as demo:
        path = manifest(tmp_path, name, demo.url,
                        {"executor": "constant-vus", "vus": 4, "duration": "20s", "gracefulStop": "3s",
                         "thinkTime": "20ms"},
                        requests=[{"name": "items", "path": "/api/items"}], auth=auth_spec(demo),
                        thresholds=[{"metric": "http_req_failed", "condition": "rate<0.01"}])
        export = tmp_path / "summary.json"
        proc = subprocess.Popen([kubeload_bin, "run", str(path), "--plain", "--redis-url", redis.url,
                                 "--summary-export", str(export)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env(redis.password))
        watch: TokenWatch | None = None
        try:
            wait_until(lambda: served_by(demo) > 100, 30, "no load reached the demo API")
            client = redis_lib.Redis(port=redis.port, password=redis.password, decode_responses=True)
            keys = run_keys(client, name)
            watch = TokenWatch(redis, keys)
            time.sleep(2)
            # Kill right after a publish: the token then has its whole lifetime to cover the restart.
            current = int(client.hget(keys.token, "version") or 0)
            wait_until(lambda: int(client.hget(keys.token, "version") or 0) > current, 10,
                       "no refresh")
            version_at_kill = int(client.hget(keys.token, "version") or 0)
            refreshers = [pid for pid in processes_of_run(name) if " refresher " in command_line(pid)]
            assert len(refreshers) == 1, [command_line(pid) for pid in processes_of_run(name)]
            os.kill(refreshers[0], signal.SIGKILL)
            killed = time.monotonic()
            wait_until(lambda: watch is not None and watch.holders[-1][1] not in (None, "local-refresher-1"),
                       15, "no new lease holder")
            takeover = next(t for t, h in watch.holders if h not in (None, "local-refresher-1")) - killed
            wait_until(lambda: watch is not None and watch.versions[-1] > version_at_kill, 15,
                       "no refresh after the kill")
            first_new_version = time.monotonic() - killed
            out, err = proc.communicate(timeout=60)
        finally:
            if watch is not None:
                watch.stop()
            stop_process(proc)
        stats = demo.stats()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    summary = json.loads(export.read_text())
    token = summary["token"]
    print(f"\nrefresher killed at version {version_at_kill}: new lease holder after {takeover:.2f}s, "
          f"first new version after {first_new_version:.2f}s, longest time without a valid token "
          f"{watch.gap:.2f}s, 401s at the target {stats['unauthorized']}, summary token "
          f"{ {k: token[k] for k in ('version', 'refreshes', 'failovers', 'unauthorized', 'failures')} }, "
          f"versions {watch.versions}, holders {[h for _, h in watch.holders]}")
    assert result.returncode == 0, detail(result)
    assert "the refresher exited with code -9 (SIGKILL); starting it again" in out, detail(result)
    assert stats["unauthorized"] == 0, stats
    assert token["unauthorized"] == 0 and token["failovers"] >= 1, token
    assert token["version"] > version_at_kill and token["failures"] == 0, token
    assert watch.gap == 0.0, f"the token in Redis lapsed for {watch.gap:.2f}s"
    assert [h for _, h in watch.holders if h][:2] == ["local-refresher-1", "local-refresher-2"], watch.holders
    assert takeover < 4.0, f"the new refresher took the lease {takeover:.2f}s after the kill"
    assert summary["verdict"] == "passed"
    planted = {"client secret": CLIENT_SECRET, "redis password": redis.password,
               **{f"token {i}": t for i, t in enumerate(sorted(watch.tokens))}}
    assert len(watch.tokens) >= 3
    leaks = [(where, what) for where, text in (("stdout", out), ("stderr", err), ("summary", export.read_text()))
             for what, secret in planted.items() if secret in text]
    assert leaks == [], leaks
    assert processes_of_run(name) == []
