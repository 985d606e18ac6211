"""Watch a run's token in Redis from a thread, as the tests' referee."""

from __future__ import annotations

import threading
import time

import redis as redis_lib

from kubeload.protocol import RunKeys
from support.procs import RedisServer

__all__ = ["TokenWatch"]


class TokenWatch:
    """Polls the run's Redis every 10 ms from a thread: the longest time without a valid token
    in the token hash, the versions seen, the lease holder's changes, and (for the leak scan
    only, never printed) every token value."""

    def __init__(self, redis: RedisServer, keys: RunKeys) -> None:
        self.client = redis_lib.Redis(port=redis.port, password=redis.password, decode_responses=True,
                                      socket_timeout=5)
        self.keys = keys
        self.gap = 0.0
        self.versions: list[int] = []
        self.holders: list[tuple[float, str | None]] = []  # (monotonic time, lease holder) on change
        self.tokens: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        invalid_since: float | None = None
        while not self._stop.is_set():
            token = self.client.hgetall(self.keys.token)
            holder = self.client.get(self.keys.refresher_lease)
            now = time.time()
            if not self.holders or self.holders[-1][1] != holder:
                self.holders.append((time.monotonic(), holder))
            if token and float(token["expiresAt"]) > now:
                invalid_since = None
                self.tokens.add(token["token"])
                if not self.versions or self.versions[-1] != int(token["version"]):
                    self.versions.append(int(token["version"]))
            elif self.versions:  # a token was there and is no longer valid
                invalid_since = invalid_since or now
                self.gap = max(self.gap, now - invalid_since)
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
