"""Drive real `kubeload worker` processes in tests: write the plan, start workers, watch them.

Only the standard library and the sync Redis client: the test process observes the workers the
way the operator does (heartbeat keys and the metrics stream), it never shares their memory.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib

from kubeload.metrics import MetricsTotals, parse_entry
from kubeload.protocol import Plan, RunKeys
from support.procs import RedisServer, env_with, stop_process


def make_keys() -> RunKeys:
    return RunKeys("tests", "worker", uuid.uuid4().hex[:8])


def client_for(server: RedisServer) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(server.url, password=server.password, socket_timeout=5)


def write_plan(server: RedisServer, keys: RunKeys, spec: dict[str, Any], *, workers: int, start_in: float = 5.0,
               scaling: str = "fixed", interval: float = 1.0) -> Plan:
    plan = Plan(run_id=keys.run_id, start_at=time.time() + start_in, workers=workers, spec=spec,
                scaling=scaling, metrics_interval=interval)
    client_for(server).set(keys.plan, plan.to_json())
    return plan


def start_worker(kubeload_bin: str, server: RedisServer, keys: RunKeys, index: int, *,
                 processes: int = 2, engine: str | None = None) -> subprocess.Popen[bytes]:
    argv = [kubeload_bin, "worker", "--redis-url", server.url,
            "--run", f"{keys.namespace}/{keys.name}/{keys.run_id}",
            "--index", str(index), "--processes", str(processes), "--id", f"w{index}"]
    if engine:
        argv += ["--engine", engine]
    return subprocess.Popen(argv, env=env_with(KUBELOAD_REDIS_PASSWORD=server.password))


@dataclass
class Beat:
    index: int
    at: float  # epoch seconds, as written by the worker
    vus: int
    states: list[str]


@dataclass
class HeartbeatSampler:
    """Reads every worker's heartbeat key every `period` seconds in a thread."""

    server: RedisServer
    keys: RunKeys
    workers: int
    period: float = 0.1
    beats: list[Beat] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        client = client_for(self.server)
        seen: set[tuple[int, float]] = set()
        while not self._stop.is_set():
            for index in range(self.workers):
                try:
                    raw = client.get(self.keys.worker(index))
                except redis_lib.RedisError:
                    continue
                if raw is None:
                    continue
                beat = json.loads(raw)
                if (index, beat["at"]) in seen:
                    continue
                seen.add((index, beat["at"]))
                self.beats.append(Beat(index, beat["at"], beat["vus"], beat["states"]))
            time.sleep(self.period)

    @contextmanager
    def running(self) -> Iterator[HeartbeatSampler]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(5)


def read_totals(server: RedisServer, keys: RunKeys) -> MetricsTotals:
    totals = MetricsTotals()
    totals.add_all(parse_entry(f) for _, f in client_for(server).xrange(keys.metrics))
    return totals


def wait_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            stop_process(proc)
            codes.append(-999)
    return codes


@contextmanager
def workers_running(kubeload_bin: str, server: RedisServer, keys: RunKeys, count: int,
                    **options: Any) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [start_worker(kubeload_bin, server, keys, index, **options) for index in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            stop_process(proc, timeout=15)
