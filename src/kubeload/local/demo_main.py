"""`kubeload demo-target`: serve the demo API (auth server + protected target) on loopback.

The first line on stdout is JSON `{"url": ..., "tokenURL": ..., "customTokenURL": ...}` so
scripts and tests can start it with `--port 0` and read where it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any

__all__ = ["register"]

ENV_SECRET = "KUBELOAD_DEMO_CLIENT_SECRET"  # names of variables, not secrets
ENV_PASSWORD = "KUBELOAD_DEMO_PASSWORD"
ENV_REFRESH = "KUBELOAD_DEMO_REFRESH_TOKEN"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo-target", help="serve the demo API (OAuth2 token endpoint + protected API) on loopback")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    parser.add_argument("--token-lifetime", default="60s", help="lifetime of issued tokens (e.g. 2s)")
    parser.add_argument("--latency", default="0ms", help="added to each protected request (e.g. 5ms)")
    parser.add_argument("--client-id", default="demo-client")
    parser.add_argument("--username", default="demo")
    parser.add_argument("--secrets-from-env", action="store_true",
                        help=f"read the client secret, password and initial refresh token from "
                        f"{ENV_SECRET}, {ENV_PASSWORD}, {ENV_REFRESH} (defaults: demo-secret, "
                        "demo-password, demo-refresh-token)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..api.durations import parse_duration
    from .demo_target import DemoConfig

    try:
        lifetime = parse_duration(args.token_lifetime)
        latency = parse_duration(args.latency) if args.latency not in ("0", "0ms", "0s") else 0.0
    except ValueError as exc:
        print(f"kubeload demo-target: {exc}", file=sys.stderr)
        return 2
    env = os.environ if args.secrets_from_env else {}
    config = DemoConfig(
        client_id=args.client_id,
        client_secret=env.get(ENV_SECRET, "demo-secret"),
        username=args.username,
        password=env.get(ENV_PASSWORD, "demo-password"),
        refresh_token=env.get(ENV_REFRESH, "demo-refresh-token"),
        token_lifetime=lifetime,
        latency=latency,
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    asyncio.run(_serve(args.host, args.port, config))
    return 0


async def _serve(host: str, port: int, config: Any) -> None:
    from aiohttp import web

    from .demo_target import build_app

    runner = web.AppRunner(build_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    server: Any = site._server
    bound = server.sockets[0].getsockname()[1] if server is not None else port
    url = f"http://{host}:{bound}"
    print(json.dumps({"url": url, "tokenURL": f"{url}/oauth/token",
                      "customTokenURL": f"{url}/custom/token"}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
