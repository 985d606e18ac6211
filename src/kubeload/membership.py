"""Which processes carry the load, over time: the run's membership.

Shares are pure functions of time (`kubeload.schedule`) over the plan's slots, one per process
of each worker. When a process or a whole worker is lost (killed, crashed, its pod deleted),
the survivors take its share: the `membership` key holds *epochs*, each "from plan-elapsed
second `at` on, these (worker, process) members are lost". Every process computes its share at
time t from the epoch in effect at t, so all of them agree without talking to each other:

- closed model: a lost member's planned VUs are split over the live members (`closed_share`);
- open model: the iteration numbers starting in an epoch are dealt round-robin over that
  epoch's live slots (`place`), so every planned iteration is still started exactly once.

Changes go through one Lua script (`PROPOSE_LUA`: read, apply, append, publish "membership" on
the control channel, atomically) and always take effect `CHANGE_DELAY_S` ahead of the proposer's
clock, so every process has heard of an epoch before it applies. A lost member that comes back
(a replacement pod, a worker wrongly thought dead) proposes its own return the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .schedule import Slot, process_vus, slot, split

if TYPE_CHECKING:
    from .api.models import LoadTestSpec

__all__ = [
    "CHANGE_DELAY_S",
    "LOST_AFTER_S",
    "MAX_EPOCHS",
    "PROPOSE_LUA",
    "Epoch",
    "Member",
    "Membership",
    "MembershipView",
    "closed_share",
    "encode_members",
    "place",
    "propose_args",
]

# How far ahead of the proposer's clock a change applies: the supervisors' check period plus
# the pub/sub hop, so every process knows an epoch before it starts.
CHANGE_DELAY_S = 0.5
# A worker whose heartbeat (written every 0.25 s) is older than this is lost.
LOST_AFTER_S = 1.0
MAX_EPOCHS = 64  # older epochs are dropped: nobody schedules that far in the past

Member = tuple[int, int]  # (worker index, process index)

# KEYS: membership, control channel. ARGV: at (plan-elapsed s), lost members to add and members
# back (each "w:p,w:p"), epochs to keep. Members are kept sorted so that equal sets compare equal.
PROPOSE_LUA = """
local raw = redis.call('GET', KEYS[1])
local epochs = {}
if raw then epochs = cjson.decode(raw).epochs or {} end
local n = #epochs
local previous, last_at = '', nil
if n > 0 then previous, last_at = epochs[n].lost, tonumber(epochs[n].at) end
local lost = {}
for m in string.gmatch(previous, '[^,]+') do lost[m] = true end
for m in string.gmatch(ARGV[2], '[^,]+') do lost[m] = true end
for m in string.gmatch(ARGV[3], '[^,]+') do lost[m] = nil end
local members = {}
for m in pairs(lost) do members[#members + 1] = m end
table.sort(members)
local joined = table.concat(members, ',')
if joined == previous then return 0 end
local at = tonumber(ARGV[1])
if last_at and at <= last_at then at = last_at + 0.001 end
epochs[n + 1] = {at = at, lost = joined}
local keep = tonumber(ARGV[4])
local kept = {}
for i = math.max(1, #epochs - keep + 1), #epochs do kept[#kept + 1] = epochs[i] end
redis.call('SET', KEYS[1], cjson.encode({epochs = kept}))
redis.call('PUBLISH', KEYS[2], 'membership')
return 1
"""


def encode_members(members: set[Member] | frozenset[Member]) -> str:
    return ",".join(f"{w}:{p}" for w, p in sorted(members))


def _decode_members(text: str) -> frozenset[Member]:
    members = set()
    for item in text.split(","):
        if item:
            worker, _, process = item.partition(":")
            members.add((int(worker), int(process)))
    return frozenset(members)


@dataclass(frozen=True, slots=True)
class Epoch:
    at: float  # plan-elapsed seconds from which `lost` holds
    lost: frozenset[Member]


@dataclass(frozen=True, slots=True)
class Membership:
    """The epochs, in time order; none means every member of the plan is live."""

    epochs: tuple[Epoch, ...] = ()

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> Membership:
        if not raw:
            return cls()
        epochs = json.loads(raw).get("epochs") or []  # Lua's cjson writes an empty list as {}
        return cls(tuple(sorted((Epoch(float(e["at"]), _decode_members(e["lost"])) for e in epochs),
                                key=lambda e: e.at)))

    @property
    def ever_lost(self) -> frozenset[Member]:
        """Members lost at some time of the run (some may be back)."""
        return frozenset().union(*(e.lost for e in self.epochs))

    @property
    def latest(self) -> frozenset[Member]:
        """Lost members once every known change has applied."""
        return self.epochs[-1].lost if self.epochs else frozenset()

    def lost_at(self, elapsed: float) -> frozenset[Member]:
        lost: frozenset[Member] = frozenset()
        for epoch in self.epochs:
            if epoch.at > elapsed:
                break
            lost = epoch.lost
        return lost

    def next_change(self, elapsed: float) -> float | None:
        """When the next epoch after `elapsed` begins, if one is known."""
        return next((e.at for e in self.epochs if e.at > elapsed), None)

    def last_change(self, elapsed: float) -> float | None:
        """When the epoch in effect at `elapsed` began; None before the first."""
        return max((e.at for e in self.epochs if e.at <= elapsed), default=None)


def _live_slots(workers: int, processes: int, lost: frozenset[Member]) -> list[int]:
    """Slot indices of the live members, in slot order (slot = process * workers + worker)."""
    return [s for s in range(workers * processes) if (s % workers, s // workers) not in lost]


def place(worker: int, workers: int, process: int, processes: int, lost: frozenset[Member]) -> Slot | None:
    """The slot (position among live slots, live count) of a member; None when it is lost or
    beyond the plan. With nothing lost it is `schedule.slot`."""
    if worker >= workers or process >= processes or (worker, process) in lost:
        return None
    mine = slot(worker, workers, process, processes)
    if not lost:
        return mine
    live = _live_slots(workers, processes, lost)
    return Slot(live.index(mine.index), len(live))


def closed_share(spec: LoadTestSpec, workers: int, scaling: str, *, worker: int, processes: int, process: int,
                 elapsed: float, lost: frozenset[Member]) -> int:
    """VUs of a member at `elapsed` (closed model): its planned share plus its part of the lost
    members' planned shares, split evenly over the live members."""
    def planned(w: int, p: int) -> int:
        return process_vus(spec, workers, scaling, worker=w, processes=processes, process=p, elapsed=elapsed)

    if not lost:
        return planned(worker, process)
    mine = place(worker, workers, process, processes, lost)
    if mine is None:
        return 0
    orphaned = sum(planned(w, p) for w, p in lost if w < workers and p < processes)
    return planned(worker, process) + split(orphaned, mine.count, mine.index)


class MembershipView:
    """A process's copy of the membership; `version` changes whenever its answers may."""

    def __init__(self, worker: int, workers: int, process: int, processes: int) -> None:
        self.worker = worker
        self.process = process
        self.processes = processes
        self._workers = workers
        self.membership = Membership()
        self.version = 0

    @property
    def workers(self) -> int:
        return self._workers

    @workers.setter
    def workers(self, count: int) -> None:
        if count != self._workers:
            self._workers = count
            self.version += 1

    def update(self, membership: Membership) -> bool:
        """Take a fresh copy; True when it changed."""
        if membership == self.membership:
            return False
        self.membership = membership
        self.version += 1
        return True

    def lost_at(self, elapsed: float) -> frozenset[Member]:
        return self.membership.lost_at(elapsed)

    def place_at(self, elapsed: float) -> Slot | None:
        return place(self.worker, self._workers, self.process, self.processes, self.lost_at(elapsed))

    def next_change(self, elapsed: float) -> float | None:
        return self.membership.next_change(elapsed)

    def last_change(self, elapsed: float) -> float | None:
        return self.membership.last_change(elapsed)


def propose_args(membership_key: str, control_channel: str, at: float, *,
                 lost: set[Member] | frozenset[Member] = frozenset(),
                 back: set[Member] | frozenset[Member] = frozenset()) -> tuple[str | int, ...]:
    """The arguments of `client.eval(*propose_args(...))`: the change applies from `at`
    (plan-elapsed seconds); the script's result is 1 when the membership changed."""
    return (PROPOSE_LUA, 2, membership_key, control_channel, repr(at), encode_members(lost), encode_members(back),
            MAX_EPOCHS)
