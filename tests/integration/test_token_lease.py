"""Two refresher replicas: one holds the lease and refreshes, the other takes over."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis as redis_lib
from support.procs import RedisServer
from test_token_harness import auth_for, demo_target, start_refresher

from kubeload.protocol import RunKeys

pytestmark = pytest.mark.integration

RUN = "ns/lease/run1"
KEYS = RunKeys("ns", "lease", "run1")
LEASE = 2.0


def _sync(redis: RedisServer) -> redis_lib.Redis:
    return redis_lib.Redis(port=redis.port, password=redis.password, decode_responses=True)


class _Watch:
    """Polls the token hash every 20 ms: the longest time without a valid token, versions."""

    def __init__(self, redis: RedisServer) -> None:
        self._client = _sync(redis)
        self.gap = 0.0
        self.versions: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        invalid_since: float | None = None
        while not self._stop.is_set():
            token = self._client.hgetall(KEYS.token)
            now = time.time()
            if token and float(token["expiresAt"]) > now:
                invalid_since = None
                version = int(token["version"])
                if not self.versions or self.versions[-1] != version:
                    self.versions.append(version)
            else:
                invalid_since = invalid_since or now
                self.gap = max(self.gap, now - invalid_since)
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _holder(redis: RedisServer) -> str | None:
    return _sync(redis).get(KEYS.refresher_lease)


@pytest.mark.parametrize("grant", ["client_credentials", "refresh_token"])
def test_standby_takes_over_within_one_lease_period(grant: str, tmp_path: Path,
                                                    redis: RedisServer) -> None:
    args = ("--lease-ttl", f"{LEASE}s")
    # The refresh margin (50 % of 5 s) exceeds the lease period: a holder dying just before
    # its refresh leaves the standby enough time (the refresher warns when it does not).
    with demo_target(tmp_path, lifetime="5s") as demo:
        auth = auth_for(demo, grant, refreshBefore="50%")
        a = start_refresher(tmp_path, redis, RUN, auth, name="a", args=args)
        a.wait_ready()
        b = start_refresher(tmp_path, redis, RUN, auth, name="b", args=args)
        watch = _Watch(redis)
        try:
            b.wait_ready()  # ready = a valid token is in Redis, whoever wrote it
            time.sleep(1.0)
            assert _holder(redis) == "a"
            a.kill()  # SIGKILL: no release, the lease must run out
            killed = time.monotonic()
            while _holder(redis) != "b" and time.monotonic() - killed < LEASE + 2:
                time.sleep(0.01)
            takeover = time.monotonic() - killed
            assert _holder(redis) == "b"
            # Keep going on b for two refreshes; with refresh_token this works only if b
            # uses the refresh token a rotated last (the demo refuses an old one).
            time.sleep(5.5)
        finally:
            watch.stop()
            b.stop()
            a.stop()
        stats = _sync(redis).hgetall(KEYS.token_stats)
        print(f"\n{grant}: takeover after {takeover:.2f}s (lease {LEASE}s), "
              f"longest time without a valid token: {watch.gap:.2f}s, versions {watch.versions}")
        assert takeover <= LEASE + 0.3
        assert watch.gap == 0.0  # the token in Redis never lapsed
        assert watch.versions == sorted(set(watch.versions))  # versions only grow
        assert stats["holder"] == "b" and stats.get("failures", "0") == "0"
        assert demo.stats()["authRejected"] == 0
        assert "lease acquired by b" in b.output()


def test_graceful_stop_hands_over_at_once(tmp_path: Path, redis: RedisServer) -> None:
    args = ("--lease-ttl", "10s")
    with demo_target(tmp_path, lifetime="60s") as demo:
        a = start_refresher(tmp_path, redis, RUN, auth_for(demo, "client_credentials"),
                            name="a", args=args)
        a.wait_ready()
        b = start_refresher(tmp_path, redis, RUN, auth_for(demo, "client_credentials"),
                            name="b", args=args)
        try:
            b.wait_ready()
            time.sleep(0.5)
            a.stop()  # SIGTERM: releases the lease
            assert a.proc.returncode == 0
            stopped = time.monotonic()
            while _holder(redis) != "b" and time.monotonic() - stopped < 12:
                time.sleep(0.02)
            handover = time.monotonic() - stopped
            # b sleeps until the PTTL it last saw, at most one lease period, and continues
            # with a's token instead of asking for a new one.
            assert _holder(redis) == "b" and handover <= 10.5
            assert demo.stats()["issuedTotal"] == 1
        finally:
            b.stop()
            a.stop()
