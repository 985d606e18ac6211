"""The aiohttp engine: pure asyncio, for platforms without pyreqwest wheels."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from .engine import EngineConfig, Outcome, SizeCache

__all__ = ["AiohttpEngine"]

_STATUS_LINE = len("HTTP/1.1 200 OK\r\n") + 2


def _failure_reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return "tls"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | aiohttp.ClientPayloadError):
        return "network"
    return "error"


class AiohttpEngine:
    """One aiohttp session per process with an unbounded keep-alive pool."""

    def __init__(self, config: EngineConfig) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,  # one connection per concurrent VU, as many as the VUs need
            ssl=config.verify_tls,  # True: the default verification, False: none
            ttl_dns_cache=300,
            keepalive_timeout=60,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=config.timeout_s),
            headers={"User-Agent": config.user_agent},
            auto_decompress=False,  # bodies are discarded
            skip_auto_headers=("Accept-Encoding",),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._sizes = SizeCache()

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> Outcome:
        sent = self._sizes.size(method, url, headers, body)
        try:
            async with self._session.request(method, url, headers=headers, data=body,
                                             allow_redirects=False) as response:
                payload = await response.read()
                received = _STATUS_LINE + len(payload)
                for name, value in response.raw_headers:
                    received += len(name) + len(value) + 4
                return response.status, sent, received, ""
        except (TimeoutError, aiohttp.ClientError) as error:
            return 0, sent, 0, _failure_reason(error)

    async def close(self) -> None:
        await self._session.close()
