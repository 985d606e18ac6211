"""Shared pieces of the benches: a Redis for the worker, running a real `kubeload worker`.

The worker runs exactly as in a pod: it reads a plan from Redis, runs its VUs, appends
metrics deltas to the run's stream; the bench merges them with `kubeload.metrics` and
divides the requests by the plan's duration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nginx_target import free_port, pinned

__all__ = ["BenchRedis", "WorkerResult", "WorkerRun", "bench_redis", "run_worker", "start_worker", "venv_bin"]

REDIS_PASSWORD = "bench-password"


def venv_bin(name: str) -> str:
    """A console script next to the running interpreter (the project's .venv)."""
    candidate = Path(sys.executable).parent / name
    if not candidate.exists():
        raise SystemExit(f"{candidate} is missing: run `make setup`")
    return str(candidate)


@dataclass
class BenchRedis:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, password=REDIS_PASSWORD)


@contextmanager
def bench_redis(core: int | None = 0) -> Iterator[BenchRedis]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    directory = tempfile.mkdtemp(prefix="kubeload-bench-redis-")
    port = free_port()
    proc = subprocess.Popen(
        pinned(core, [binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", REDIS_PASSWORD,
                      "--save", "", "--appendonly", "no", "--dir", directory]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        server = BenchRedis(port, proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                server.client().ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class WorkerResult:
    requests: int
    failed: int
    seconds: float
    p50_ms: float
    p99_ms: float
    exit_code: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


@dataclass
class WorkerRun:
    """A started `kubeload worker` and its run's keys."""

    proc: subprocess.Popen[bytes]
    keys: Any
    redis: BenchRedis
    seconds: float

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def result(self, exit_code: int) -> WorkerResult:
        from kubeload.metrics import MetricsTotals, parse_entry

        totals = MetricsTotals()
        totals.add_all(parse_entry(f) for _, f in self.redis.client().xrange(self.keys.metrics))
        merged = totals.requests()
        return WorkerResult(merged.reqs, merged.failed, self.seconds, merged.percentile_ms(50),
                            merged.percentile_ms(99), exit_code)


def start_worker(redis: BenchRedis, url: str, load: dict[str, Any], *, core: int | None, seconds: float,
                 engine: str = "pyreqwest", processes: int = 1, start_in: float = 2.0) -> WorkerRun:
    """Write a one-worker plan with `load` against `url` and start `kubeload worker` on `core`."""
    from kubeload.protocol import Plan, RunKeys

    keys = RunKeys("bench", "engine", uuid.uuid4().hex[:8])
    spec = {"target": {"baseURL": url}, "requests": [{"name": "root", "path": "/"}], "load": load}
    plan = Plan(run_id=keys.run_id, start_at=time.time() + start_in, workers=1, spec=spec, metrics_interval=2.0)
    redis.client().set(keys.plan, plan.to_json())
    argv = [venv_bin("kubeload"), "worker", "--redis-url", redis.url, "--run",
            f"{keys.namespace}/{keys.name}/{keys.run_id}", "--processes", str(processes), "--engine", engine]
    env = dict(os.environ, KUBELOAD_REDIS_PASSWORD=REDIS_PASSWORD)
    proc = subprocess.Popen(pinned(core, argv), env=env, stdout=subprocess.DEVNULL)
    return WorkerRun(proc, keys, redis, seconds)


def run_worker(redis: BenchRedis, url: str, *, core: int | None, seconds: float, vus: int,
               think_time: str = "0s", engine: str = "pyreqwest", processes: int = 1,
               start_in: float = 2.0) -> WorkerResult:
    """One `kubeload worker` on `core`, `vus` constant VUs for `seconds` against `url`."""
    load = {"executor": "constant-vus", "vus": vus, "duration": f"{seconds:g}s", "thinkTime": think_time,
            "gracefulStop": "2s"}
    run = start_worker(redis, url, load, core=core, seconds=seconds, engine=engine, processes=processes,
                       start_in=start_in)
    return run.result(run.wait(seconds + start_in + 60))
