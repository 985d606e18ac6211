"""One iteration of a VU: pick a request, send it (with the shared token), record the outcome.

Durations are measured from `started`: the moment the iteration was *due*. The closed model
passes the time it actually starts; the open model passes the scheduled start, so time spent
waiting behind a slow server is part of the latency (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from .engine import HttpEngine
from .prepared import RequestPicker
from .recorder import Recorder

__all__ = ["IterationGuard", "IterationRunner", "TokenSource"]

log = logging.getLogger(__name__)

UNAUTHORIZED = 401


class TokenSource(Protocol):
    """The part of `kubeload.worker.token.TokenCache` an iteration uses."""

    @property
    def header(self) -> tuple[str, str] | None: ...

    @property
    def version(self) -> int: ...

    async def on_unauthorized(self, version_used: int) -> bool: ...


class IterationRunner:
    """Runs iterations against one engine and records them in one recorder."""

    __slots__ = ("_engine", "_picker", "_recorder", "_token")

    def __init__(self, engine: HttpEngine, picker: RequestPicker, recorder: Recorder,
                 token: TokenSource | None = None) -> None:
        self._engine = engine
        self._picker = picker
        self._recorder = recorder
        self._token = token

    async def run(self, started: float | None = None) -> None:
        """One iteration; `started` is a `time.perf_counter()` value (None: now)."""
        request = self._picker.pick()
        if started is None:
            started = time.perf_counter()
        token = self._token
        if token is None:
            status, sent, received, failure = await self._engine.send(
                request.method, request.url, request.headers, request.body)
        else:
            version = token.version
            status, sent, received, failure = await self._engine.send(
                request.method, request.url, request.headers_with(token.header), request.body)
            # On a 401 the cache asks for one forced refresh per token version for the whole fleet
            # (and counts the 401 in its `token_unauthorized`); the request is retried once with
            # the new token, and only the retry counts as the request.
            if status == UNAUTHORIZED and await token.on_unauthorized(version):
                status, retry_sent, received, failure = await self._engine.send(
                    request.method, request.url, request.headers_with(token.header), request.body)
                sent += retry_sent
        if not failure and not request.accepts(status):
            failure = "status"
        request.stats.record(status, int((time.perf_counter() - started) * 1_000_000), sent, received, failure)
        self._recorder.iterations += 1


class IterationGuard:
    """What both load models do around an iteration: an interrupted one is counted; an
    unexpected exception (a bug) is logged once and counted, and the VU goes on."""

    __slots__ = ("_logged", "_on_interrupted")

    def __init__(self, on_interrupted: Callable[[], None]) -> None:
        self._on_interrupted = on_interrupted
        self._logged = False

    async def run(self, iteration: Awaitable[None]) -> None:
        try:
            await iteration
        except asyncio.CancelledError:
            self._on_interrupted()
            raise
        except Exception:
            if not self._logged:
                log.exception("an iteration failed unexpectedly")
                self._logged = True
            self._on_interrupted()
