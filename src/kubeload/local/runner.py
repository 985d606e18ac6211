"""`kubeload run`: one LoadTest on this machine with the processes the cluster runs.

An embedded redis-server (or `--redis-url`), the refresher when `spec.auth` is set, and N
`kubeload worker` processes. The runner writes the plan once the token is in Redis, merges
the workers' interval metrics, judges thresholds on the merged data (an `abortOnFail` breach
stops every worker through the stop key), and stops everything it started: at the end, on
errors, on Ctrl-C (a second Ctrl-C stops at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .. import judge, schedule
from ..api.durations import parse_duration
from ..api.models import LoadTest
from ..membership import Membership
from ..metrics import MetricsTotals, read_deltas
from ..protocol import Plan, RunKeys
from ..report_html import render_report
from ..runtime import ENV_REDIS_PASSWORD, ENV_REDIS_URL, ENV_RUN
from ..summary import build_summary, timeline, token_section
from ..summary_text import render_summary
from .child import Child, exit_text
from .embedded_redis import EmbeddedRedis
from .progress import Progress, Snapshot
from .refresher_keeper import RefresherKeeper

__all__ = ["EXIT_INTERRUPTED", "LocalRun", "RunError", "RunOptions"]

EXIT_INTERRUPTED = 130
START_DELAY_S = 2.0  # workers are spawned before the plan's start, so all start on time
METRICS_INTERVAL_S = 1.0
POLL_S = 0.5
STOP_MARGIN_S = 10.0  # past end + gracefulStop + this, workers are terminated
EXIT_WORKER_BAD_SPEC = 2  # `kubeload worker`'s exit code for a spec it cannot run


class RunError(Exception):
    """A local run that cannot go on; the message says what failed and where."""


@dataclass
class RunOptions:
    redis_url: str | None = None
    workers: int | None = None
    processes: int | None = None
    summary_export: Path | None = None
    report: Path | None = None
    live: bool | None = None  # None: live progress when stdout is a terminal


@dataclass
class _State:
    stop_reason: str = ""  # why the run was asked to stop early
    failure: str = ""  # what makes the run fail (exit 1)
    interrupts: int = 0
    threshold_abort: judge.ThresholdVerdict | None = None
    versions: dict[int, int] = field(default_factory=dict)  # metrics interval -> token version
    failed_workers: list[str] = field(default_factory=list)  # names of workers that exited with an error
    processes_lost: int = 0  # VU processes lost mid-run (their load moved to the others)


class LocalRun:
    def __init__(self, test: LoadTest, options: RunOptions, progress: Progress | None = None) -> None:
        self.test = test
        self.spec = test.spec
        self.options = options
        self.progress = progress or Progress(live=options.live)
        self.children: list[Child] = []
        self.state = _State()
        self.totals = MetricsTotals()
        self._metrics_after = "0-0"
        self._workdir = Path(tempfile.mkdtemp(prefix="kubeload-run-"))
        self._workdir.chmod(0o700)
        self._redis: EmbeddedRedis | None = None
        self.keys = RunKeys("local", test.metadata.name, secrets.token_hex(4))
        # The refresher process (with spec.auth), started again when it exits mid-run.
        self._refresher_keeper = RefresherKeeper(self._spawn, self.children.remove, self.keys, self.spec.auth,
                                                 self.progress.message)

    @property
    def _run_ref(self) -> str:
        return f"{self.keys.namespace}/{self.keys.name}/{self.keys.run_id}"

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._interrupt)
        try:
            return await self._run()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            self._kill_all()
            if self._redis is not None:
                self._redis.stop()
            shutil.rmtree(self._workdir, ignore_errors=True)

    def _interrupt(self) -> None:
        self.state.interrupts += 1
        if self.state.interrupts == 1:
            self.state.stop_reason = "interrupted"
            self.progress.message("stopping: waiting for in-flight iterations (Ctrl-C again to stop at once)")
        else:
            self.progress.message("stopping at once")
            self._kill_all(grace=0)

    async def _run(self) -> int:
        url, password = self._start_redis()
        client = aioredis.Redis.from_url(url, password=password, socket_timeout=5)
        try:
            env = self._child_env(url, password)
            spec_file = self._workdir / "loadtest.json"
            spec_file.write_text(json.dumps({"spec": self.spec.wire()}))
            spec_file.chmod(0o600)
            if self.spec.auth is not None:
                await self._start_refresher(client, env, spec_file)
            if self.state.interrupts:
                return EXIT_INTERRUPTED
            plan = await self._write_plan(client)
            self._start_workers(env, spec_file, plan.workers)
            await self._follow(client, plan)
            await self._drain(client)
            token = await self._token_stats(client)
            with contextlib.suppress(aioredis.ConnectionError, aioredis.TimeoutError):
                self.state.processes_lost = len(Membership.from_json(await client.get(self.keys.membership)).ever_lost)
        finally:
            await client.aclose()
        return self._finish(plan, token)

    def _start_redis(self) -> tuple[str, str | None]:
        if self.options.redis_url:
            return self.options.redis_url, os.environ.get(ENV_REDIS_PASSWORD) or None
        self._redis = EmbeddedRedis(env={**os.environ, ENV_RUN: self._run_ref})
        self._redis.start()  # RedisUnavailableError says what to install
        return self._redis.url, self._redis.password

    def _child_env(self, url: str, password: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update({ENV_REDIS_URL: url, ENV_RUN: self._run_ref})
        if password:
            env[ENV_REDIS_PASSWORD] = password
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        log = self._workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kubeload", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,  # Ctrl-C reaches only the runner
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    async def _start_refresher(self, client: aioredis.Redis, env: dict[str, str], spec_file: Path) -> None:
        refresher = self._refresher_keeper.start(["refresher", "--spec-file", str(spec_file), "--probe-port", "0",
                                                  "--probe-host", "127.0.0.1"], env)
        deadline = time.monotonic() + parse_duration(self.spec.timeouts.provisioning)
        self.progress.message("waiting for the first token")
        while not await client.hget(self.keys.token, "version"):
            if refresher.proc.poll() is not None:
                raise RunError(f"the refresher could not obtain a token (exit {refresher.proc.returncode}):\n"
                               f"{refresher.tail()}")
            if time.monotonic() > deadline or self.state.interrupts:
                if self.state.interrupts:
                    return
                raise RunError(f"no token within timeouts.provisioning ({self.spec.timeouts.provisioning})")
            await asyncio.sleep(0.1)

    def _worker_count(self) -> int:
        if self.options.workers:
            return self.options.workers
        return max(1, min(schedule.workers_needed(self.spec), os.cpu_count() or 1))

    async def _write_plan(self, client: aioredis.Redis) -> Plan:
        plan = Plan(run_id=self.keys.run_id, start_at=time.time() + START_DELAY_S, workers=self._worker_count(),
                    spec=self.spec.wire(), scaling="fixed", metrics_interval=METRICS_INTERVAL_S)
        await client.set(self.keys.plan, plan.to_json())
        return plan

    def _start_workers(self, env: dict[str, str], spec_file: Path, workers: int) -> None:
        for index in range(workers):
            args = ["worker", "--index", str(index), "--id", f"local-{index}"]
            if self.options.processes:
                args += ["--processes", str(self.options.processes)]
            self._spawn(f"worker-{index}", args, env)

    # -- while running -------------------------------------------------------------------------

    def _workers(self) -> list[Child]:
        return [c for c in self.children if c.name.startswith("worker-")]

    async def _request_stop(self, client: aioredis.Redis, reason: str) -> None:
        with contextlib.suppress(Exception):  # Redis gone: workers stop at the plan's end anyway
            await client.set(self.keys.stop, json.dumps({"phase": "stopping", "reason": reason, "at": time.time()}))
            await client.publish(self.keys.control, "stop")

    async def _follow(self, client: aioredis.Redis, plan: Plan) -> None:
        load = self.spec.load
        total = schedule.total_duration(load)
        hard_deadline = plan.start_at + total + parse_duration(load.graceful_stop) + STOP_MARGIN_S
        stop_sent = False
        while any(c.proc.poll() is None for c in self._workers()):
            await self._read_metrics(client)
            now = time.time()
            elapsed = now - plan.start_at
            verdicts = judge.evaluate(self.spec.thresholds, self.totals.lookup)
            trigger = judge.abort_trigger(verdicts, max(elapsed, 0.0))
            if trigger is not None and self.state.threshold_abort is None:
                self.state.threshold_abort = trigger
                self.state.stop_reason = judge.failure_message(trigger)
                self.progress.message(f"aborting: {self.state.stop_reason}")
            token = await self._token_stats(client) if self.spec.auth is not None else None
            self._check_token(token)
            expired = await self._refresher_keeper.keep(client, interrupted=bool(self.state.interrupts),
                                                        stopping=bool(self.state.stop_reason))
            if expired:
                self._stop_for_expired_token(expired)
            self._note_failed_workers()
            if self.state.stop_reason and not stop_sent:
                await self._request_stop(client, self.state.stop_reason)
                stop_sent = True
            if now > hard_deadline:
                self.progress.message("workers did not stop in time: terminating them")
                for child in self._workers():
                    child.proc.terminate()
                hard_deadline = now + 5
                if any(c.proc.poll() is None for c in self._workers()):
                    await asyncio.sleep(5)
                    self._kill_all(grace=0)
            self.progress.update(self._snapshot(elapsed, total, token, "stopping" if stop_sent else
                                                "running" if elapsed >= 0 else "starting"))
            await asyncio.sleep(POLL_S)
        self._note_failed_workers()
        failed = [c for c in self._workers() if c.name in self.state.failed_workers]
        # One lost worker is a fault the others absorb (its share moved to them); a bad spec, or
        # no worker left at all, is the run's failure.
        fatal = [c for c in failed if c.proc.returncode == EXIT_WORKER_BAD_SPEC]
        if not fatal and len(failed) == len(self._workers()):
            fatal = failed
        if fatal and not self.state.failure and self.state.interrupts < 2:
            child = fatal[0]
            self.state.failure = f"{child.name} exited with {exit_text(child.proc.returncode)}:\n{child.tail()}"
        self.progress.close(self._snapshot(time.time() - plan.start_at, total, None, "finished"))

    def _check_token(self, token: dict[str, Any] | None) -> None:
        auth = self.spec.auth
        if token is None or auth is None or self.state.stop_reason:
            return
        if token.get("state") == "expired" and auth.on_expired == "Fail":
            self._stop_for_expired_token("the token expired and the refresher could not replace it "
                                         "(auth.onExpired: Fail); see the refresher's last error above")

    def _stop_for_expired_token(self, failure: str) -> None:
        self.state.failure = failure
        self.state.stop_reason = "token expired"
        self.progress.message(f"stopping: {failure}")

    def _note_failed_workers(self) -> None:
        for child in self._workers():
            code = child.proc.poll()
            if code not in (0, None) and child.name not in self.state.failed_workers and self.state.interrupts < 2:
                self.state.failed_workers.append(child.name)
                self.progress.message(f"{child.name} exited with {exit_text(code)}; the live VU processes carry the "
                                      f"share it lost. Its last log lines:\n{child.tail()}")

    async def _read_metrics(self, client: aioredis.Redis) -> None:
        try:
            deltas, self._metrics_after = await read_deltas(client, self.keys.metrics, self._metrics_after)
        except (aioredis.ConnectionError, aioredis.TimeoutError):
            return  # workers keep their backlog and resend when Redis is back
        self.totals.add_all(deltas)

    async def _drain(self, client: aioredis.Redis) -> None:
        with contextlib.suppress(aioredis.ConnectionError, aioredis.TimeoutError):
            await self._read_metrics(client)

    async def _token_stats(self, client: aioredis.Redis) -> dict[str, Any] | None:
        """The refresher's counters plus the current version and its age (never the token)."""
        if self.spec.auth is None:
            return None
        try:
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(self.keys.token_stats)
            pipe.hmget(self.keys.token, ["version", "obtainedAt"])
            raw, token = await pipe.execute()
        except (aioredis.ConnectionError, aioredis.TimeoutError):
            return None
        stats = {k.decode(): v.decode() for k, v in raw.items()}
        version, obtained_at = token
        stats["version"] = version.decode() if version else "0"
        section = token_section(stats, self.totals)
        section["obtainedAt"] = float(obtained_at) if obtained_at else 0.0
        if self.totals.intervals:
            self.state.versions[max(self.totals.intervals)] = section["version"]
        return section

    def _snapshot(self, elapsed: float, total: float, token: dict[str, Any] | None, state: str) -> Snapshot:
        load = self.spec.load
        at = min(max(elapsed, 0.0), total)
        stage = schedule.stage_at(load, at)
        series = self.totals.series()
        last = series[-1] if series else None
        overall = self.totals.requests()
        return Snapshot(
            elapsed=max(elapsed, 0.0), total=total, stage_index=stage.index + 1, stage_count=stage.count,
            stage_name=stage.name,
            stage_fraction=(at - stage.start) / (stage.end - stage.start) if stage.end > stage.start else 1.0,
            vus=self.totals.vus, target=round(schedule.target_at(load, at)),
            target_unit="it/s" if load.is_arrival_rate else "VUs",
            rps=last.rps if last else 0.0,
            error_rate=overall.failed / overall.reqs if overall.reqs else 0.0,
            p95_ms=overall.percentile_ms(95),
            requests=overall.reqs,
            token_version=None if token is None else int(token["version"]),
            token_age_s=None if token is None or not token.get("obtainedAt") else time.time() - token["obtainedAt"],
            state=state,
        )

    # -- the end -------------------------------------------------------------------------------

    def _finish(self, plan: Plan, token: dict[str, Any] | None) -> int:
        verdicts = judge.evaluate(self.spec.thresholds, self.totals.lookup)
        verdict = judge.verdict(verdicts)
        if self.state.failure or self.state.interrupts:
            verdict = "failed"
        if token is not None:
            token.pop("obtainedAt", None)
        reason = self.state.failure or self.state.stop_reason
        workers = {"planned": plan.workers, "failed": len(self.state.failed_workers),
                   "processesLost": self.state.processes_lost}
        summary = build_summary(self.totals.summary(), verdicts, verdict, token, reason=reason, workers=workers)
        sys.stdout.write("\n" + render_summary(summary))
        if self.options.summary_export is not None:
            self.options.summary_export.write_text(json.dumps(summary, indent=2) + "\n")
        if self.options.report is not None:
            points = timeline(self.totals, self._versions_by_interval())
            self.options.report.write_text(render_report(f"kubeload: {self.test.metadata.name}", summary, points))
        if self.state.failure:
            raise RunError(self.state.failure)
        if self.state.interrupts:
            return EXIT_INTERRUPTED
        return 0 if verdict == "passed" else 99

    def _versions_by_interval(self) -> dict[int, int]:
        """The token version seen at each interval, carried forward between observations."""
        out: dict[int, int] = {}
        current = 0
        for interval in sorted(self.totals.intervals):
            current = self.state.versions.get(interval, current)
            out[interval] = current
        return out

    def _kill_all(self, grace: float = 5.0) -> None:
        """SIGTERM every child's process group, SIGKILL what is left after `grace` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if sig == signal.SIGTERM and grace <= 0:
                continue
            for child in self.children:
                if child.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.proc.pid, sig)
            for child in self.children:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(wait)
