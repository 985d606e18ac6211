"""The run's control plane as a worker process sees it: notice a stop, a new plan, a new membership.

A stop is the `stop` key's presence or a "stop" message on the `control` channel; the channel
makes it immediate, the key makes it reliable (a message sent while the subscription was down
is lost, the key is re-checked every poll). "plan" on the channel asks to re-read the plan,
"membership" to re-read the membership (`kubeload.membership`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from ..protocol import RunKeys, text

__all__ = ["StopWatcher"]

log = logging.getLogger(__name__)

_ERRORS = (RedisError, OSError, TimeoutError)


class StopWatcher:
    """Sets `stop` when the run is stopped; calls `on_plan` / `on_membership` when the plan / the
    membership should be re-read."""

    def __init__(self, client: Any, keys: RunKeys, stop: asyncio.Event, *,
                 on_plan: Callable[[], None] = lambda: None, on_membership: Callable[[], None] = lambda: None,
                 poll_s: float = 1.0) -> None:
        self._client = client
        self._keys = keys
        self._stop = stop
        self._on_plan = on_plan
        self._on_membership = on_membership
        self._poll_s = poll_s
        self.reason = ""

    async def run(self) -> None:
        """Watch until cancelled or stopped."""
        await asyncio.gather(self._listen(), self._poll())

    def _stopped(self, reason: str) -> None:
        if not self._stop.is_set():
            self.reason = reason
            self._stop.set()

    async def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                if await self._client.exists(self._keys.stop):
                    self._stopped("stop key")
                    return
            except _ERRORS:
                pass  # Redis away: the load goes on, and so does polling
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._poll_s)

    async def _listen(self) -> None:
        backoff = 0.25
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._keys.control)
                backoff = 0.25
                while not self._stop.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    command = text(message.get("data"))
                    if command == "stop":
                        self._stopped("control channel")
                    elif command == "plan":
                        self._on_plan()
                    elif command == "membership":
                        self._on_membership()
            except _ERRORS:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(*_ERRORS):
                    await pubsub.aclose()
