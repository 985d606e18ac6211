"""Pure helpers for the status: conditions with stable transition times, Events from changes.

A condition's `lastTransitionTime` only moves when its status changes; the previous status is
read for that alone (and to emit one Event per transition), never to decide what to do.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.status import ConditionType
from .model import Event

__all__ = [
    "CONDITION_ORDER",
    "SPEC_CHANGE_REFUSED",
    "Cond",
    "events_for",
    "iso",
    "merge_conditions",
    "parse_iso",
]

# Not a ConditionType of the API (it reports on the spec, not the run), documented here.
SPEC_CHANGE_REFUSED = "SpecChangeRefused"
CONDITION_ORDER = (
    ConditionType.REDIS_READY.value,
    ConditionType.TOKEN_READY.value,
    ConditionType.WORKERS_READY.value,
    ConditionType.THRESHOLDS_PASSED.value,
    ConditionType.SUCCEEDED.value,
    SPEC_CHANGE_REFUSED,
)
# Reasons that are bad news: their Events are Warnings.
_WARNING_REASONS = frozenset({
    "RedisNotReady", "TokenFailed", "TokenExpired", "WorkerFailed", "WorkersFailed",
    "Unschedulable", "ImagePullFailed", "ProvisioningTimeout", "ThresholdFailed",
    "ThresholdAborted", "Aborted", "SpecChangeRefused", "InvalidSpec",
})


@dataclass(frozen=True)
class Cond:
    type: str
    status: str  # True, False, Unknown
    reason: str
    message: str = ""


def iso(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC).timestamp()


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Cond], now: float, generation: int
) -> list[dict[str, Any]]:
    """The new conditions list, in a fixed order; transition times kept while status holds."""
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in sorted(current, key=lambda c: CONDITION_ORDER.index(c.type)):
        old = before.get(cond.type)
        moved = old is None or old.get("status") != cond.status
        out.append({
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message[:4000],
            "lastTransitionTime": iso(now) if moved or old is None else old["lastTransitionTime"],
            "observedGeneration": generation,
        })
    return out


def events_for(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[Event]:
    """One Event per condition whose status or reason changed, and one per phase change."""
    events: list[Event] = []
    before = {c.get("type"): c for c in previous.get("conditions", [])}
    for cond in current.get("conditions", []):
        old = before.get(cond["type"])
        if old is not None and (old.get("status"), old.get("reason")) == (cond["status"], cond["reason"]):
            continue
        if old is None and cond["status"] == "Unknown":
            continue  # nothing has happened yet
        kind = "Warning" if cond["reason"] in _WARNING_REASONS and cond["status"] != "Unknown" else "Normal"
        text = f"{cond['type']}={cond['status']}"
        if cond.get("message"):
            text += f": {cond['message']}"
        events.append(Event(kind, cond["reason"], text[:1000]))
    if previous.get("phase") != current.get("phase") and current.get("phase"):
        phase = str(current["phase"])
        kind = "Warning" if phase in ("Failed", "Aborted") else "Normal"
        message = f"phase {previous.get('phase') or 'None'} -> {phase}"
        if current.get("message"):
            message += f": {current['message']}"
        events.append(Event(kind, phase, message[:1000]))
    return events
