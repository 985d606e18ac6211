"""Two refresher replicas: one holds the lease and refreshes, the other takes over."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis as redis_lib
import redis.asyncio as aioredis
from support.procs import RedisServer
from support.token_watch import TokenWatch
from test_token_harness import auth_for, demo_target, start_refresher

from kubeload.protocol import RunKeys
from kubeload.refresher.store import Store

pytestmark = pytest.mark.integration

RUN = "ns/lease/run1"
KEYS = RunKeys("ns", "lease", "run1")
LEASE = 2.0


def _sync(redis: RedisServer) -> redis_lib.Redis:
    return redis_lib.Redis(port=redis.port, password=redis.password, decode_responses=True)


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
        watch = TokenWatch(redis, KEYS)
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
        assert stats.get("failovers") == "1", stats  # a's first acquisition is not a failover
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


def test_failovers_count_takeovers_from_another_holder_only(redis: RedisServer) -> None:
    """The lease script's `failovers` counter: +1 when a replica takes the lease while the stats
    name another holder (after a death or a release), not at the first acquisition, not when the
    same holder takes its own lapsed lease back, not after Redis lost the stats."""
    async def scenario() -> list[tuple[str | None, str | None]]:
        client = aioredis.Redis(port=redis.port, password=redis.password, decode_responses=True)
        a, b = Store(client, KEYS, "a"), Store(client, KEYS, "b")
        seen: list[tuple[str | None, str | None]] = []

        async def note() -> None:
            stats = await client.hgetall(KEYS.token_stats)
            seen.append((stats.get("holder"), stats.get("failovers")))

        try:
            assert (await a.lease(200)).acquired  # first acquisition
            await note()
            assert not (await b.lease(200)).held  # a holds it: b stands by
            await asyncio.sleep(0.3)
            assert (await a.lease(200)).acquired  # a's own lease lapsed and a takes it back
            await note()
            await asyncio.sleep(0.3)
            assert (await b.lease(200)).acquired  # a died: b takes over
            await note()
            assert (await b.lease(200)).held and not (await b.lease(200)).acquired  # renewals
            await note()
            await b.release()
            assert (await a.lease(200)).acquired  # b handed over: a takes over
            await note()
            await client.delete(KEYS.refresher_lease, KEYS.token_stats)  # Redis restarted empty
            assert (await a.lease(200)).acquired
            await note()
        finally:
            await client.aclose()
        return seen

    assert asyncio.run(scenario()) == [("a", None), ("a", None), ("b", "1"), ("b", "1"), ("a", "2"),
                                       ("a", None)]
