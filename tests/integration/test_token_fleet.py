"""The shared token under load and faults: the "Done when" of issue 4, end to end.

Real redis-server, the demo auth server + target (tokens living 2 s, 401 for an expired or
unknown token), real `kubeload refresher` processes and real `kubeload worker` processes:
2 workers x 2 processes, 200 VUs, 20 s. The test observes what an operator would: the target's
counters, the refresher's stats hash, the workers' metrics stream.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from support.procs import RedisServer
from support.workers import make_keys, start_worker, wait_all, write_plan
from test_token_harness import Demo, Refresher, auth_for, demo_target, start_refresher

from kubeload.metrics import MetricsTotals, parse_entry
from kubeload.protocol import Plan, RunKeys

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKERS, PROCESSES, VUS, DURATION = 2, 2, 200, 20.0
START_IN = 6.0  # the plan starts this long after it is written (process start-up on 2 busy cores)


@dataclass
class Fleet:
    """A run in progress, handed to the scenario: act at given times into the run."""

    redis: RedisServer
    keys: RunKeys
    demo: Demo
    refreshers: list[Refresher]
    plan: Plan
    notes: dict[str, Any] = field(default_factory=dict)

    def at(self, seconds: float) -> None:
        """Sleep until `seconds` into the run."""
        time.sleep(max(0.0, self.plan.start_at + seconds - time.time()))

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis(port=self.redis.port, password=self.redis.password,
                               decode_responses=True, socket_timeout=5)

    def version(self) -> int:
        return int(self.client().hget(self.keys.token, "version") or 0)

    def wait_new_version(self, after: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            version = self.version()
            if version > after:
                return version
            time.sleep(0.005)
        raise TimeoutError(f"no version after {after}")


@dataclass
class Outcome:
    demo: dict[str, Any]
    token_stats: dict[str, str]
    token_version: int  # the version in the token hash at the end
    totals: MetricsTotals
    gauges: dict[str, dict[str, float]]  # process instance -> its last gauges
    codes: list[int]
    run_start: float
    first_issue: float
    notes: dict[str, Any]

    @property
    def statuses(self) -> dict[str, int]:
        return self.totals.requests().status

    def hold_latency(self) -> tuple[float, float]:
        """(worst per-process p99, worst per-process max) of publish -> held, in ms."""
        p99 = max(g.get("token_publish_to_hold_ms_p99", 0.0) for g in self.gauges.values())
        worst = max(g.get("token_publish_to_hold_ms_max", 0.0) for g in self.gauges.values())
        return p99, worst


def _spec(demo: Demo, auth: dict[str, Any]) -> dict[str, Any]:
    return {
        "target": {"baseURL": demo.url, "timeout": "5s"},
        "requests": [{"name": "items", "path": "/api/items", "weight": 3},
                     {"name": "orders", "method": "POST", "path": "/api/orders",
                      "json": {"item": 1}}],
        # 100 ms think time: ~2,000 req/s, below what this 2-core machine (shared by the target,
        # 4 worker processes, Redis and the refreshers) serves. Saturated, requests queue for
        # up to 1.7 s at ramp-up, longer than the refresh margin of a 2 s token: some would
        # arrive expired (and succeed on the retry), which is not what these tests measure.
        "load": {"executor": "constant-vus", "vus": VUS, "duration": f"{DURATION:g}s",
                 "thinkTime": "100ms", "gracefulStop": "5s"},
        "auth": auth,
        "workers": {"processesPerWorker": PROCESSES},
    }


def _gauges(client: redis_lib.Redis, keys: RunKeys) -> dict[str, dict[str, float]]:
    latest: dict[str, tuple[int, dict[str, float]]] = {}
    for _, fields in client.xrange(keys.metrics):
        delta = parse_entry(fields)
        instance, seq = str(delta["instance"]), int(delta["seq"])
        if instance not in latest or latest[instance][0] < seq:
            latest[instance] = (seq, {k: float(v) for k, v in (delta.get("gauges") or {}).items()})
    return {instance: values for instance, (_, values) in latest.items()}


def run_fleet(tmp: Path, redis: RedisServer, kubeload_bin: str, *, lifetime: str = "2s",
              auth_extra: dict[str, Any] | None = None, refresher_args: tuple[str, ...] = (),
              replicas: int = 1, scenario: Callable[[Fleet], None] | None = None,
              metrics_after_restart: bool = False) -> Outcome:
    keys = make_keys()
    run = f"{keys.namespace}/{keys.name}/{keys.run_id}"
    with demo_target(tmp, lifetime=lifetime, latency="1ms") as demo:
        auth = auth_for(demo, "client_credentials", **(auth_extra or {}))
        refreshers = [start_refresher(tmp, redis, run, auth, name=f"r{i}", args=refresher_args)
                      for i in range(replicas)]
        workers: list[Any] = []
        try:
            for refresher in refreshers:
                refresher.wait_ready(20)
            first_issue = demo.stats()["issuedAt"][0]
            plan = write_plan(redis, keys, _spec(demo, auth), workers=WORKERS, start_in=START_IN)
            workers = [start_worker(kubeload_bin, redis, keys, i, processes=PROCESSES)
                       for i in range(WORKERS)]
            fleet = Fleet(redis, keys, demo, refreshers, plan)
            failure: list[BaseException] = []
            if scenario is not None:
                def act() -> None:
                    try:
                        scenario(fleet)
                    except BaseException as exc:  # reported after the run
                        failure.append(exc)
                thread = threading.Thread(target=act, daemon=True)
                thread.start()
            codes = wait_all(workers, timeout=START_IN + DURATION + 40)
            if scenario is not None:
                thread.join(10)
                if failure:
                    raise failure[0]
            run_end = time.time()
            stats = demo.stats()
            client = fleet.client()
            totals = MetricsTotals()
            for _, fields in client.xrange(keys.metrics):
                totals.add(parse_entry(fields))
            outcome = Outcome(
                demo=stats | {"issuedInRun": [t for t in stats["issuedAt"] if t <= run_end]},
                token_stats=client.hgetall(keys.token_stats),
                token_version=int(client.hget(keys.token, "version") or 0), totals=totals,
                gauges=_gauges(client, keys), codes=codes, run_start=plan.start_at,
                first_issue=first_issue, notes=fleet.notes)
        finally:
            for refresher in refreshers:
                refresher.stop()
    outputs = "".join(r.output() for r in refreshers)
    outcome.notes["refresher_output"] = outputs
    _report(outcome)
    return outcome


def _report(outcome: Outcome) -> None:
    p99, worst = outcome.hold_latency() if outcome.gauges else (0.0, 0.0)
    print("\n" + json.dumps({
        "requests": outcome.totals.requests().reqs, "statuses": outcome.statuses,
        "failed": outcome.totals.requests().failed, "target_401": outcome.demo["unauthorized"],
        "target_served": outcome.demo["served"], "issued": outcome.demo["issued"],
        "target_401_by_reason": outcome.demo["unauthorizedByReason"],
        "target_401_first_last": [r[0] - outcome.run_start for r in
                                  outcome.demo["unauthorizedLast"][:1] + outcome.demo["unauthorizedLast"][-1:]],
        "token_stats": {k: v for k, v in outcome.token_stats.items() if k != "lastError"},
        "counters": outcome.totals.counters, "publish_to_hold_ms_p99_worst_process": p99,
        "publish_to_hold_ms_max_worst_process": worst, "worker_exit_codes": outcome.codes,
        "notes": {k: v for k, v in outcome.notes.items() if k != "refresher_output"},
        "per_second": [(round(p.start - outcome.run_start, 1), p.reqs, round(p.percentile_ms(99)),
                        round(p.percentile_ms(100))) for p in outcome.totals.series()],
    }, indent=1, default=str))


def _assert_clean(outcome: Outcome) -> None:
    assert outcome.codes == [0] * WORKERS
    assert len(outcome.gauges) == WORKERS * PROCESSES
    assert outcome.totals.requests().reqs > 10_000
    assert outcome.totals.requests().failed == 0, outcome.statuses
    assert set(outcome.statuses) <= {"200", "201"}, outcome.statuses


def test_steady_run_zero_401_and_issuances_on_schedule(tmp_path: Path, redis: RedisServer,
                                                        kubeload_bin: str) -> None:
    outcome = run_fleet(tmp_path, redis, kubeload_bin)
    _assert_clean(outcome)
    assert outcome.demo["unauthorized"] == 0
    # One issuance per refresh period (80 % of 2 s) plus the first one.
    issued = outcome.demo["issuedInRun"]
    duration = issued[-1] - outcome.first_issue
    span = (outcome.run_start + DURATION) - outcome.first_issue
    expected = span / 1.6 + 1
    print(f"issuances: {len(issued)} over {span:.1f}s (expected {expected:.1f} +- 10 %), "
          f"first to last {duration:.1f}s")
    assert abs(len(issued) - expected) <= 0.1 * expected
    # Every process holds each new version within 100 ms of its publish (p99, measured per
    # process over every version; at ~13 versions per process the p99 is the maximum).
    p99, worst = outcome.hold_latency()
    print(f"publish -> held: worst process p99 {p99:.1f} ms, max {worst:.1f} ms")
    assert p99 < 100
    versions = {g["token_version"] for g in outcome.gauges.values()}
    assert len(versions) == 1  # everyone ended on the same version
    assert outcome.totals.counters.get("token_unauthorized", 0) == 0


def test_revocations_make_one_forced_refresh_each(tmp_path: Path, redis: RedisServer,
                                                  kubeload_bin: str) -> None:
    def revoke_three_times(fleet: Fleet) -> None:
        revoked = []
        for at in (5.0, 10.0, 15.0):
            fleet.at(at)
            revoked.append(fleet.demo.revoke())
        fleet.notes["revoked"] = revoked

    outcome = run_fleet(tmp_path, redis, kubeload_bin, scenario=revoke_three_times,
                        refresher_args=("--min-forced-interval", "200ms"))
    assert outcome.notes["revoked"] == [1, 1, 1]
    # The VUs saw 401s (the target counted them) ...
    assert outcome.demo["unauthorized"] > 0
    assert outcome.totals.counters["token_unauthorized"] == outcome.demo["unauthorized"]
    # ... one forced refresh per revocation, at most one request per process and revocation ...
    assert outcome.token_stats["forced"] == "3"
    assert 3 <= outcome.totals.counters["token_forced_requests"] <= 3 * WORKERS * PROCESSES
    # ... and every request that got a 401 succeeded on its retry: nothing lost.
    _assert_clean(outcome)


def test_auth_server_errors_while_token_valid(tmp_path: Path, redis: RedisServer,
                                              kubeload_bin: str) -> None:
    # Tokens live 8 s and are refreshed with half their life left (4 s): a 3 s outage from just
    # before a refresh is bridged by the token in use.
    def outage_over_a_refresh(fleet: Fleet) -> None:
        fleet.at(3.0)
        version = fleet.wait_new_version(fleet.version(), timeout=6)
        # The next refresh is due 4 s after this version was obtained: start the outage 0.5 s
        # before that, timed from Redis (this thread may notice the version late on a busy machine).
        obtained = float(fleet.client().hget(fleet.keys.token, "obtainedAt"))
        time.sleep(max(obtained + 3.5 - time.time(), 0))
        fleet.demo.fail_auth(3)
        fleet.notes["outage_from_version"] = version
        time.sleep(3.0)
        fleet.notes["version_at_outage_end"] = fleet.version()
        fleet.notes["recovered_version"] = fleet.wait_new_version(version, timeout=4)

    outcome = run_fleet(tmp_path, redis, kubeload_bin, lifetime="8s", scenario=outage_over_a_refresh,
                        auth_extra={"refreshBefore": "50%"})
    _assert_clean(outcome)
    assert outcome.demo["unauthorized"] == 0
    assert outcome.demo["authFailuresInjected"] >= 2
    assert int(outcome.token_stats["failures"]) == outcome.demo["authFailuresInjected"]
    assert outcome.notes["version_at_outage_end"] == outcome.notes["outage_from_version"]
    assert outcome.token_stats["state"] == "ok"  # recovered without a restart
    assert "HTTP 500" in outcome.token_stats["lastError"]


def test_redis_restart_mid_run(tmp_path: Path, redis: RedisServer, kubeload_bin: str) -> None:
    # Redis is down for 0.5 s right after a publish: shorter than what the 2 s token has left,
    # so the cached token carries the load through it.
    def restart(fleet: Fleet) -> None:
        fleet.at(8.0)
        plan = fleet.client().get(fleet.keys.plan)
        before = fleet.wait_new_version(fleet.version())
        served = fleet.demo.stats()["served"]
        fleet.redis.stop()
        time.sleep(0.5)
        fleet.notes["served_while_down"] = fleet.demo.stats()["served"] - served
        fleet.redis.start()
        # The operator (or local runner) owns the plan: it writes it again after a restart.
        fleet.client().set(fleet.keys.plan, plan)
        fleet.notes["version_before"] = before
        fleet.notes["version_after"] = fleet.wait_new_version(before, timeout=5)

    outcome = run_fleet(tmp_path, redis, kubeload_bin, scenario=restart,
                        refresher_args=("--lease-ttl", "3s"))
    assert outcome.codes == [0] * WORKERS
    assert outcome.demo["unauthorized"] == 0
    # Workers kept sending with the cached token while Redis was down ...
    assert outcome.notes["served_while_down"] > 200
    # ... reconnected (every process), and all ended on the refresher's latest version.
    assert all(g.get("token_version") == max(g2["token_version"] for g2 in outcome.gauges.values())
               for g in outcome.gauges.values())
    final = outcome.token_version
    assert {g["token_version"] for g in outcome.gauges.values()} == {final}
    assert final > outcome.notes["version_after"] >= outcome.notes["version_before"]
    assert outcome.totals.counters.get("token_reconnects", 0) >= WORKERS * PROCESSES


def test_active_refresher_killed_standby_takes_over(tmp_path: Path, redis: RedisServer,
                                                    kubeload_bin: str) -> None:
    def kill_holder(fleet: Fleet) -> None:
        fleet.at(8.0)
        holder = fleet.client().get(fleet.keys.refresher_lease)
        victim = next(r for r in fleet.refreshers if r.name == holder)
        victim.kill()
        killed = time.monotonic()
        while fleet.client().get(fleet.keys.refresher_lease) in (holder, None):
            time.sleep(0.01)
        fleet.notes["takeover_s"] = round(time.monotonic() - killed, 3)
        fleet.notes["killed"] = holder

    # A lease shorter than the refresh margin (50 % of 2 s): a holder dying right before its
    # refresh is replaced before the token runs out.
    outcome = run_fleet(tmp_path, redis, kubeload_bin, replicas=2, scenario=kill_holder,
                        auth_extra={"refreshBefore": "50%"},
                        refresher_args=("--lease-ttl", "700ms"))
    _assert_clean(outcome)
    assert outcome.demo["unauthorized"] == 0
    assert outcome.notes["takeover_s"] <= 0.7 + 0.2
    assert outcome.token_stats["holder"] != outcome.notes["killed"]
    assert outcome.token_stats.get("failures", "0") == "0"
    # The takeover is counted once (the standby's first acquisition at start-up is not one).
    assert outcome.token_stats.get("failovers") == "1", outcome.token_stats
