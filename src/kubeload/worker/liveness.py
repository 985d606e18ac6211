"""The supervisor's part of the run's membership (`kubeload.membership`): who is lost, who is back.

While the plan runs, every supervisor proposes
- its own processes that died, or that leave before the plan's end (a SIGTERM'd pod), as lost,
  and its live processes that the membership holds lost (a replacement pod) as back: every beat;
- other workers whose heartbeat is older than `LOST_AFTER_S` (a killed pod, a hung node), and
  their processes that leave early, as lost: every `PEER_CHECK_S`, one round trip for all.

Every supervisor proposes, so a lost worker is noticed while any other one lives; the Lua
script makes the same proposal from several supervisors harmless. Nothing is proposed once the
run is stopping: then every process leaves on purpose.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from ..membership import CHANGE_DELAY_S, LOST_AFTER_S, Member, Membership, propose_args
from ..protocol import Plan, RunKeys
from .process import GAUGE_FIELDS, State

__all__ = ["LivenessKeeper"]

log = logging.getLogger(__name__)

PEER_CHECK_S = 0.5
_LIVE_STATES = frozenset({State.STARTING, State.WAITING, State.RUNNING})
_LIVE_NAMES = frozenset(State.NAMES[state] for state in _LIVE_STATES)


class LivenessKeeper:
    def __init__(self, client: Any, keys: RunKeys, plan: Plan, *, worker: int, processes: int,
                 plan_seconds: float) -> None:
        self._client = client
        self._keys = keys
        self._plan = plan
        self._worker = worker
        self._processes = processes
        self._end = plan_seconds  # plan-elapsed seconds of the plan's end
        self._lost: frozenset[Member] = frozenset()  # the membership's latest, as last read
        self._stopping = False
        self._checked_at = 0.0
        self._missing_since: dict[int, float] = {}  # worker -> when its heartbeat was first missing

    def check(self, alive: Sequence[bool], gauges: Any, now: float) -> None:
        """Called every beat: `alive[p]` is whether process p runs, `gauges` its shared state."""
        elapsed = now - self._plan.start_at
        # A change must apply before the plan's end to matter; past it, processes leave anyway.
        if self._stopping or not 0 <= elapsed < self._end - CHANGE_DELAY_S:
            return
        lost: set[Member] = set()
        back: set[Member] = set()
        if now - self._checked_at >= PEER_CHECK_S:
            self._checked_at = now
            try:
                lost |= self._lost_peers(now)
            except Exception as error:  # Redis away: nobody can be told anything now
                log.debug("membership check skipped: %s", type(error).__name__)
                return
            if self._stopping:
                return
        for process, running in enumerate(alive):
            member = (self._worker, process)
            live = running and gauges[process * GAUGE_FIELDS + 2] in _LIVE_STATES
            if not live and member not in self._lost:
                lost.add(member)
            elif live and member in self._lost:
                back.add(member)
        if lost or back:
            self._propose(elapsed, lost, back)

    def _lost_peers(self, now: float) -> set[Member]:
        workers = self._plan.workers
        pipe = self._client.pipeline(transaction=False)
        pipe.exists(self._keys.stop)
        pipe.get(self._keys.membership)
        pipe.mget([self._keys.worker(w) for w in range(workers)])
        stopping, membership, beats = pipe.execute()
        self._stopping = bool(stopping)
        self._lost = Membership.from_json(membership).latest
        lost: set[Member] = set()
        for worker, raw in enumerate(beats):
            if worker == self._worker:
                continue
            if not raw:
                # Not started yet, or a Redis that restarted empty: the same grace as a silent
                # worker, counted from when this supervisor first saw the key missing.
                since = self._missing_since.setdefault(worker, now)
                if now - since > LOST_AFTER_S:
                    lost |= {(worker, p) for p in range(self._processes)}
                continue
            self._missing_since.pop(worker, None)
            beat = json.loads(raw)
            if now - float(beat.get("at", 0)) > LOST_AFTER_S:
                lost |= {(worker, p) for p in range(int(beat.get("processes", self._processes)))}
            else:
                lost |= {(worker, p) for p, state in enumerate(beat.get("states", [])) if state not in _LIVE_NAMES}
        return lost - self._lost

    def _propose(self, elapsed: float, lost: set[Member], back: set[Member]) -> None:
        at = elapsed + CHANGE_DELAY_S
        try:
            changed = self._client.eval(*propose_args(self._keys.membership, self._keys.control, at,
                                                      lost=lost, back=back))
        except Exception as error:
            log.debug("membership proposal not delivered: %s", type(error).__name__)
            return
        self._lost = (self._lost | lost) - back
        if changed:
            if lost:
                log.warning("lost %s: the live processes take their share from %.2f s into the plan",
                            _names(lost), at)
            if back:
                log.info("%s back in the plan from %.2f s", _names(back), at)


def _names(members: set[Member]) -> str:
    return ", ".join(f"worker {w} process {p}" for w, p in sorted(members))
