"""The refresher's probe endpoints: `/healthz` (the process runs), `/readyz` (a valid token is
in Redis) and `/metrics` (Prometheus text format) when a metrics renderer is plugged in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["ProbeServer"]

ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]
MetricsRenderer = Callable[[], str]
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ProbeServer:
    """A tiny aiohttp server; `ready` answers (ready?, reason) and must not raise."""

    def __init__(self, host: str, port: int, ready: ReadyCheck,
                 metrics: MetricsRenderer | None = None) -> None:
        self._host = host
        self._ready = ready
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._render_metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self.port)
        await site.start()
        server = site._server
        if server is not None and isinstance(server, asyncio.Server) and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, reason = await self._ready()
        return web.Response(status=200 if ready else 503, text=reason + "\n")

    async def _render_metrics(self, request: web.Request) -> web.Response:
        if self._metrics is None:
            return web.Response(status=404, text="metrics are not enabled\n")
        return web.Response(body=self._metrics().encode("utf-8"),
                            headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})
