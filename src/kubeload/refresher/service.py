"""The refresher's loops: the lease (holder or standby), refreshing, forced refreshes.

One `Refresher` per process. The lease loop renews (holder) or waits for the lease to
expire (standby, sleeping exactly its remaining PTTL, so it takes over within one lease
period of the holder's death). While it holds the lease, the process runs two tasks:

- the refresh loop: sleeps until `refresh_at(...)`, obtains a token, publishes it; on failure
  retries with backoff and jitter while the current token stays in use, and records an
  expiry when the token runs out with no replacement;
- the request consumer: reads `token:refresh-requests` and wakes the refresh loop for at most
  one forced refresh per version (requests for older versions are stale and ignored).

Only the first token of a run may end the process (FirstTokenError, after a bounded number
of tries, at once for a permanent error such as HTTP 401); afterwards it retries forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from .errors import FirstTokenError, TokenEndpointError
from .grants import Token, TokenSource
from .redact import Redactor
from .schedule import Backoff, RefreshBefore, refresh_at, retry_delay
from .store import Store

if TYPE_CHECKING:
    from ..observability import RefresherMetrics

__all__ = ["Refresher", "RefresherConfig", "header_value"]

log = logging.getLogger("kubeload.refresher")


def header_value(scheme: str, token: str) -> str:
    """The pre-built header value workers send (`Bearer <token>`, or the bare token)."""
    return f"{scheme} {token}" if scheme else token


@dataclass(frozen=True)
class RefresherConfig:
    refresh_before: RefreshBefore
    scheme: str = "Bearer"
    lease_ttl: float = 10.0
    first_token_attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    min_forced_interval: float = 1.0
    # XREAD BLOCK on the refresh-request stream: one Redis command per block period when idle.
    request_block: float = 15.0

    @property
    def renew_interval(self) -> float:
        # Three renewals per lease period: one lost round trip never costs the lease.
        return self.lease_ttl / 3.0


@dataclass
class _Current:
    token: Token
    version: int
    header: str


async def _cancel(task: asyncio.Task[None], timeout: float = 1.0) -> None:
    """Cancel and wait, bounded: redis-py can swallow a cancellation that lands while it sets
    up a connection and then sits in a blocking XREAD for its whole block time."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if done and not task.cancelled():
        with contextlib.suppress(_LeaseLost, RedisError, OSError):
            task.result()


def _failure_state(expires_at: float | None, now: float) -> str:
    """Stats `state` after a failed request: no token yet, still covered, or uncovered."""
    if expires_at is None:
        return "starting"
    return "retrying" if expires_at > now else "expired"


def _failure_reason(exc: TokenEndpointError) -> str:
    """A metrics label for a failed token request: `http_<status>`, `no_response` or
    `bad_response` (a 2xx/3xx without a usable token); never the message."""
    if exc.status is None:
        return "no_response"
    if exc.status >= 400:
        return f"http_{exc.status}"
    return "bad_response"


class _LeaseLost(Exception):
    """The token write was refused: another replica holds the lease."""


class Refresher:
    """Runs until cancelled; raises FirstTokenError when the run's first token cannot be had."""

    def __init__(self, source: TokenSource, store: Store, stream_store: Store, *,
                 config: RefresherConfig, redactor: Redactor,
                 rand: Callable[[], float] = random.random,
                 metrics: RefresherMetrics | None = None) -> None:
        self._source = source
        self._store = store
        self._stream_store = stream_store  # own connection: XREAD BLOCK must not stall the rest
        self._config = config
        self._redact = redactor
        self._rand = rand
        self._known_version = 0  # highest version seen in Redis or written: versions only grow
        self._current: _Current | None = None
        self._metrics = metrics  # Prometheus series (kubeload.observability), when served
        self._wake = asyncio.Event()
        self._forced_for: int | None = None  # a refresh was requested for this version
        self._forced_done: set[int] = set()  # versions that already had their forced refresh
        self._restore = False
        self._last_attempt = 0.0
        self._expired_version: int | None = None  # the expiry of this version is recorded
        self._warned_margin = False
        self._state_written = False  # stats state=ok, holder=us are in Redis

    @property
    def holder(self) -> str:
        return self._store.holder

    def _wake_up(self) -> None:
        self._wake.set()

    def _set_holding(self, holding: bool) -> None:
        if self._metrics is not None:
            self._metrics.set_leader(holding)

    # -- lease -------------------------------------------------------------------------------

    async def run(self) -> None:
        hold: asyncio.Task[None] | None = None
        redis_down_since: float | None = None
        try:
            while True:
                interval = self._config.renew_interval
                try:
                    lease = await self._store.lease(int(self._config.lease_ttl * 1000))
                except (RedisError, OSError) as exc:
                    if redis_down_since is None:
                        redis_down_since = time.monotonic()
                        log.warning("redis unreachable (%s); keeping the current token",
                                    type(exc).__name__)
                    interval = min(interval, 0.5)
                else:
                    if redis_down_since is not None:
                        log.info("redis reachable again after %.1fs",
                                 time.monotonic() - redis_down_since)
                        redis_down_since = None
                    self._known_version = max(self._known_version, lease.version)
                    if lease.held:
                        if hold is None or hold.done():
                            log.info("lease acquired by %s (token version in redis: %d)",
                                     self.holder, lease.version)
                            self._state_written = False
                            hold = asyncio.create_task(self._hold())
                        elif (lease.acquired and self._current is not None
                              and lease.version < self._current.version):
                            # We held the lease and found it free: Redis lost its data (a restart
                            # without persistence). Write the token back.
                            self._state_written = False
                            self._restore = True
                            self._wake_up()
                    else:
                        if hold is not None and not hold.done():
                            log.warning("lease lost to another replica; standing by")
                            await self._stop(hold)
                            hold = None
                        # Sleep until the holder's lease would run out: a dead holder is
                        # replaced within one lease period; a live one renews before that.
                        interval = max(0.01, lease.pttl_ms / 1000.0 + 0.005)
                if hold is not None:
                    done, _ = await asyncio.wait({hold}, timeout=interval)
                    if done:
                        hold.result()  # re-raises FirstTokenError
                        hold = None
                else:
                    await asyncio.sleep(interval)
        finally:
            if hold is not None:
                await self._stop(hold)

    async def _stop(self, task: asyncio.Task[None]) -> None:
        await _cancel(task)
        self._set_holding(False)

    async def release(self) -> None:
        """Give the lease up (graceful shutdown) so a standby takes over at once."""
        with contextlib.suppress(RedisError, OSError):
            await self._store.release()

    # -- holding -----------------------------------------------------------------------------

    async def _hold(self) -> None:
        self._set_holding(True)
        consumer = asyncio.create_task(self._consume_requests())
        try:
            await self._adopt()
            await self._refresh_loop()
        except _LeaseLost:
            log.warning("token write refused: the lease is held by another replica")
        finally:
            await _cancel(consumer)
            self._set_holding(False)

    async def _adopt(self) -> None:
        """Continue from what a previous holder left: its token and rotated refresh token."""
        while True:
            try:
                stored = await self._store.read_token()
                rotated = await self._store.read_refresh_token()
                break
            except (RedisError, OSError) as exc:
                log.warning("cannot read the token state from redis (%s); retrying",
                            type(exc).__name__)
                await asyncio.sleep(0.2)
        if rotated:
            self._source.refresh_token = rotated
        if stored is None:
            return
        self._known_version = max(self._known_version, stored.version)
        if self._current is not None and self._current.version >= stored.version:
            return  # ours is at least as new (we held the lease before Redis restarted)
        if stored.expires_at > time.time():
            self._redact.add(stored.value)
            token = Token(value=stored.value, obtained_at=stored.obtained_at,
                          expires_at=stored.expires_at)
            self._current = _Current(token, stored.version, stored.header)
            if self._metrics is not None:
                self._metrics.adopted(stored.version, stored.obtained_at, stored.expires_at)
            log.info("continuing with token version %d (expires in %.1fs)",
                     stored.version, stored.expires_at - time.time())

    async def _refresh_loop(self) -> None:
        attempt = 0
        retry_at: float | None = None
        while True:
            reason = await self._wait(retry_at)
            if reason == "restore":
                self._restore = False
                await self._restore_token()
                continue
            if reason == "expired":
                current = self._current
                assert current is not None
                self._expired_version = current.version
                self._state_written = False
                await self._record(self._store.record_expired(time.time()))
                log.error("token version %d expired without a replacement", current.version)
                continue
            first = self._current is None and self._known_version == 0
            self._last_attempt = time.time()
            try:
                # Shielded: a lease loss must not drop a token (and a rotated refresh token)
                # the server already issued.
                token = await asyncio.shield(self._obtain())
            except TokenEndpointError as exc:
                message = self._redact(str(exc))
                now = time.time()
                expires_at = self._current.token.expires_at if self._current else None
                self._state_written = False
                if self._metrics is not None:
                    self._metrics.failed(_failure_reason(exc))
                await self._record(self._store.record_failure(
                    message, now, _failure_state(expires_at, now)))
                if first and (not exc.transient or attempt + 1 >= self._config.first_token_attempts):
                    raise FirstTokenError(
                        f"cannot obtain the first token after {attempt + 1} "
                        f"{'try' if attempt == 0 else 'tries'}: {message}") from None
                rand = self._rand()
                delay = retry_delay(self._config.backoff, attempt, rand, now, expires_at)
                log.warning("token request failed (try %d): %s; retrying in %.2fs",
                            attempt + 1, message, delay)
                # Tries squeezed together before the expiry do not grow the backoff, so once
                # the auth server is back after a long outage the token returns promptly.
                if delay >= self._config.backoff.delay(attempt, rand):
                    attempt += 1
                retry_at = now + delay
                continue
            trigger = "initial" if first else "forced" if reason == "forced" else "scheduled"
            await self._publish(token, "forced" if reason == "forced" else "new", trigger=trigger)
            if attempt:
                log.info("token request succeeded after %d failed tries", attempt)
            attempt = 0
            retry_at = None

    async def _wait(self, retry_at: float | None) -> str:
        """Sleep until something is to be done: `refresh` (due, or a retry), `forced` (a
        worker got 401 with the current version), `expired` (record it), `restore`."""
        while True:
            if self._restore:
                return "restore"
            now = time.time()
            current = self._current
            if current is None:
                if retry_at is None or now >= retry_at:
                    return "refresh"
                due = retry_at
            else:
                expires_at = current.token.expires_at
                if now >= expires_at and self._expired_version != current.version:
                    return "expired"
                if retry_at is not None:
                    due = retry_at
                else:
                    due = refresh_at(current.token.obtained_at, expires_at,
                                     self._config.refresh_before)
                    if (self._forced_for == current.version
                            and current.version not in self._forced_done):
                        # Rate limit: a target that always answers 401 must not turn the
                        # refresher into a token-issuing loop.
                        earliest = self._last_attempt + self._config.min_forced_interval
                        if now >= earliest:
                            self._forced_done.add(current.version)
                            log.info("forced refresh of version %d (a worker got 401)",
                                     current.version)
                            return "forced"
                        due = min(due, earliest)
                if now >= due:
                    return "refresh"
                if self._expired_version != current.version:
                    due = min(due, expires_at)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, due - now))

    async def _obtain(self) -> Token:
        token = await self._source.obtain()
        if token.refresh_token is not None:
            # Persist the rotated refresh token before anything else: the old one is dead.
            try:
                await self._store.write_refresh_token(token.refresh_token)
            except (RedisError, OSError):
                log.warning("could not store the rotated refresh token (redis unreachable); "
                            "it is kept in memory and written with the next token")
        return token

    async def _publish(self, token: Token, mode: str, trigger: str = "scheduled") -> None:
        header = header_value(self._config.scheme, token.value)
        delay = 0.05
        while True:
            try:
                version = await self._store.publish(
                    value=token.value, header=header, expires_at=token.expires_at,
                    obtained_at=token.obtained_at, published_at=time.time(),
                    known_version=self._known_version, mode=mode,
                    write_state=not self._state_written)
                break
            except (RedisError, OSError) as exc:
                if time.time() >= token.expires_at:
                    log.error("could not publish a token before it expired (%s)",
                              type(exc).__name__)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)
        if version < 0:
            raise _LeaseLost
        self._state_written = True
        self._known_version = max(self._known_version, version)
        self._current = _Current(token, version, header)
        if self._metrics is not None:
            self._metrics.refreshed(version, token.obtained_at, token.expires_at, trigger=trigger)
        if token.refresh_token is not None:
            await self._record(self._store.write_refresh_token(token.refresh_token))
        due = refresh_at(token.obtained_at, token.expires_at, self._config.refresh_before)
        log.info("token version %d published (%s, lifetime %.1fs, next refresh in %.1fs)",
                 version, mode, token.lifetime, due - time.time())
        margin = token.expires_at - due
        if margin < self._config.lease_ttl and not self._warned_margin:
            self._warned_margin = True
            log.warning("refreshBefore leaves %.1fs before expiry, less than the lease period "
                        "(%.1fs): if this replica dies just before a refresh, the token can "
                        "expire before the standby takes over", margin, self._config.lease_ttl)

    async def _restore_token(self) -> None:
        current = self._current
        if current is None or current.token.expires_at <= time.time():
            return
        try:
            version = await self._store.publish(
                value=current.token.value, header=current.header,
                expires_at=current.token.expires_at, obtained_at=current.token.obtained_at,
                published_at=time.time(), known_version=self._known_version, mode="restore",
                restore_version=current.version, write_state=True)
            if self._source.refresh_token is not None:
                await self._store.write_refresh_token(self._source.refresh_token)
        except (RedisError, OSError):
            self._restore = True  # try again on the next lease tick
            return
        if version < 0:
            raise _LeaseLost
        log.info("token version %d written back to redis (it had lost it)", current.version)

    async def _record(self, call: object) -> None:
        """Stats writes are best effort: a Redis hiccup must not stop refreshing."""
        try:
            await call  # type: ignore[misc]
        except (RedisError, OSError) as exc:
            log.warning("could not update token stats (%s)", type(exc).__name__)

    # -- forced refreshes --------------------------------------------------------------------

    async def _consume_requests(self) -> None:
        last_id = "0-0"  # from the start: requests sent while no one held the lease count too
        block_ms = int(self._config.request_block * 1000)
        while True:
            try:
                entries = await self._stream_store.read_refresh_requests(last_id, block_ms)
            except (RedisError, OSError):
                last_id = "0-0"  # Redis may have restarted with an empty stream
                await asyncio.sleep(0.5)
                continue
            for entry_id, fields in entries:
                last_id = entry_id
                try:
                    version = int(fields.get("version", "-1"))
                except ValueError:
                    continue
                current = self._current
                if current is None or version < current.version or version in self._forced_done:
                    continue  # stale (an older token) or already honoured
                if version == current.version:
                    self._forced_for = version
                    self._wake_up()
