"""The worker side of the shared token: one in-memory copy per process, pushed by pub/sub.

VUs read `TokenCache.header` (a tuple built once per version): no Redis call per request.
The cache subscribes to `token:events` *before* reading the token hash, so a version
published in between is not missed, and reads the hash again after every (re)subscription
(redis-py resubscribes on reconnect; each confirmation triggers the read). A version older
than the one held is ignored, unless the held token has expired (then Redis lost its state
and the refresher started over).

On a 401, `on_unauthorized(version_used)` sends one refresh request per version for the whole
process (single flight: a thousand VUs hitting 401 at once make one XADD), then waits a
bounded time for a newer version.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..protocol import RunKeys, text

__all__ = ["TokenCache"]

log = logging.getLogger("kubeload.worker.token")

_REQUESTS_MAXLEN = 1000  # the refresh-request stream is trimmed (approximately) to this
_SAMPLES_KEPT = 1000
# Reconnecting is one connection attempt per process: cheap, and a short cap matters more
# than politeness when tokens are short-lived.
_RECONNECT_MAX = 0.5


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class TokenCache:
    """The current token of one worker process."""

    def __init__(self, redis_factory: Callable[[], aioredis.Redis], keys: RunKeys,
                 header_name: str, worker_id: str, *, refresh_wait: float = 5.0) -> None:
        self._factory = redis_factory
        self._keys = keys
        self._header_name = header_name
        self._worker_id = worker_id
        self._refresh_wait = refresh_wait
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._header: tuple[str, str] | None = None
        self._version = 0
        self._expires_at = 0.0
        self._obtained_at = 0.0
        self._newer: dict[int, asyncio.Future[None]] = {}  # version used -> "a newer one came"
        self._requested: dict[int, float] = {}  # versions a refresh was requested for -> when
        self._closed = False
        # numbers
        self._unauthorized = 0
        self._forced_sent = 0
        self._versions_seen = 0
        self._reconnects = 0
        self._latencies: deque[float] = deque(maxlen=_SAMPLES_KEPT)
        self._by_version: dict[int, float] = {}

    # -- the hot path ------------------------------------------------------------------------

    @property
    def header(self) -> tuple[str, str] | None:
        """(header name, value) of the current token, or None before the first one."""
        return self._header

    @property
    def version(self) -> int:
        return self._version

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, then read the current token; returns once subscribed (or after the first
        connection attempt failed: the cache keeps trying in the background)."""
        if self._task is not None:
            return
        self._subscribed = asyncio.Event()
        self._ready = asyncio.Event()
        self._client = self._factory()
        self._task = asyncio.create_task(self._listen(), name="kubeload-token-cache")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=2.0)

    async def wait_ready(self, timeout: float) -> None:
        """Wait until a token is held; raises TimeoutError (the start gate of the load)."""
        if self._ready is None:
            raise RuntimeError("TokenCache.start() was not called")
        if self._header is not None:
            return
        await asyncio.wait_for(self._ready.wait(), timeout=timeout)

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            # Bounded: redis-py may swallow a cancellation that lands while it connects.
            await asyncio.wait({self._task}, timeout=1.0)
        for future in self._newer.values():
            if not future.done():
                future.cancel()
        self._newer.clear()
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()

    # -- 401 ---------------------------------------------------------------------------------

    async def on_unauthorized(self, version_used: int) -> bool:
        """A request sent with `version_used` got 401. Ask for a refresh (once per version for
        the whole process) and wait up to `refresh_wait` seconds for a newer version.
        True when a newer version is held (the request may be retried with `header`)."""
        self._unauthorized += 1
        if self._version > version_used:
            return True
        now = time.monotonic()
        sent = self._requested.get(version_used)
        # Single flight; a failed XADD (Redis down) may be retried a second later.
        if sent is None or (sent < 0 and now + sent > 1.0):
            self._requested[version_used] = now
            asyncio.create_task(self._request_refresh(version_used))  # noqa: RUF006 - it ends on its own
        future = self._newer.get(version_used)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._newer[version_used] = future
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=self._refresh_wait)
        except (TimeoutError, asyncio.CancelledError):
            if self._closed:
                return False
        return self._version > version_used

    async def _request_refresh(self, version_used: int) -> None:
        assert self._client is not None
        try:
            await self._client.xadd(
                self._keys.refresh_requests,
                {"version": str(version_used), "worker": self._worker_id},
                maxlen=_REQUESTS_MAXLEN, approximate=True)
            self._forced_sent += 1
        except (RedisError, OSError) as exc:
            # Negative = "failed at": on_unauthorized may try again later.
            self._requested[version_used] = -time.monotonic()
            log.warning("could not request a token refresh (%s)", type(exc).__name__)
        # Forget old versions: only the last few can still get a 401.
        for old in [v for v in self._requested if v < self._version - 8]:
            del self._requested[old]

    # -- numbers -----------------------------------------------------------------------------

    def latency_samples(self) -> list[float]:
        """Publish -> held latencies in ms, one per version received by pub/sub (the last
        1000)."""
        return list(self._latencies)

    def latency_by_version(self) -> dict[int, float]:
        """Publish -> held latency in ms per version (the last 1000), to find the slowest
        process of the fleet for each version."""
        return dict(self._by_version)

    def stats(self) -> dict[str, float | int]:
        ordered = sorted(self._latencies)
        return {
            "token_version": self._version,
            "token_age_s": max(0.0, time.time() - self._obtained_at) if self._obtained_at else 0.0,
            "token_versions_seen": self._versions_seen,
            "token_unauthorized": self._unauthorized,
            "token_forced_requests": self._forced_sent,
            "token_reconnects": self._reconnects,
            "token_publish_to_hold_ms_count": len(ordered),
            "token_publish_to_hold_ms_last": self._latencies[-1] if self._latencies else 0.0,
            "token_publish_to_hold_ms_p50": _percentile(ordered, 0.50),
            "token_publish_to_hold_ms_p99": _percentile(ordered, 0.99),
            "token_publish_to_hold_ms_max": ordered[-1] if ordered else 0.0,
        }

    # -- pub/sub -----------------------------------------------------------------------------

    async def _listen(self) -> None:
        assert self._client is not None and self._subscribed is not None
        delay = 0.05
        first = True
        lost_at: float | None = None  # when the channel was lost (log once per outage)
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._keys.token_events)
                async for message in pubsub.listen():
                    kind = text(message.get("type"))
                    if kind == "subscribe":
                        # A (re)subscription: anything published while we were away is only
                        # in the hash now.
                        if not first:
                            self._reconnects += 1
                        if lost_at is not None:
                            log.info("token channel back after %.1fs (token version %d)",
                                     time.monotonic() - lost_at, self._version)
                            lost_at = None
                        first = False
                        await self._read_hash()
                        self._subscribed.set()
                        delay = 0.05
                    elif kind == "message":
                        await self._on_message(message.get("data"))
            except (RedisError, OSError) as exc:
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning("token channel lost (%s); keeping token version %d, reconnecting",
                                type(exc).__name__, self._version)
                self._subscribed.set()  # start() must not wait for a Redis that is down
                first = False
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)

    async def _read_hash(self) -> None:
        assert self._client is not None
        raw: Any = await self._client.hgetall(self._keys.token)
        fields = {text(k): text(v) for k, v in raw.items()}
        if "version" not in fields or "header" not in fields:
            return  # no token yet: the publish of the first one will come on the channel
        self._apply(int(fields["version"]), fields["header"],
                    float(fields.get("expiresAt", 0)), float(fields.get("obtainedAt", 0)))

    async def _on_message(self, data: Any) -> None:
        body = text(data)
        if body.isdigit():  # a bare version: read the token from the hash
            if int(body) > self._version:
                await self._read_hash()
            return
        try:
            event = json.loads(body)
            self._apply(int(event["v"]), str(event["h"]), float(event.get("e", 0)),
                        float(event.get("o", 0)),
                        published_at=float(event["p"]) if "p" in event else None)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed token event")

    def _apply(self, version: int, header: str, expires_at: float, obtained_at: float, *,
               published_at: float | None = None) -> None:
        if version <= self._version:
            # Older or the same. A held token that has expired while Redis shows an older
            # version means the run's state was lost and the refresher started over.
            if not (version < self._version and 0 < self._expires_at < time.time()):
                return
            log.warning("token version went back from %d to %d; following", self._version, version)
        self._header = (self._header_name, header)
        self._version = version
        self._expires_at = expires_at
        self._obtained_at = obtained_at
        self._versions_seen += 1
        if published_at is not None:  # pushed by pub/sub: the publish -> held latency
            latency = max(0.0, (time.time() - published_at) * 1000.0)
            self._latencies.append(latency)
            self._by_version[version] = latency
            if len(self._by_version) > _SAMPLES_KEPT:
                del self._by_version[min(self._by_version)]
        for used, future in list(self._newer.items()):
            if used < version:
                if not future.done():
                    future.set_result(None)
                del self._newer[used]
        if self._ready is not None:
            self._ready.set()
