"""Where a process's metrics deltas go: the run's Redis stream, with a backlog when Redis is away.

The load never waits for Redis: `push()` only queues the delta. A sender task XADDs the queue
in order; while Redis is unreachable the deltas wait in a bounded backlog and are sent when it
answers again, so the reader's totals catch up exactly (it drops duplicates by instance+seq).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

from redis.exceptions import RedisError

from ..protocol import METRICS_STREAM_MAXLEN

__all__ = ["MetricsSink"]

log = logging.getLogger(__name__)

# An hour of 2 s intervals: beyond that the oldest deltas are given up (and counted).
BACKLOG_LIMIT = 1800
_RETRY_MIN_S = 0.25
_RETRY_MAX_S = 5.0


class MetricsSink:
    def __init__(self, client: Any, stream: str, backlog_limit: int = BACKLOG_LIMIT) -> None:
        self._client = client
        self._stream = stream
        self._pending: deque[dict[str, str]] = deque()
        self._limit = backlog_limit
        self._wake = asyncio.Event()
        self.lost = 0  # deltas dropped because the backlog overflowed
        self.sent = 0
        self._unreachable_since: float | None = None
        self._closing = False

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def push(self, delta: dict[str, Any]) -> None:
        if len(self._pending) >= self._limit:
            self._pending.popleft()
            self.lost += 1
        self._pending.append({
            "worker": str(delta["worker"]),
            "process": str(delta["process"]),
            "seq": str(delta["seq"]),
            "payload": json.dumps(delta, separators=(",", ":")),
        })
        self._wake.set()

    def close(self) -> None:
        """Make `run()` return (what is still queued is for `flush()`)."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """Send queued deltas until `close()`; retries with backoff while Redis is away."""
        backoff = _RETRY_MIN_S
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not self._closing:
                if await self._send_pending():
                    backoff = _RETRY_MIN_S
                    continue
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_S)

    async def flush(self, timeout_s: float) -> bool:
        """Try to send everything queued within `timeout_s`; True when nothing is left.

        Call it after `run()` returned: the two must not send at the same time.
        """
        deadline = time.monotonic() + timeout_s
        while self._pending and time.monotonic() < deadline:
            if not await self._send_pending():
                await asyncio.sleep(min(_RETRY_MIN_S, max(deadline - time.monotonic(), 0)))
        return not self._pending

    async def _send_pending(self) -> bool:
        batch = list(self._pending)[:100]
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for fields in batch:
                    pipe.xadd(self._stream, fields, maxlen=METRICS_STREAM_MAXLEN, approximate=True)
                await pipe.execute()
        except (TimeoutError, RedisError, OSError) as error:
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
                log.warning("metrics sink unreachable (%s); keeping %d deltas until it returns",
                            type(error).__name__, len(self._pending))
            return False
        # Pop what was sent; `push()` may have dropped the oldest meanwhile, so match by identity.
        sent = {id(fields) for fields in batch}
        while self._pending and id(self._pending[0]) in sent:
            self._pending.popleft()
        self.sent += len(batch)
        if self._unreachable_since is not None:
            log.warning("metrics sink back after %.1fs; catching up",
                        time.monotonic() - self._unreachable_since)
            self._unreachable_since = None
        return True
