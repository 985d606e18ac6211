"""`kubeload run` starts a refresher again when it exits mid-run (`RefresherKeeper`).

No processes here: the children are stand-ins with a settable exit code, the clock is fake and
the Redis client records the lease release. The real thing (SIGKILL of the refresher process
during a run, zero 401s) is `tests/faults/test_faults_local.py::test_refresher_killed_mid_run_is_restarted`.
"""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from kubeload.api.manifest import parse_loadtest
from kubeload.local import refresher_keeper as keeper_module
from kubeload.local.progress import Progress
from kubeload.local.refresher_keeper import REFRESHER_RESTARTS, RefresherKeeper
from kubeload.local.runner import LocalRun, RunOptions
from kubeload.protocol import RunKeys


class FakeProc:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class FakeChild:
    name: str
    proc: FakeProc


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


class FakeRedis:
    """Just enough of redis.asyncio.Redis: scripts (the lease release) and HGET."""

    def __init__(self) -> None:
        self.released: list[str] = []
        self.expires_at: float | None = None

    def register_script(self, script: str) -> Any:
        async def call(keys: list[str], args: list[Any]) -> int:
            if "DEL" in script:
                self.released.append(str(args[0]))
            return 1
        return call

    async def hget(self, key: str, field: str) -> bytes | None:
        assert key.endswith(":token") and field == "expiresAt"
        return None if self.expires_at is None else str(self.expires_at).encode()


def loadtest(on_expired: str) -> Any:
    return parse_loadtest({
        "apiVersion": "kubeload.dev/v1alpha1", "kind": "LoadTest", "metadata": {"name": "restart"},
        "spec": {"target": {"baseURL": "http://127.0.0.1:9"}, "requests": [{"name": "home", "path": "/"}],
                 "load": {"executor": "constant-vus", "vus": 1, "duration": "10s"},
                 "auth": {"tokenURL": "http://127.0.0.1:9/token", "clientID": {"value": "c"},
                          "clientSecret": {"env": "UNUSED"}, "onExpired": on_expired}}})


class Harness:
    """The keeper as the runner drives it: `children` is the runner's list, `tick` one poll."""

    def __init__(self, clock: FakeClock, on_expired: str) -> None:
        self.clock, self.client = clock, FakeRedis()
        self.spawned: list[list[str]] = []
        self.children: list[FakeChild] = []
        self.lines: list[str] = []
        self.interrupted = False
        self.stop_reason = ""
        self.failure = ""
        self._pids = iter(range(100, 200))
        test = loadtest(on_expired)
        self.keeper = RefresherKeeper(self.spawn, self.children.remove, RunKeys("local", "restart", "abcd1234"),
                                      test.spec.auth, self.lines.append)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> FakeChild:
        self.spawned.append(args)
        child = FakeChild(name, FakeProc(next(self._pids)))
        self.children.append(child)
        return child

    def tick(self, seconds: float = 0.5) -> None:
        """One poll of the runner: the keeper, then (as `LocalRun._follow`) a returned failure stops the run."""
        self.clock.now += seconds
        expired = asyncio.run(self.keeper.keep(self.client, interrupted=self.interrupted,  # type: ignore[arg-type]
                                               stopping=bool(self.stop_reason)))
        if expired:
            self.failure, self.stop_reason = expired, "token expired"

    def refresher(self) -> FakeChild:
        child = self.keeper.current
        assert child is not None
        return child

    def kill(self, code: int = -9) -> None:
        self.refresher().proc.returncode = code

    def restart_until_the_bound(self) -> list[float]:
        """Kill the refresher and let it be started again, REFRESHER_RESTARTS times; the delays."""
        delays = []
        for _ in range(REFRESHER_RESTARTS):
            self.kill(1)
            self.tick()
            restart_at = self.keeper.restart_at
            assert restart_at is not None
            delays.append(restart_at - self.clock.now)
            self.tick(delays[-1])
        return delays

    def messages(self) -> list[str]:
        return [line for line in self.lines if "refresher" in line]


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Harness]:
    clock = FakeClock()
    monkeypatch.setattr(keeper_module, "time", clock)
    h = Harness(clock, getattr(request, "param", "Fail"))
    first = h.keeper.start(["refresher", "--spec-file", "x"], {})
    assert h.keeper.current is first
    h.spawn("worker-0", ["worker"], {})
    yield h


def test_nothing_happens_before_the_refresher_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(keeper_module, "time", clock)
    h = Harness(clock, "Fail")  # no spec.auth in the run: `start` is never called
    h.tick()
    assert h.keeper.current is None and h.spawned == [] and h.lines == []


def test_a_live_refresher_is_left_alone(harness: Harness) -> None:
    for _ in range(5):
        harness.tick()
    assert len(harness.spawned) == 2 and harness.messages() == []


def test_a_killed_refresher_is_started_again_after_its_lease_is_freed(harness: Harness) -> None:
    assert harness.spawned[0][-2:] == ["--holder-id", "local-refresher-1"]
    first = harness.refresher()
    harness.kill()
    harness.tick()
    # The dead process's lease is freed at once (compare-and-delete on its holder id) ...
    assert harness.client.released == ["local-refresher-1"]
    assert harness.messages() == ["the refresher exited with code -9 (SIGKILL); starting it again in 0.5s "
                                  f"(restart 1 of {REFRESHER_RESTARTS})"]
    assert len(harness.spawned) == 2  # ... and the restart waits for its backoff
    harness.tick(0.5)
    assert len(harness.spawned) == 3 and harness.spawned[-1][-2:] == ["--holder-id", "local-refresher-2"]
    # The reaped child is replaced in the runner's `children`: one refresher, alive, plus the worker.
    assert [c.name for c in harness.children] == ["worker-0", "refresher"]
    assert harness.refresher() is not first and harness.refresher().proc.poll() is None
    assert harness.refresher() is harness.children[-1]


@pytest.mark.parametrize("harness", ["Fail"], indirect=True)
def test_restarts_back_off_and_stop_after_the_bound(harness: Harness) -> None:
    assert harness.restart_until_the_bound() == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert len(harness.spawned) == 2 + REFRESHER_RESTARTS
    harness.kill(1)
    harness.client.expires_at = harness.clock.now + 3  # the last token is still valid
    for _ in range(4):
        harness.tick()
    assert len(harness.spawned) == 2 + REFRESHER_RESTARTS  # no sixth restart
    gave_up = [m for m in harness.messages() if "not starting it again" in m]
    assert gave_up == [f"the refresher exited with code 1 after {REFRESHER_RESTARTS} restarts; "
                       "not starting it again: the token will expire"]
    assert harness.failure == ""
    harness.tick(2)  # past the token's expiry: auth.onExpired Fail ends the run
    assert harness.stop_reason == "token expired"
    assert "auth.onExpired: Fail" in harness.failure


@pytest.mark.parametrize("harness", ["Fail"], indirect=True)
def test_no_expiry_verdict_when_the_run_already_stops(harness: Harness) -> None:
    harness.restart_until_the_bound()
    harness.kill(1)
    harness.client.expires_at = harness.clock.now - 1
    harness.stop_reason = "interrupted"  # a stop of its own (a threshold abort, a first Ctrl-C...)
    harness.tick()
    assert harness.failure == "" and harness.stop_reason == "interrupted"


@pytest.mark.parametrize("harness", ["Continue"], indirect=True)
def test_on_expired_continue_keeps_going_without_a_refresher(harness: Harness) -> None:
    harness.restart_until_the_bound()
    harness.kill(1)
    harness.client.expires_at = harness.clock.now - 1
    harness.tick()
    assert len(harness.spawned) == 2 + REFRESHER_RESTARTS
    assert harness.stop_reason == "" and harness.failure == ""


def test_no_restart_once_interrupted(harness: Harness) -> None:
    harness.interrupted = True
    harness.kill()
    for _ in range(4):
        harness.tick()
    assert len(harness.spawned) == 2 and harness.messages() == []


def test_the_runner_hands_the_keeper_its_children_and_its_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """`LocalRun` spawns through its own `_spawn` (which records the child) and the reaped refresher
    leaves `run.children`, the list `_kill_all` goes through."""
    clock = FakeClock()
    monkeypatch.setattr(keeper_module, "time", clock)
    pids = iter(range(100, 200))

    def spawn(run: LocalRun, name: str, args: list[str], env: dict[str, str]) -> FakeChild:
        child = FakeChild(name, FakeProc(next(pids)))
        run.children.append(child)  # type: ignore[arg-type]
        return child

    monkeypatch.setattr(LocalRun, "_spawn", spawn)
    out = io.StringIO()
    run = LocalRun(loadtest("Fail"), RunOptions(live=False), Progress(stream=out, live=False))
    try:
        keeper = run._refresher_keeper
        first = keeper.start(["refresher"], {})
        assert run.children == [first]
        first.proc.returncode = -9
        for _ in range(2):
            clock.now += 0.5
            asyncio.run(keeper.keep(FakeRedis(), interrupted=False, stopping=False))  # type: ignore[arg-type]
        assert run.children == [keeper.current] and keeper.current is not first
        assert "the refresher exited with code -9 (SIGKILL); starting it again in 0.5s" in out.getvalue()
    finally:
        shutil.rmtree(run._workdir, ignore_errors=True)


def test_the_summary_shows_failovers() -> None:
    from kubeload.metrics import MetricsTotals
    from kubeload.summary import build_summary, token_section
    from kubeload.summary_text import render_summary

    section = token_section({"refreshes": "5", "version": "5", "failovers": "1", "holder": "local-refresher-2"},
                            MetricsTotals())
    assert section["failovers"] == 1 and token_section({}, MetricsTotals())["failovers"] == 0
    text = render_summary(build_summary({}, [], "passed", section))
    assert "version=5 refreshes=5 failures=0 forced=0 unauthorized=0 failovers=1" in text
