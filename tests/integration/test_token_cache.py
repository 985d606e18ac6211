"""The worker side (`TokenCache`, in this process) against a real refresher and Redis."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
import redis.asyncio as aioredis
from support.procs import RedisServer
from test_token_harness import auth_for, demo_target, start_refresher

from kubeload.protocol import RunKeys
from kubeload.worker.token import TokenCache

pytestmark = pytest.mark.integration

RUN = "ns/cache/run1"
KEYS = RunKeys("ns", "cache", "run1")


def _cache(redis: RedisServer, worker: str = "w0") -> TokenCache:
    return TokenCache(lambda: aioredis.Redis.from_url(redis.url, password=redis.password),
                      KEYS, "Authorization", worker)


def _sync(redis: RedisServer) -> redis_lib.Redis:
    return redis_lib.Redis(port=redis.port, password=redis.password, decode_responses=True)


def test_cache_follows_every_version_within_100ms(tmp_path: Path, redis: RedisServer) -> None:
    with demo_target(tmp_path, lifetime="1s") as demo:
        refresher = start_refresher(tmp_path, redis, RUN, auth_for(demo, "client_credentials"))
        try:
            async def scenario() -> dict[str, float | int]:
                cache = _cache(redis)
                await cache.start()  # before any token: the gate waits
                await cache.wait_ready(timeout=15)
                first = cache.version
                async with httpx.AsyncClient() as client:
                    deadline = time.monotonic() + 4
                    while time.monotonic() < deadline:
                        header = cache.header
                        assert header is not None
                        response = await client.get(demo.url + "/api/items", headers=[header])
                        assert response.status_code == 200
                        await asyncio.sleep(0.02)
                assert cache.version >= first + 4  # 1 s tokens refreshed every 0.8 s
                await cache.close()
                return cache.stats()

            stats = asyncio.run(scenario())
            assert demo.stats()["unauthorized"] == 0
        finally:
            refresher.stop()
    print(f"\npublish->held over {stats['token_publish_to_hold_ms_count']} versions: "
          f"p50 {stats['token_publish_to_hold_ms_p50']:.2f} ms, "
          f"p99 {stats['token_publish_to_hold_ms_p99']:.2f} ms")
    assert stats["token_publish_to_hold_ms_count"] >= 4
    assert stats["token_publish_to_hold_ms_p99"] < 100


def test_thousand_401s_make_one_refresh_request(tmp_path: Path, redis: RedisServer) -> None:
    with demo_target(tmp_path, lifetime="60s") as demo:
        refresher = start_refresher(tmp_path, redis, RUN, auth_for(demo, "client_credentials"),
                                    args=("--min-forced-interval", "0s"))
        try:
            refresher.wait_ready()

            async def scenario() -> tuple[list[bool], int, int, TokenCache, TokenCache]:
                a, b = _cache(redis, "wa"), _cache(redis, "wb")  # two worker processes
                for cache in (a, b):
                    await cache.start()
                    await cache.wait_ready(5)
                used = a.version
                assert demo.revoke() == 1
                async with httpx.AsyncClient() as client:
                    header = a.header
                    assert header is not None
                    response = await client.get(demo.url + "/api/items", headers=[header])
                    assert response.status_code == 401
                results = await asyncio.gather(
                    *(cache.on_unauthorized(used) for cache in (a, b) for _ in range(1000)))
                # Late 401s for the old version (in-flight requests) make no new request.
                assert await a.on_unauthorized(used)
                return list(results), used, a.version, a, b

            results, used, now, a, _b = asyncio.run(scenario())
        finally:
            refresher.stop()
        assert all(results) and now == used + 1
        entries = _sync(redis).xrange(KEYS.refresh_requests)
        assert sorted(e[1]["worker"] for e in entries) == ["wa", "wb"]  # one per process
        assert {e[1]["version"] for e in entries} == {str(used)}
        assert a.stats()["token_forced_requests"] == 1 and a.stats()["token_unauthorized"] == 1001
        stats = _sync(redis).hgetall(KEYS.token_stats)
        assert stats["forced"] == "1"  # both requests, one forced refresh
        assert demo.stats()["issuedTotal"] == 2


def test_stale_and_repeated_requests_are_ignored(tmp_path: Path, redis: RedisServer) -> None:
    with demo_target(tmp_path, lifetime="60s") as demo:
        refresher = start_refresher(tmp_path, redis, RUN, auth_for(demo, "client_credentials"),
                                    args=("--min-forced-interval", "0s"))
        try:
            refresher.wait_ready()
            client = _sync(redis)
            version = int(client.hget(KEYS.token, "version") or 0)
            for worker in range(20):  # 20 processes reporting the same version
                client.xadd(KEYS.refresh_requests, {"version": version, "worker": f"w{worker}"})
            deadline = time.monotonic() + 5
            while int(client.hget(KEYS.token, "version") or 0) == version and time.monotonic() < deadline:
                time.sleep(0.05)
            assert int(client.hget(KEYS.token, "version") or 0) == version + 1
            client.xadd(KEYS.refresh_requests, {"version": version, "worker": "late"})  # stale
            client.xadd(KEYS.refresh_requests, {"version": 0, "worker": "ancient"})
            time.sleep(1.0)
            assert int(client.hget(KEYS.token, "version") or 0) == version + 1
            assert client.hget(KEYS.token_stats, "forced") == "1"
        finally:
            refresher.stop()
        assert demo.stats()["issuedTotal"] == 2


def test_older_versions_are_ignored(redis: RedisServer) -> None:
    client = _sync(redis)
    client.hset(KEYS.token, mapping={"token": "t5", "version": 5, "header": "Bearer t5",
                                     "expiresAt": time.time() + 60, "obtainedAt": time.time()})

    async def scenario() -> TokenCache:
        cache = _cache(redis)
        await cache.start()
        await cache.wait_ready(5)
        assert cache.version == 5
        publish = aioredis.Redis.from_url(redis.url, password=redis.password)
        old = {"v": 4, "h": "Bearer t4", "e": time.time() + 60, "o": 0, "p": time.time()}
        await publish.publish(KEYS.token_events, json.dumps(old))
        new = {"v": 6, "h": "Bearer t6", "e": time.time() + 60, "o": 0, "p": time.time()}
        await publish.publish(KEYS.token_events, json.dumps(new))
        await publish.publish(KEYS.token_events, json.dumps(old))
        await asyncio.sleep(0.3)
        await publish.aclose()
        await cache.close()
        return cache

    cache = asyncio.run(scenario())
    assert cache.version == 6 and cache.header == ("Authorization", "Bearer t6")
    assert cache.stats()["token_versions_seen"] == 2


def test_wait_ready_times_out_without_token(redis: RedisServer) -> None:
    async def scenario() -> None:
        cache = _cache(redis)
        await cache.start()
        try:
            with pytest.raises(TimeoutError):
                await cache.wait_ready(0.3)
            assert cache.header is None
        finally:
            await cache.close()

    asyncio.run(scenario())


def test_redis_restart_keeps_the_cached_token(tmp_path: Path, redis: RedisServer) -> None:
    with demo_target(tmp_path, lifetime="3s") as demo:
        refresher = start_refresher(tmp_path, redis, RUN, auth_for(demo, "client_credentials"),
                                    args=("--lease-ttl", "2s"))
        try:
            refresher.wait_ready()

            async def scenario() -> TokenCache:
                cache = _cache(redis)
                await cache.start()
                await cache.wait_ready(5)
                before = cache.version
                redis.stop()
                down_at = time.monotonic()
                ok = 0
                async with httpx.AsyncClient() as client:
                    while time.monotonic() - down_at < 1.0:  # Redis down: the cache still serves
                        header = cache.header
                        assert header is not None
                        response = await client.get(demo.url + "/api/items", headers=[header])
                        ok += response.status_code == 200
                        await asyncio.sleep(0.05)
                    assert ok >= 10
                    redis.start()
                    deadline = time.monotonic() + 10
                    while cache.version <= before and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    header = cache.header
                    assert header is not None
                    response = await client.get(demo.url + "/api/items", headers=[header])
                    assert response.status_code == 200
                await cache.close()
                return cache

            cache = asyncio.run(scenario())
            assert cache.stats()["token_reconnects"] >= 1
            assert cache.version > 1
        finally:
            refresher.stop()
        assert demo.stats()["unauthorized"] == 0
