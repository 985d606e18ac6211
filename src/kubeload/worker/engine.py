"""The HTTP engine interface: one small Protocol, two implementations, chosen by benchmark.

A VU calls `send(method, url, headers, body)` and gets `(status, bytes_sent, bytes_received,
failure)`: `failure` is "" when a response arrived (whatever its status), else the reason the
request failed (`timeout`, `connect`, `tls`, `network`, `error`) and `status` is 0. Engines
never raise for a failed request, so the hot path has no try/except of its own.

Every engine keeps a keep-alive connection pool for the process, applies `timeout` to each
request (connect to end of body), verifies TLS unless told not to, and reads response bodies
fully and throws them away. `bench/engines.py` compares them; pyreqwest (Rust, hyper) does
about 2.5x the requests per core of aiohttp here, so it is the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from .. import __version__

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "EngineConfig",
    "HttpEngine",
    "Outcome",
    "make_engine",
    "request_size",
]

# (status, bytes_sent, bytes_received, failure); status 0 and a reason when no response came.
Outcome = tuple[int, int, int, str]

DEFAULT_ENGINE = "pyreqwest"
ENGINES = ("pyreqwest", "aiohttp")
USER_AGENT = f"kubeload/{__version__}"


@dataclass(frozen=True)
class EngineConfig:
    timeout_s: float = 10.0
    verify_tls: bool = True
    user_agent: str = USER_AGENT


class HttpEngine(Protocol):
    """What a VU needs from an HTTP client."""

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> Outcome:
        """Send one request, read and discard the body; never raises for a failed request."""
        ...

    async def close(self) -> None:
        """Close the pool."""
        ...


def request_size(method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> int:
    """Bytes of an HTTP/1.1 request on the wire, near enough for `data_sent`.

    Request line, the headers given (plus Host and User-Agent an engine adds), blank line, body.
    """
    size = len(method) + len(url) + 13  # "GET <url> HTTP/1.1\r\n", the url stands in for path+Host
    for name, value in headers.items():
        size += len(name) + len(value) + 4
    size += 40  # User-Agent, Accept, Host's header names and the final CRLF
    return size + (len(body) if body else 0)


class SizeCache:
    """`request_size` per headers mapping, computed once: VUs reuse the same mapping objects.

    Keyed by identity and holding the mapping itself, so an id is never reused while cached.
    """

    __slots__ = ("_sizes",)
    _LIMIT = 4096

    def __init__(self) -> None:
        self._sizes: dict[int, tuple[Mapping[str, str], str, int, int]] = {}

    def size(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> int:
        cached = self._sizes.get(id(headers))
        body_len = len(body) if body else 0
        if cached is not None and cached[0] is headers and cached[1] == url and cached[3] == body_len:
            return cached[2]
        if len(self._sizes) >= self._LIMIT:
            self._sizes.clear()
        size = request_size(method, url, headers, body)
        self._sizes[id(headers)] = (headers, url, size, body_len)
        return size


def make_engine(name: str, config: EngineConfig) -> HttpEngine:
    """Build the engine called `name` (one of `ENGINES`). Must run inside the event loop."""
    if name == "pyreqwest":
        from .engine_pyreqwest import PyreqwestEngine

        return PyreqwestEngine(config)
    if name == "aiohttp":
        from .engine_aiohttp import AiohttpEngine

        return AiohttpEngine(config)
    raise ValueError(f"unknown HTTP engine {name!r}: use one of {', '.join(ENGINES)}")
