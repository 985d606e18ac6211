"""The worker's main process: reads the plan, spawns the VU processes, writes the heartbeat.

It generates no load itself. It waits for the plan, starts `processes` children, forwards
SIGTERM/SIGINT to them, every heartbeat period writes `RunKeys.worker(index)` with the VUs the
children report through shared memory, and keeps the run's membership up to date
(`kubeload.worker.liveness`): lost processes' load moves to the live ones. It exits when every
child has: 0 when all succeeded, else the worst child's code (2 for a bad spec, 1 for anything
else).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from pydantic import ValidationError

from ..api.durations import parse_duration
from ..api.models import LoadTestSpec
from ..protocol import Plan
from ..runtime import RuntimeConfig
from ..schedule import total_duration
from .cpus import available_cpus
from .liveness import LivenessKeeper
from .process import (
    EXIT_BAD_OPTIONS,
    EXIT_ERROR,
    EXIT_OK,
    GAUGE_FIELDS,
    ProcessSettings,
    State,
    process_entry,
)

__all__ = ["WorkerOptions", "heartbeat", "processes_for", "supervise"]

log = logging.getLogger(__name__)

HEARTBEAT_PERIOD_S = 0.25
PLAN_POLL_S = 0.25
STOP_GRACE_EXTRA_S = 30.0  # after forwarding a stop, children get gracefulStop plus this


@dataclass(frozen=True)
class WorkerOptions:
    index: int
    worker_id: str
    processes: int | None  # None: from the spec (0 there: one per CPU)
    engine: str
    metrics_port: int = 0  # Prometheus /metrics of the pod (0: off); children use the ports after it


def processes_for(requested: int | None, spec: LoadTestSpec) -> int:
    """Processes to run: the flag, else `workers.processesPerWorker`; 0 means one per CPU."""
    count = spec.workers.processes_per_worker if requested is None else requested
    return count if count > 0 else available_cpus()


def heartbeat(*, pid: int, index: int, worker_id: str, gauges: Any, alive: Sequence[bool],
              now: float) -> dict[str, Any]:
    """The heartbeat document from the children's shared gauges; a dead child (`alive[p]`
    False) runs no VUs, and unless it had finished it failed."""
    processes = len(alive)
    vus = [gauges[p * GAUGE_FIELDS] if alive[p] else 0 for p in range(processes)]
    vus_max = [gauges[p * GAUGE_FIELDS + 1] for p in range(processes)]
    states = [State.NAMES[gauges[p * GAUGE_FIELDS + 2]] for p in range(processes)]
    states = [state if alive[p] or state == "done" else "failed" for p, state in enumerate(states)]
    return {
        "pid": pid, "index": index, "worker": worker_id, "processes": processes,
        "vus": sum(vus), "vus_max": sum(vus_max), "vus_by_process": vus, "states": states,
        "at": now,
    }


class _Signals:
    def __init__(self) -> None:
        self.received: int | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum


def _sync_redis(config: RuntimeConfig) -> Any:
    import redis

    return redis.Redis.from_url(config.redis_url, password=config.redis_password,
                                socket_timeout=2.0, socket_connect_timeout=2.0)


def _wait_for_plan(client: Any, config: RuntimeConfig, signals: _Signals) -> Plan | None:
    warned = False
    while signals.received is None:
        try:
            raw = client.get(config.keys.plan)
        except Exception as error:  # redis errors and OSErrors alike: keep waiting
            if not warned:
                log.warning("waiting for Redis at %s: %s", config.redis_url, type(error).__name__)
                warned = True
            raw = None
        if raw is not None:
            return Plan.from_json(raw)
        time.sleep(PLAN_POLL_S)
    return None


def supervise(config: RuntimeConfig, options: WorkerOptions) -> int:
    signals = _Signals()
    client = _sync_redis(config)
    plan = _wait_for_plan(client, config, signals)
    if plan is None:
        return EXIT_OK  # stopped before there was anything to do
    try:
        spec = LoadTestSpec.model_validate(plan.spec)
    except ValidationError as error:
        log.error("the plan's spec is invalid: %s", error)
        return EXIT_BAD_OPTIONS
    processes = processes_for(options.processes, spec)
    log.info("worker %s (index %d): %d process(es), plan %s starting at %.3f",
             options.worker_id, options.index, processes, plan.run_id, plan.start_at)

    # Forked, not spawned: a child then starts in milliseconds with the modules already
    # imported (spawning re-imports pydantic and the API models: seconds on a busy node).
    # Safe because this process has no threads and no event loop, and the children never use
    # its Redis connection (closed before forking all the same); the HTTP engines, whose
    # native runtimes start threads, are imported only in the children.
    context = multiprocessing.get_context("fork")
    client.close()
    gauges = context.Array("q", processes * GAUGE_FIELDS, lock=False)
    children = []
    for process in range(processes):
        settings = ProcessSettings(
            redis_url=config.redis_url, redis_password=config.redis_password, keys=config.keys,
            plan_json=plan.to_json(), worker_index=options.index, worker_id=options.worker_id,
            processes=processes, process=process, engine=options.engine,
            metrics_port=options.metrics_port)
        child = context.Process(target=process_entry, args=(settings, gauges),
                                name=f"kubeload-worker-{options.index}-{process}")
        child.start()
        children.append(child)

    # Only now, with every child forked: the server's thread must not exist at fork time.
    server = _serve_metrics(options.metrics_port, processes)
    try:
        return _watch(config, options, plan, spec, children, gauges, signals)
    finally:
        if server is not None:
            server.close()


def _serve_metrics(port: int, processes: int) -> Any:
    """The pod's /metrics: the children's series merged, with a `process` label."""
    if not port:
        return None
    from .. import observability as obs

    registry = obs.new_registry("worker")
    registry.register(obs.ChildProcessesCollector([obs.child_url(port, i) for i in range(processes)]))
    try:
        return obs.serve(registry, port)
    except OSError as error:
        log.warning("cannot serve metrics on port %d (%s): the load runs without them", port, error)
        return None


def _watch(config: RuntimeConfig, options: WorkerOptions, plan: Plan, spec: LoadTestSpec,  # noqa: PLR0917
           children: list[Any], gauges: Any, signals: _Signals) -> int:
    """Heartbeats, forwarded stops and the watchdog until every child has exited; the exit code."""
    processes = len(children)
    client = _sync_redis(config)
    key = config.keys.worker(options.index)
    ttl_ms = int(3 * plan.metrics_interval * 1000)
    forwarded_at: float | None = None
    # A watchdog: children end by themselves at the plan's end plus gracefulStop; one that is
    # still there long after is hung, and a hung pod would hold the Job open forever.
    plan_seconds, grace = total_duration(spec.load), _stop_grace(spec)
    hung_after = plan.start_at + plan_seconds + grace
    keeper = LivenessKeeper(client, config.keys, plan, worker=options.index, processes=processes,
                            plan_seconds=plan_seconds)
    while any(alive := [child.is_alive() for child in children]):
        if signals.received is not None and forwarded_at is None:
            forwarded_at = time.monotonic()
            for child in children:
                if child.pid is not None and child.is_alive():
                    os.kill(child.pid, signal.SIGTERM)
        late = forwarded_at is not None and time.monotonic() - forwarded_at > grace
        if late or time.time() > hung_after:
            for child in children:
                if child.is_alive():
                    log.error("process %s did not stop in time: killing it", child.name)
                    child.kill()
        _beat(client, key, ttl_ms, options, gauges, alive)
        keeper.check(alive, gauges, time.time())
        for child in children:
            child.join(timeout=HEARTBEAT_PERIOD_S / len(children))
    _beat(client, key, ttl_ms, options, gauges, [False] * processes)
    codes = [child.exitcode or 0 for child in children]
    if all(code == EXIT_OK for code in codes):
        return EXIT_OK
    return EXIT_BAD_OPTIONS if EXIT_BAD_OPTIONS in codes else EXIT_ERROR


def _stop_grace(spec: LoadTestSpec) -> float:
    return parse_duration(spec.load.graceful_stop) + STOP_GRACE_EXTRA_S


def _beat(client: Any, key: str, ttl_ms: int, options: WorkerOptions, gauges: Any,  # noqa: PLR0917
          alive: Sequence[bool]) -> None:
    document = heartbeat(pid=os.getpid(), index=options.index, worker_id=options.worker_id, gauges=gauges,
                         alive=alive, now=time.time())
    # Redis away: the load goes on; the next beat retries.
    with contextlib.suppress(Exception):
        client.set(key, json.dumps(document, separators=(",", ":")), px=ttl_ms)
