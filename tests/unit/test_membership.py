"""The membership's pure parts: lost members' shares move to the live ones, nothing is doubled."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeload.api.models import Load, LoadTestSpec
from kubeload.membership import Epoch, Membership, MembershipView, closed_share, place
from kubeload.schedule import process_vus, slot
from kubeload.worker.arrival import OpenModel
from kubeload.worker.clock import PlanClock


def closed_spec(vus: int, per_worker: int = 50) -> LoadTestSpec:
    return LoadTestSpec.model_validate({
        "target": {"baseURL": "http://127.0.0.1:1"}, "requests": [{"name": "home", "path": "/"}],
        "load": {"executor": "ramping-vus", "startVUs": 0,
                 "stages": [{"duration": "10s", "target": vus}, {"duration": "10s", "target": vus}]},
        "workers": {"vusPerWorker": per_worker, "maxWorkers": 10},
    })


def test_the_document_reads_what_the_lua_script_writes() -> None:
    raw = json.dumps({"epochs": [{"at": 5.5, "lost": "1:0,1:1"}, {"at": 2.0, "lost": "1:0"}]})
    membership = Membership.from_json(raw)
    assert [e.at for e in membership.epochs] == [2.0, 5.5]
    assert membership.lost_at(1.9) == frozenset()
    assert membership.lost_at(2.0) == {(1, 0)}
    assert membership.lost_at(9) == membership.latest == {(1, 0), (1, 1)}
    assert membership.next_change(2.0) == 5.5 and membership.next_change(5.5) is None
    assert Membership.from_json(None) == Membership.from_json(b'{"epochs":{}}') == Membership()


def test_place_counts_only_live_slots() -> None:
    assert place(1, 2, 1, 2, frozenset()) == slot(1, 2, 1, 2)
    lost = frozenset({(1, 0)})  # slot 1 of 0..3
    assert place(1, 2, 0, 2, lost) is None
    assert [place(w, 2, p, 2, lost) for w, p in ((0, 0), (0, 1), (1, 1))] == [
        place(0, 2, 0, 2, lost), place(0, 2, 1, 2, lost), place(1, 2, 1, 2, lost)]
    assert sorted(s.index for w, p in ((0, 0), (0, 1), (1, 1)) if (s := place(w, 2, p, 2, lost))) == [0, 1, 2]
    assert place(2, 2, 0, 2, frozenset()) is None  # beyond the plan


@given(vus=st.integers(0, 400), workers=st.integers(1, 5), processes=st.integers(1, 3),
       elapsed=st.floats(0, 25), lost_bits=st.integers(0, 2**15 - 1), scaling=st.sampled_from(["fixed", "stages"]))
def test_closed_shares_keep_the_total_whatever_is_lost(vus: int, workers: int, processes: int, elapsed: float,
                                                         lost_bits: int, scaling: str) -> None:
    spec = closed_spec(vus)
    members = [(w, p) for w in range(workers) for p in range(processes)]
    lost = frozenset(m for i, m in enumerate(members) if lost_bits >> i & 1)
    if len(lost) == len(members):
        lost = frozenset(list(lost)[1:])  # somebody must live
    shares = {m: closed_share(spec, workers, scaling, worker=m[0], processes=processes, process=m[1],
                              elapsed=elapsed, lost=lost) for m in members}
    planned = {m: process_vus(spec, workers, scaling, worker=m[0], processes=processes, process=m[1],
                              elapsed=elapsed) for m in members}
    assert sum(shares.values()) == sum(planned.values())
    assert all(shares[m] == 0 for m in lost)
    # Nobody live gets less than planned, and the orphaned VUs are spread evenly.
    extra = [shares[m] - planned[m] for m in members if m not in lost]
    assert min(extra) >= 0 and max(extra) - min(extra) <= 1


def arrival(rate: int, duration: str) -> Load:
    return Load.model_validate({"executor": "constant-arrival-rate", "rate": rate, "duration": duration})


def test_open_model_hands_a_lost_slot_over_at_the_epoch_and_back_without_doubling() -> None:
    """Two slots; slot 1 dies at 0.4 s, the epoch moves its numbers to slot 0 from 0.5 s; a
    replacement joins at 0.6 s and gets them back from 0.8 s. Every iteration is started
    once, except slot 1's between its death and the epoch."""
    async def scenario() -> None:
        load = arrival(200, "1.2s")
        clock = PlanClock.starting_at(time.time() + 0.05)
        starts: list[tuple[str, float]] = []

        def recorder(name: str):  # type: ignore[no-untyped-def]
            async def iteration(due: float) -> None:
                starts.append((name, round((due - clock.anchor) * 200)))  # the iteration's number
            return iteration

        def model(name: str, view: MembershipView) -> OpenModel:
            return OpenModel(recorder(name), load=load, clock=clock, view=view, pre_allocated=10, max_vus=20,
                             on_dropped=lambda: None)

        lost_from_half = Membership((Epoch(0.5, frozenset({(1, 0)})),))
        back = Membership((*lost_from_half.epochs, Epoch(0.8, frozenset())))
        survivor_view, dying_view = MembershipView(0, 2, 0, 1), MembershipView(1, 2, 0, 1)
        survivor, dying = model("survivor", survivor_view), model("dying", dying_view)
        dying_stop = asyncio.Event()
        runs = [asyncio.create_task(survivor.run(asyncio.Event())), asyncio.create_task(dying.run(dying_stop))]

        await asyncio.sleep(0.45)  # plan time 0.4 s
        dying_stop.set()
        survivor_view.update(lost_from_half)
        await asyncio.sleep(0.2)  # 0.6 s: the replacement starts, proposes its return for 0.8 s
        replacement_view = MembershipView(1, 2, 0, 1)
        replacement_view.update(back)
        survivor_view.update(back)
        replacement = model("replacement", replacement_view)
        runs.append(asyncio.create_task(replacement.run(asyncio.Event())))
        await asyncio.gather(*runs)
        for each in (survivor, dying, replacement):
            await each.drain(1.0)

        numbers = [n for _, n in starts]
        assert len(numbers) == len(set(numbers)), "an iteration was started twice"
        missing = set(range(240)) - set(numbers)
        # Slot 1's odd numbers between its death (0.4 s = 80) and the epoch (0.5 s = 100).
        assert missing <= set(range(79, 101, 2)) and len(missing) <= 11, sorted(missing)
        by = {name: {n for who, n in starts if who == name} for name in ("survivor", "dying", "replacement")}
        assert all(n % 2 == 0 for n in by["survivor"] if n < 100 or n >= 160)
        assert set(range(100, 160)) <= by["survivor"]
        assert by["replacement"] and min(by["replacement"]) == 161 and all(n % 2 for n in by["replacement"])

    asyncio.run(scenario())


@pytest.mark.parametrize("workers,processes", [(1, 1), (3, 2)])
def test_the_view_versions_changes(workers: int, processes: int) -> None:
    view = MembershipView(0, workers, 0, processes)
    assert view.place_at(0) == slot(0, workers, 0, processes)
    assert not view.update(Membership())
    assert view.update(Membership((Epoch(1.0, frozenset({(0, 0)})),))) and view.version == 1
    assert view.place_at(1.0) is None and view.next_change(0.0) == 1.0
    view.workers = workers + 1
    assert view.version == 2
