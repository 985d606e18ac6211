"""One worker process: one uvloop event loop, one connection pool, its share of the plan.

Life of a process: read the plan it was given, wait for the plan's start, run its share
(closed or open model) to the end of the plan or a stop, give in-flight iterations
`gracefulStop`, publish the last interval, exit. Every metrics interval it appends a delta to
the run's metrics stream; its current VUs go to the supervisor through shared memory for the
heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
from collections.abc import Callable, Mapping, MutableSequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from ..api.durations import parse_duration
from ..api.models import LoadTestSpec
from ..membership import CHANGE_DELAY_S, Membership, MembershipView, closed_share, propose_args
from ..protocol import Plan, RunKeys
from ..schedule import arrival_vus, total_duration
from .arrival import OpenModel
from .clock import PlanClock
from .closed import ClosedModel
from .control import StopWatcher
from .engine import EngineConfig, HttpEngine, make_engine
from .iteration import IterationRunner, TokenSource
from .memory import limit_malloc_arenas
from .prepared import prepare_requests
from .recorder import Recorder
from .sink import MetricsSink

if TYPE_CHECKING:
    from ..observability import WorkerMetrics

__all__ = [
    "EXIT_BAD_OPTIONS",
    "EXIT_ERROR",
    "EXIT_OK",
    "GAUGE_FIELDS",
    "ProcessSettings",
    "State",
    "process_entry",
    "run_process",
]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_OPTIONS = 2

# Shared-memory gauges per process, read by the supervisor for the heartbeat.
GAUGE_FIELDS = 3  # vus, vus_max, state
GAUGE_PERIOD_S = 0.05
FLUSH_TIMEOUT_S = 5.0  # at exit, how long to try to deliver the last deltas
MEMBERSHIP_POLL_S = 1.0  # re-read even without a notice: a pub/sub message can be missed
TOKEN_READY_TIMEOUT_S = 60.0


class State:
    """Process states in the shared gauges (and the heartbeat)."""

    STARTING = 0
    WAITING = 1  # plan read, its start not reached
    RUNNING = 2
    DRAINING = 3  # stop or end: in-flight iterations finishing
    DONE = 4
    FAILED = 5

    NAMES = ("starting", "waiting", "running", "draining", "done", "failed")


@dataclass(frozen=True)
class ProcessSettings:
    """Everything a worker process needs (picklable, so it could be spawned as well as forked)."""

    redis_url: str
    redis_password: str | None
    keys: RunKeys
    plan_json: str
    worker_index: int
    worker_id: str
    processes: int
    process: int
    engine: str
    metrics_port: int = 0  # the pod's Prometheus port (0: no /metrics); this process serves child_port()


class _Model(Protocol):
    @property
    def vus(self) -> int: ...

    @property
    def vus_max(self) -> int: ...

    async def drain(self, graceful_stop_s: float) -> None: ...


def redis_client(settings: ProcessSettings) -> Any:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # Short timeouts and no client-side retries: our loops retry, and the load must never
    # wait behind a Redis that does not answer.
    return aioredis.Redis.from_url(settings.redis_url, password=settings.redis_password,
                                   socket_timeout=3.0, socket_connect_timeout=2.0,
                                   retry=Retry(NoBackoff(), 0))


# The TokenCache's cumulative counters; its other numbers (version, age, latency
# percentiles) are gauges: summing them across processes would mean nothing.
TOKEN_COUNTERS = frozenset({"token_unauthorized", "token_versions_seen", "token_forced_requests",
                            "token_reconnects", "token_publish_to_hold_ms_count"})


def split_token_stats(stats: Mapping[str, Any], before: dict[str, int]) -> tuple[dict[str, int], dict[str, float]]:
    """(counter increases since `before`, which is updated; gauges) of `TokenCache.stats()`."""
    increase: dict[str, int] = {}
    gauges: dict[str, float] = {}
    for key, value in stats.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if key not in TOKEN_COUNTERS:
            gauges[key] = float(value)
            continue
        grown = int(value) - before.get(key, 0)
        before[key] = int(value)
        if grown > 0:
            increase[key] = grown
    return increase, gauges


class _Process:
    def __init__(self, settings: ProcessSettings, plan: Plan, spec: LoadTestSpec,
                 gauges: MutableSequence[int] | None) -> None:
        self.settings = settings
        self.plan = plan
        self.spec = spec
        self.gauges = gauges
        self.clock = PlanClock.starting_at(plan.start_at)
        self.view = MembershipView(settings.worker_index, plan.workers, settings.process, settings.processes)
        self._membership_notice = asyncio.Event()
        self.recorder = Recorder(settings.worker_id, settings.process)
        self.stop = asyncio.Event()
        self.model: _Model | None = None
        self.token: Any = None
        self._token_stats: dict[str, int] = {}
        self._interval_start = 0.0  # plan-elapsed seconds where the open interval began
        self._state = State.STARTING
        self._client: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.metrics: WorkerMetrics | None = None  # Prometheus series, fed once per interval

    # -- shared gauges -------------------------------------------------------------------

    def set_state(self, state: int) -> None:
        self._state = state
        self._write_gauges()

    def _write_gauges(self) -> None:
        if self.gauges is None:
            if self.metrics is not None and self.model is not None:
                self.metrics.set_vus(self.model.vus)
            return
        base = self.settings.process * GAUGE_FIELDS
        model = self.model
        self.gauges[base] = model.vus if model is not None else 0
        self.gauges[base + 1] = model.vus_max if model is not None else 0
        self.gauges[base + 2] = self._state
        if self.metrics is not None:
            self.metrics.set_vus(self.gauges[base])

    async def _publish_gauges(self) -> None:
        parent = os.getppid()
        while True:
            self._write_gauges()
            if os.getppid() != parent and not self.stop.is_set():
                # The supervisor is gone (killed): nobody would ever stop this process, and
                # nobody writes its heartbeat. Leave, and say so, so the others take the load now.
                log.warning("the worker's supervisor exited: stopping")
                self.stop.set()
                await self._leave()
            await asyncio.sleep(GAUGE_PERIOD_S)

    async def _leave(self) -> None:
        """Propose this process as lost while the plan still runs (`kubeload.membership`)."""
        at = self.clock.elapsed() + CHANGE_DELAY_S
        if 0 <= at < total_duration(self.spec.load):
            member = (self.settings.worker_index, self.settings.process)
            keys = self.settings.keys
            with contextlib.suppress(Exception):
                await self._client.eval(*propose_args(keys.membership, keys.control, at, lost={member}))

    # -- metrics intervals ---------------------------------------------------------------

    def _delta(self, end_elapsed: float) -> dict[str, Any]:
        interval = self.plan.metrics_interval
        # The interval the data belongs to: the one holding the end (just before a boundary).
        index = max(0, math.ceil(end_elapsed / interval - 1e-9) - 1)
        extra: dict[str, int] = {}
        gauges: dict[str, float] = {}
        if self.token is not None:
            with contextlib.suppress(Exception):
                extra, gauges = split_token_stats(self.token.stats(), self._token_stats)
        model = self.model
        if self.metrics is not None:
            self._feed_metrics(self.metrics, extra)
        delta = self.recorder.take_delta(
            interval=index,
            start=self.clock.epoch(self._interval_start),
            end=self.clock.epoch(end_elapsed),
            vus=model.vus if model is not None else 0,
            vus_max=model.vus_max if model is not None else 0,
            extra_counters=extra,
            gauges=gauges,
        )
        self._interval_start = end_elapsed
        return delta

    def _feed_metrics(self, metrics: WorkerMetrics, token_counters: Mapping[str, int]) -> None:
        """Add the interval about to be taken as a delta to the Prometheus series (once per
        interval: the request path never touches them)."""
        recorder = self.recorder
        for name, stats in recorder.by_name.items():
            if stats.reqs:
                metrics.add_interval(name, stats.histogram, sum_seconds=stats.sum_us / 1_000_000,
                                     errors=stats.failures)
        metrics.iteration(recorder.iterations)
        metrics.dropped(recorder.dropped_iterations)
        metrics.unauthorized(token_counters.get("token_unauthorized", 0))
        if self.model is not None:
            metrics.set_vus(self.model.vus)

    async def _report_intervals(self, sink: MetricsSink) -> None:
        interval = self.plan.metrics_interval
        while True:
            elapsed = self.clock.elapsed()
            boundary = (math.floor(elapsed / interval + 1e-9) + 1) * interval
            await asyncio.sleep(max(boundary - elapsed, 0.0))
            sink.push(self._delta(boundary))

    # -- the share of the plan -----------------------------------------------------------

    def _closed_share(self, elapsed: float) -> int:
        s = self.settings
        if self.spec.load.is_arrival_rate:
            return 0  # only for a worker beyond the plan: it idles
        return closed_share(self.spec, self.plan.workers, self.plan.scaling, worker=s.worker_index,
                            processes=s.processes, process=s.process, elapsed=elapsed,
                            lost=self.view.lost_at(elapsed))

    async def _read_membership(self) -> None:
        with contextlib.suppress(Exception):  # Redis away: keep the copy we have
            self.view.update(Membership.from_json(await self._client.get(self.settings.keys.membership)))

    async def _follow_membership(self) -> None:
        while not self.stop.is_set():
            await self._read_membership()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._membership_notice.wait(), MEMBERSHIP_POLL_S)
            self._membership_notice.clear()

    def _reload_plan(self) -> None:
        async def reload() -> None:
            with contextlib.suppress(Exception):
                raw = await self._client.get(self.settings.keys.plan)
                if raw is not None:
                    fresh = Plan.from_json(raw)
                    if fresh.start_at == self.plan.start_at:
                        self.plan = fresh  # shares follow the new worker count from now on
                        self.view.workers = fresh.workers
        self._background(reload())

    def _background(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _build_model(self, runner: IterationRunner) -> tuple[_Model, Callable[[], Any]]:
        load = self.spec.load
        until = total_duration(load)
        if load.is_arrival_rate and self.settings.worker_index < self.plan.workers:
            pre, maximum = arrival_vus(load)
            open_model = OpenModel(
                runner.run, load=load, clock=self.clock, view=self.view, pre_allocated=pre, max_vus=maximum,
                on_dropped=self._count_dropped,
                on_interrupted=lambda: self.recorder.count("interrupted_iterations"),
            )
            return open_model, lambda: open_model.run(self.stop)

        if self.settings.worker_index >= self.plan.workers:
            # A pod beyond the plan (a stale Job index): it must not take another's slot.
            log.warning("worker index %d is beyond the plan's %d workers: idle until the end",
                        self.settings.worker_index, self.plan.workers)
        closed_model = ClosedModel(
            runner.run, share=self._closed_share, clock=self.clock,
            think_s=parse_duration(load.think_time),
            ramp_down_s=parse_duration(load.graceful_ramp_down),
            on_interrupted=lambda: self.recorder.count("interrupted_iterations"),
        )
        return closed_model, lambda: closed_model.run(until, self.stop)

    def _count_dropped(self) -> None:
        self.recorder.dropped_iterations += 1

    # -- the whole life ------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        self._client = redis_client(self.settings)
        engine: HttpEngine | None = None
        sink = MetricsSink(self._client, self.settings.keys.metrics)
        watcher = StopWatcher(self._client, self.settings.keys, self.stop, on_plan=self._reload_plan,
                              on_membership=self._membership_notice.set)
        helpers = [self._background(sink.run()), self._background(watcher.run()),
                   self._background(self._publish_gauges())]
        try:
            target = self.spec.target
            engine = make_engine(self.settings.engine, EngineConfig(
                timeout_s=parse_duration(target.timeout), verify_tls=not target.insecure_skip_tls_verify))
            if self.spec.auth is not None:
                self.token = await self._start_token()
                if self.token is None:
                    self.set_state(State.FAILED)
                    return EXIT_ERROR
            runner = IterationRunner(engine, prepare_requests(self.spec, self.recorder), self.recorder,
                                     self.token)
            self.set_state(State.WAITING)
            await self._wait_for_start()
            if self.stop.is_set() and self.clock.elapsed() < 0:
                log.info("stopped before the plan's start")
                self.set_state(State.DONE)
                return EXIT_OK
            await self._read_membership()  # the first share must already count lost members
            helpers.append(self._background(self._follow_membership()))
            model, run_model = self._build_model(runner)
            self.model = model
            self._interval_start = max(self.clock.elapsed(), 0.0)
            self.set_state(State.RUNNING)
            reporter = self._background(self._report_intervals(sink))
            await run_model()
            self.set_state(State.DRAINING)
            await model.drain(parse_duration(self.spec.load.graceful_stop))
            reporter.cancel()
            sink.push(self._delta(max(self.clock.elapsed(), self._interval_start)))
            self.set_state(State.DONE)
            if watcher.reason:
                log.info("stopped (%s)", watcher.reason)
            return EXIT_OK
        finally:
            self.stop.set()  # ends the watcher's loops
            sink.close()
            await _settle(helpers)
            if not await sink.flush(FLUSH_TIMEOUT_S):
                log.error("metrics sink unreachable at exit: %d deltas not delivered", sink.backlog)
            if sink.lost:
                log.error("%d metrics deltas were lost (backlog overflow)", sink.lost)
            if self.token is not None:
                with contextlib.suppress(Exception):
                    await self.token.close()
            if engine is not None:
                await engine.close()
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._write_gauges()

    async def _wait_for_start(self) -> None:
        while not self.stop.is_set():
            wait = -self.clock.elapsed()
            if wait <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), min(wait, 0.5))

    async def _start_token(self) -> TokenSource | None:
        """The process's token cache (kubeload.worker.token), ready; None when it never got one."""
        from .token import TokenCache

        assert self.spec.auth is not None
        settings = self.settings
        cache = TokenCache(lambda: redis_client(settings), settings.keys, self.spec.auth.header,
                           f"{settings.worker_id}/{settings.process}")
        await cache.start()
        timeout = parse_duration(self.spec.timeouts.provisioning) or TOKEN_READY_TIMEOUT_S
        try:
            await cache.wait_ready(timeout)
        except TimeoutError:
            log.error("no token in Redis after %.0fs: not starting the load", timeout)
            await cache.close()
            return None
        token: TokenSource = cache
        return token


async def _settle(tasks: list[asyncio.Task[Any]], rounds: int = 3, wait_s: float = 1.0) -> None:
    """Cancel `tasks` and wait for them, cancelling again if one swallowed the cancellation
    (a client library catching CancelledError must not hang the process's exit)."""
    pending = {task for task in tasks if not task.done()}
    for _ in range(rounds):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=wait_s)
    if pending:
        log.warning("%d background task(s) did not stop", len(pending))


async def run_process(settings: ProcessSettings, gauges: MutableSequence[int] | None = None) -> int:
    """Run one worker process to its end; the exit code."""
    plan = Plan.from_json(settings.plan_json)
    try:
        spec = LoadTestSpec.model_validate(plan.spec)
    except ValidationError as error:
        log.error("the plan's spec is invalid: %s", error)
        return EXIT_BAD_OPTIONS
    process = _Process(settings, plan, spec, gauges)
    server = _serve_metrics(process, settings)
    try:
        return await process.run()
    finally:
        if server is not None:
            await asyncio.to_thread(server.close)


def _serve_metrics(process: _Process, settings: ProcessSettings) -> Any:
    """With a metrics port, serve this process's series on loopback for the supervisor to merge;
    a port that cannot be bound costs the metrics, never the load."""
    if not settings.metrics_port:
        return None
    from .. import observability as obs

    registry = obs.new_registry()
    process.metrics = obs.WorkerMetrics(registry, loadtest=settings.keys.name, worker=str(settings.worker_index))
    port = obs.child_port(settings.metrics_port, settings.process)
    try:
        return obs.serve(registry, port, host="127.0.0.1")
    except OSError as error:
        log.warning("cannot serve metrics on 127.0.0.1:%d (%s): this process's metrics are left out",
                    port, error)
        return None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed (it is on Linux), else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def process_entry(settings: ProcessSettings, gauges: MutableSequence[int] | None) -> None:
    """Entry point of a worker process: uvloop when available, exit code as the process's."""
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s worker {settings.worker_id}/{settings.process} "
                               "%(levelname)s %(name)s: %(message)s", force=True)
    # A Ctrl-C reaches the whole process group: until the event loop installs its handlers
    # (SIGINT drains like SIGTERM) it must not kill the process with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the supervisor's handler, inherited by fork
    limit_malloc_arenas()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            code = runner.run(run_process(settings, gauges))
    except Exception:
        log.exception("worker process failed")
        code = EXIT_ERROR
    sys.exit(code)
