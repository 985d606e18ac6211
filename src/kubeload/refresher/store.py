"""The refresher's side of the Redis protocol (see `kubeload.protocol`).

Writes are Lua scripts so each is one atomic round trip, and every write of the token is
fenced by the lease: a replica that lost the lease (paused, partitioned) cannot overwrite
the token of the new holder. Versions only grow, also across a Redis restart that lost the
hash: the writer passes the highest version it has seen and the script goes above both.

The `token:events` message is JSON `{"v": version, "h": header, "e": expiresAt,
"o": obtainedAt, "p": publishedAt}`, so a worker applies a new version without reading the
hash (no extra round trip, no extra Redis command per worker per version). A plain decimal
version is also accepted by the worker side (it then reads the hash).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from ..protocol import RunKeys, text

__all__ = [
    "LeaseResult",
    "Store",
    "StoredToken",
]

# KEYS: lease, token, stats.  ARGV: holder, lease period in ms.
# lease: 1 = renewed (we hold it), 2 = acquired (it was free), 0 = held by another (+ PTTL).
# The token version rides along when the lease changes hands (a standby learns the highest
# version without a second call); a renewal, the common case, costs GET + PEXPIRE only.
# Acquiring it while the stats name another holder is a failover: counted (`failovers`) and
# the stats' holder set to us, in the same atomic step, so the status shows it at once, before
# the new holder's first refresh. The very first acquisition (no holder yet) is none, nor is
# taking the lease back after a Redis restart that lost the stats.
_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, 0, -1}
end
local v = tonumber(redis.call('HGET', KEYS[2], 'version') or '0') or 0
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  local prev = redis.call('HGET', KEYS[3], 'holder')
  if prev ~= ARGV[1] then
    if prev and prev ~= '' then
      redis.call('HINCRBY', KEYS[3], 'failovers', 1)
    end
    redis.call('HSET', KEYS[3], 'holder', ARGV[1])
  end
  return {2, 0, v}
end
return {0, redis.call('PTTL', KEYS[1]), v}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lease, token, events, stats
# ARGV: holder, known version, token, expiresAt, obtainedAt, header, publishedAt,
#       mode ('new' | 'forced' | 'restore'), version to restore, write state ('1' | '0')
# Returns the version now in Redis, or -1 when the lease is not ours.
# Six commands per refresh (EVALSHA, GET, HGET, HSET, PUBLISH, HINCRBY): the stats' state and
# holder are written only when they change (ARGV[10]); version and times live in the token hash.
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local cur = tonumber(redis.call('HGET', KEYS[2], 'version') or '0') or 0
local v
if ARGV[8] == 'restore' then
  v = tonumber(ARGV[9])
  if cur >= v then return cur end
else
  v = math.max(cur, tonumber(ARGV[2])) + 1
end
redis.call('HSET', KEYS[2], 'token', ARGV[3], 'version', v, 'expiresAt', ARGV[4],
           'obtainedAt', ARGV[5], 'header', ARGV[6], 'publishedAt', ARGV[7])
redis.call('PUBLISH', KEYS[3], '{"v":' .. string.format('%d', v) .. ',"h":' .. cjson.encode(ARGV[6])
           .. ',"e":' .. ARGV[4] .. ',"o":' .. ARGV[5] .. ',"p":' .. ARGV[7] .. '}')
if ARGV[8] == 'forced' then
  redis.call('HINCRBY', KEYS[4], 'forced', 1)
  redis.call('HINCRBY', KEYS[4], 'refreshes', 1)
elseif ARGV[8] == 'new' then
  redis.call('HINCRBY', KEYS[4], 'refreshes', 1)
end
if ARGV[10] == '1' then
  redis.call('HSET', KEYS[4], 'state', 'ok', 'holder', ARGV[1])
end
return v
"""


@dataclass(frozen=True)
class LeaseResult:
    held: bool
    acquired: bool  # True when the lease was free (first start, holder died, Redis restarted)
    pttl_ms: int  # when held by another: time left on its lease
    version: int  # token version in Redis (0 = none, -1 = not read: a plain renewal)


@dataclass(frozen=True)
class StoredToken:
    """The token hash as read back (`value` and `header` are secrets)."""

    value: str
    version: int
    expires_at: float
    obtained_at: float
    header: str


def _fmt(t: float) -> str:
    return f"{t:.6f}"


class Store:
    """All Redis calls of the refresher, for one run."""

    def __init__(self, client: aioredis.Redis, keys: RunKeys, holder: str) -> None:
        self._r = client
        self.keys = keys
        self.holder = holder
        self._lease = client.register_script(_LEASE)
        self._release = client.register_script(_RELEASE)
        self._publish = client.register_script(_PUBLISH)

    async def lease(self, ttl_ms: int) -> LeaseResult:
        """Renew the lease if ours, take it if free; otherwise report who has how long left."""
        code, pttl, version = await self._lease(
            keys=[self.keys.refresher_lease, self.keys.token, self.keys.token_stats],
            args=[self.holder, ttl_ms])
        return LeaseResult(held=int(code) > 0, acquired=int(code) == 2, pttl_ms=int(pttl),
                           version=int(version))

    async def release(self) -> None:
        await self._release(keys=[self.keys.refresher_lease], args=[self.holder])

    async def publish(self, *, value: str, header: str, expires_at: float, obtained_at: float,
                      published_at: float, known_version: int, mode: str,
                      restore_version: int = 0, write_state: bool = True) -> int:
        """Write the token and publish its version; the version in Redis, -1 if not holder.

        `write_state`: also set the stats' state to ok and holder to us (when they may differ).
        """
        result = await self._publish(
            keys=[self.keys.refresher_lease, self.keys.token, self.keys.token_events,
                  self.keys.token_stats],
            args=[self.holder, known_version, value, _fmt(expires_at), _fmt(obtained_at), header,
                  _fmt(published_at), mode, restore_version, "1" if write_state else "0"],
        )
        return int(result)

    async def read_token(self) -> StoredToken | None:
        reply: Any = await self._r.hgetall(self.keys.token)
        raw = {text(k): text(v) for k, v in reply.items()}
        try:
            return StoredToken(
                value=raw["token"],
                version=int(raw["version"]),
                expires_at=float(raw["expiresAt"]),
                obtained_at=float(raw["obtainedAt"]),
                header=raw["header"],
            )
        except (KeyError, ValueError):
            return None

    async def token_expires_at(self) -> float | None:
        """For readiness: expiry of the token in Redis, None when there is none."""
        raw = await self._r.hget(self.keys.token, "expiresAt")
        return float(raw) if raw is not None else None

    async def read_refresh_token(self) -> str | None:
        raw: Any = await self._r.get(self.keys.refresh_token)
        return text(raw) if raw is not None else None

    async def write_refresh_token(self, value: str) -> None:
        # Not fenced by the lease: once the server rotated, only the new one works, whoever
        # holds the lease.
        await self._r.set(self.keys.refresh_token, value)

    async def record_failure(self, message: str, at: float, state: str) -> None:
        """Count a failed refresh; `message` must already be free of secrets."""
        pipe = self._r.pipeline(transaction=False)
        pipe.hincrby(self.keys.token_stats, "failures", 1)
        pipe.hset(self.keys.token_stats, mapping={
            "lastError": message, "lastErrorAt": _fmt(at), "state": state, "holder": self.holder})
        await pipe.execute()

    async def record_expired(self, at: float) -> None:
        pipe = self._r.pipeline(transaction=False)
        pipe.hincrby(self.keys.token_stats, "expirations", 1)
        pipe.hset(self.keys.token_stats, mapping={
            "state": "expired", "expiredAt": _fmt(at), "holder": self.holder})
        await pipe.execute()

    async def read_refresh_requests(self, last_id: str, block_ms: int
                                    ) -> list[tuple[str, dict[str, str]]]:
        """Entries of the refresh-request stream after `last_id` (blocks up to `block_ms`)."""
        reply: Any = await self._r.xread({self.keys.refresh_requests: last_id}, block=block_ms,
                                         count=1000)
        entries: list[tuple[str, dict[str, str]]] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                entries.append((text(entry_id), {text(k): text(v) for k, v in fields.items()}))
        return entries
