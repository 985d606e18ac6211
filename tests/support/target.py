"""A real HTTP target for worker tests: an aiohttp server in its own process on loopback.

Behaviour per request, from the query string: `?sleep_ms=200` answers after 200 ms,
`?status=503` answers 503. Global behaviour, from `POST /__control` (JSON): `{"stall": true}`
holds every request until `{"stall": false}` (at most 60 s), `{"reset": true}` zeroes the counts.
`GET /__stats` returns {"requests": n, "by_path": {...}, "in_flight": n, "max_in_flight": n,
"by_header": {...}, "connections": n} (`by_header` counts the values of the `X-Probe` header,
`connections` the distinct client connections).

Run: `python tests/support/target.py PORT [CERT KEY]` (HTTPS with a certificate and key); in
tests use `http_target()`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STALL_LIMIT_S = 60.0


def build_app() -> Any:
    from aiohttp import web

    state: dict[str, Any] = {"requests": 0, "by_path": Counter(), "in_flight": 0, "max_in_flight": 0,
                             "by_header": Counter()}
    peers: set[int] = set()  # client ports seen: one per connection (keep-alive reuses them)
    unstalled = asyncio.Event()
    unstalled.set()

    async def control(request: web.Request) -> web.Response:
        body = await request.json()
        if "stall" in body:
            if body["stall"]:
                unstalled.clear()
            else:
                unstalled.set()
        if body.get("reset"):
            state.update(requests=0, by_path=Counter(), max_in_flight=0, by_header=Counter())
            peers.clear()
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**state, "by_path": dict(state["by_path"]),
                                  "by_header": dict(state["by_header"]), "connections": len(peers)})

    async def handle(request: web.Request) -> web.Response:
        state["requests"] += 1
        state["by_path"][request.path] += 1
        if request.transport is not None:
            peer = request.transport.get_extra_info("peername")
            if peer:
                peers.add(peer[1])
        probe = request.headers.get("X-Probe")
        if probe is not None:
            state["by_header"][probe] += 1
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        try:
            if not unstalled.is_set():
                with suppress(TimeoutError):
                    await asyncio.wait_for(unstalled.wait(), STALL_LIMIT_S)
            sleep_ms = float(request.query.get("sleep_ms", "0"))
            if sleep_ms > 0:
                # The event loop's timers have millisecond granularity and may wake a little
                # early: sleep until the full time has passed on the high-resolution clock.
                deadline = time.perf_counter() + sleep_ms / 1000
                while (left := deadline - time.perf_counter()) > 0:
                    await asyncio.sleep(left)
            await request.read()
            return web.Response(status=int(request.query.get("status", "200")), text="ok")
        finally:
            state["in_flight"] -= 1

    app = web.Application()
    app.router.add_post("/__control", control)
    app.router.add_get("/__stats", stats)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@dataclass
class HttpTarget:
    port: int
    proc: subprocess.Popen[bytes]
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/__stats", timeout=5) as response:
            result: dict[str, Any] = json.load(response)
            return result

    def control(self, **settings: Any) -> None:
        request = urllib.request.Request(self.url + "/__control", data=json.dumps(settings).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass


@contextmanager
def http_target(tls: tuple[Path, Path] | None = None) -> Iterator[HttpTarget]:
    """The target on a free port; `tls=(certificate, key)` serves HTTPS (stats/control stay
    reachable through `HttpTarget.stats()` only over plain HTTP, so use them without TLS)."""
    from support.procs import free_port, stop_process, wait_for_port

    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), str(port)]
    if tls is not None:
        argv += [str(tls[0]), str(tls[1])]
    proc = subprocess.Popen(argv)
    try:
        wait_for_port(port)
        yield HttpTarget(port, proc, tls=tls is not None)
    finally:
        stop_process(proc)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 made with the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def main() -> None:
    from aiohttp import web

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    context = None
    if len(sys.argv) > 3:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
    web.run_app(build_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
                handle_signals=True, ssl_context=context)


if __name__ == "__main__":
    main()
