"""The Redis protocol between the operator (or local runner), the refresher and the workers.

Every key of one run lives under `kubeload:{<namespace>/<name>/<runId>}:` (the braces make it
one Redis Cluster hash slot), so runs never collide and one Redis serves many tests.

| key / channel                         | type    | writer              | readers            |
| ------------------------------------- | ------- | ------------------- | ------------------ |
| `…:token`                             | hash    | refresher           | workers, operator  |
|    fields: token, version, expiresAt, obtainedAt, publishedAt (epoch s), header (pre-built) |
| `…:token:events`                      | channel | refresher           | workers            |
|    message: JSON {"v": version, "h": header, "e": expiresAt, "o": obtainedAt,              |
|    "p": publishedAt}, so a worker applies it without a read; a bare decimal also works    |
| `…:token:refresh-token`               | string  | refresher           | refresher          |
|    the current (rotated) refresh token, so a standby can carry on with grant refresh_token |
| `…:token:refresh-requests`            | stream  | workers (on 401)    | refresher          |
|    entry: {version: <the version that got 401>, worker: <id>}; one forced refresh/version   |
| `…:token:stats`                       | hash    | refresher           | operator, runner   |
|    fields: refreshes, failures, forced, expirations, lastError (secret-free), lastErrorAt, |
|    expiredAt, holder, failovers (lease taken over from another holder), state (starting / |
|    ok / retrying / expired)                                                               |
| `…:lease:refresher`                   | string  | refresher (SET NX PX)| refresher         |
| `…:plan`                              | string  | operator / runner   | workers            |
|    JSON of `Plan`                                                                           |
| `…:stop`                              | string  | operator / runner   | workers            |
|    JSON {phase, reason, message, at}; its presence stops the run (polled + pub/sub)       |
| `…:control` (channel)                 | channel | operator / runner   | workers            |
|    "stop", "plan" (re-read the plan) or "membership" (re-read the membership)               |
| `…:membership`                        | string  | workers, runner     | workers            |
|    JSON {"epochs": [{"at": plan-elapsed s, "lost": "w:p,w:p"}, …]}: from `at` on, those    |
|    (worker, process) members are lost and the live ones share their load; written only by  |
|    `kubeload.membership.PROPOSE_LUA`                                                        |
| `…:metrics`                           | stream  | workers             | operator / runner  |
|    entry: {worker, process, seq, payload (JSON of an interval delta)}                      |
| `…:workers:<index>`                   | string  | workers             | operator / runner  |
|    heartbeat JSON {pid, index, worker, processes, vus, vus_max, vus_by_process, states,   |
|    at}, with a TTL of a few heartbeat periods                                              |
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["METRICS_STREAM_MAXLEN", "Plan", "RunKeys", "text"]

METRICS_STREAM_MAXLEN = 100_000


def text(value: Any) -> str:
    """A Redis reply as text: clients without decode_responses hand back bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class RunKeys:
    """Key names of one run."""

    namespace: str
    name: str
    run_id: str

    @property
    def prefix(self) -> str:
        return f"kubeload:{{{self.namespace}/{self.name}/{self.run_id}}}:"

    @property
    def token(self) -> str:
        return self.prefix + "token"

    @property
    def token_events(self) -> str:
        return self.prefix + "token:events"

    @property
    def refresh_token(self) -> str:
        """The current (rotated) refresh token, so a standby taking over can use it; not in the
        token hash: workers read that hash and have no business with it."""
        return self.prefix + "token:refresh-token"

    @property
    def refresh_requests(self) -> str:
        return self.prefix + "token:refresh-requests"

    @property
    def token_stats(self) -> str:
        return self.prefix + "token:stats"

    @property
    def refresher_lease(self) -> str:
        return self.prefix + "lease:refresher"

    @property
    def plan(self) -> str:
        return self.prefix + "plan"

    @property
    def stop(self) -> str:
        return self.prefix + "stop"

    @property
    def control(self) -> str:
        return self.prefix + "control"

    @property
    def membership(self) -> str:
        return self.prefix + "membership"

    @property
    def metrics(self) -> str:
        return self.prefix + "metrics"

    def worker(self, index: int) -> str:
        return f"{self.prefix}workers:{index}"


@dataclass(frozen=True)
class Plan:
    """What every worker needs to compute its share of the load as a function of time.

    `spec` is the LoadTest spec on the wire (camelCase JSON). `workers` is the number of worker
    pods (local mode: worker processes groups) the load is split across; `scaling` says whether
    all of them run from the start (`fixed`) or their number follows the stages (`stages`).
    """

    run_id: str
    start_at: float  # epoch seconds; load starts here, a late worker joins where the plan is
    workers: int
    spec: dict[str, Any]
    scaling: str = "fixed"
    metrics_interval: float = 2.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        data = json.loads(text)
        return cls(**data)
