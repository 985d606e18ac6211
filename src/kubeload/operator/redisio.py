"""The operator's side of the Redis protocol (`kubeload.protocol`): observe a run, write its
plan, stop it, read its metrics stream.

The operator never reads the token itself, only its version and times (HMGET of those
fields), so no secret passes through the operator's memory or logs.

Service addresses: in a cluster the operator reaches `<name>-redis.<ns>.svc:6379` through
DNS. Where that is not possible (the e2e tests run the operator and every pod as local
processes), `--service-map FILE` maps `host:port` to another `host:port`; the file is read
again at each connection so a test can add entries while the operator runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..membership import Membership
from ..metrics import MetricsTotals, read_deltas
from ..protocol import Plan, RunKeys
from .model import Heartbeat, RedisState, StopRecord, TokenInfo

__all__ = ["RunRedis", "load_service_map", "map_url"]

_TIMEOUT = 3.0


def load_service_map(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def map_url(url: str, mapping: Mapping[str, str]) -> str:
    """`redis://a.ns.svc:6379/0` with `a.ns.svc:6379` replaced when the map has it."""
    parts = urlsplit(url)
    host_port = f"{parts.hostname}:{parts.port or 6379}"
    target = mapping.get(host_port)
    if target is None:
        return url
    return urlunsplit((parts.scheme, target, parts.path, parts.query, parts.fragment))


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError, AttributeError):
        return default


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class RunRedis:
    """One run's keys in one Redis (the connection pool is kept between reconciles)."""

    def __init__(self, url: str, password: str | None, keys: RunKeys) -> None:
        self.url = url
        self.keys = keys
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, password=password, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT,
            health_check_interval=10,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def observe(self) -> RedisState:
        try:
            return await asyncio.wait_for(self._observe(), timeout=2 * _TIMEOUT)
        except (RedisError, OSError, TimeoutError) as exc:
            return RedisState(reachable=False, error=type(exc).__name__ + ": " + str(exc)[:200])

    async def _observe(self) -> RedisState:
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.ping()
        pipe.hmget(keys.token, ["version", "expiresAt", "obtainedAt"])
        pipe.hgetall(keys.token_stats)
        pipe.get(keys.plan)
        pipe.get(keys.stop)
        pipe.get(keys.membership)
        _, token_fields, stats, plan_raw, stop_raw, membership_raw = await pipe.execute()
        token = None
        if token_fields and token_fields[0] is not None:
            token = TokenInfo(int(_float(token_fields[0])), _float(token_fields[1]), _float(token_fields[2]))
        plan = Plan.from_json(plan_raw) if plan_raw else None
        return RedisState(
            reachable=True,
            token=token,
            token_stats={_text(k): _text(v)[:500] for k, v in (stats or {}).items()},
            plan=plan,
            stop=_parse_stop(stop_raw) if stop_raw is not None else None,
            heartbeats=await self._heartbeats(plan),
            membership=Membership.from_json(membership_raw),
        )

    async def _heartbeats(self, plan: Plan | None) -> tuple[Heartbeat, ...]:
        """The workers' heartbeats: one MGET of the plan's worker keys (no plan: no workers yet)."""
        if plan is None or plan.workers <= 0:
            return ()
        values = await self.client.mget([self.keys.worker(w) for w in range(plan.workers)])
        beats = []
        for index, raw in enumerate(values):
            if raw is None:
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            beats.append(Heartbeat(index, int(data.get("vus", 0)), float(data.get("at", 0.0))))
        return tuple(beats)

    async def write_plan(self, plan: Plan) -> bool:
        """SET NX: a plan already there (another reconcile wrote it) is the run's plan."""
        return bool(await self.client.set(self.keys.plan, plan.to_json(), nx=True))

    async def stop(self, record: StopRecord) -> None:
        """Stop every worker: the stop key (polled) and a message on the control channel."""
        text = json.dumps({"phase": record.phase, "reason": record.reason, "message": record.message,
                           "at": record.at})
        await self.client.set(self.keys.stop, text, nx=True)
        await self.client.publish(self.keys.control, "stop")

    async def read_metrics(self, totals: MetricsTotals, after: str) -> tuple[str, int]:
        """Merge the deltas after entry id `after`; the id to continue from, and how many."""
        deltas, last = await read_deltas(self.client, self.keys.metrics, after=after)
        return last, totals.add_all(deltas)


def _parse_stop(raw: Any) -> StopRecord:
    """The stop key as the operator writes it; a bare reason (written by someone else) is an abort."""
    text = _text(raw)
    try:
        data = json.loads(text)
        return StopRecord(str(data["phase"]), str(data["reason"]), str(data.get("message", "")),
                          float(data.get("at", 0.0)))
    except (ValueError, KeyError, TypeError):
        return StopRecord("Aborted", "Aborted", f"stopped: {text[:200]}", time.time())
