"""Self-regenerating sessions: ``try_renew`` (SEMANTICS "Self-regenerating
session", Part 2 points 8 and 9), driven by the manager's ``clock=``. Idle
times are Redis' own: a session's idle seconds are its ``ttl - remaining``, so
tests lower a key's TTL with a plain client to make it look idle. Both doors."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from dce_session import RenewPolicy
from dce_session.core import (
    RenewDecision,
    Stored,
    generate_sid,
    parse_sid,
    renew_decision,
    session_key,
)
from dce_session.errors import ConfigError, SessionDestroyed

BASE = 1_700_000_000
INTERVAL, GRACE, INACTIVE = 600, 120, 60
POLICY = RenewPolicy(interval_seconds=INTERVAL, original_judgment_seconds=GRACE,
                     cloned_inactive_judgment_seconds=INACTIVE)
TTL = 3600  # the manager's default ttl_minutes=60
USER = {"id": 42, "name": "ada"}


@pytest.fixture
def now() -> list[int]:
    return [BASE]


@pytest.fixture
def manager(make_manager: Any, now: list[int]) -> Any:
    return make_manager(renew=POLICY, clock=lambda: now[0])


def key(sid: str) -> str:
    return session_key("dcesid", sid)


def set_idle(store: Any, sid: str, idle: int) -> None:
    """Make the stored session look idle for ``idle`` seconds."""
    assert store.expire(key(sid), TTL - idle)


async def stored(manager: Any, call: Any, **data: Any) -> str:
    session = manager.new()
    await call(session.update(data or {"a": 1}))
    return str(session.id)


async def rotate(manager: Any, call: Any, sid: str) -> str:
    session = manager.open(sid)
    assert await call(session.try_renew()) is True
    assert session.id != sid
    return str(session.id)


# -- the easy cases ------------------------------------------------------------


async def test_try_renew_needs_a_policy(make_manager: Any, call: Any, round_trips: Any) -> None:
    manager = make_manager()
    sid = await stored(manager, call)
    session = manager.open(sid)
    round_trips.reset()
    with pytest.raises(ConfigError):
        await call(session.try_renew())
    assert round_trips.count == 0


async def test_newborn_reports_true(manager: Any, call: Any, round_trips: Any,
                                    store: Any) -> None:
    session = manager.new()
    round_trips.reset()
    assert await call(session.try_renew()) is True
    assert round_trips.count == 0
    for presented in (None, "garbage", generate_sid(60, BASE)):
        opened = manager.open(presented)
        assert await call(opened.try_renew()) is True
        assert opened.id != presented
    assert store.keys("*") == []


async def test_young_sid_is_kept_in_the_load_round_trip(
        manager: Any, call: Any, now: list[int], round_trips: Any, store: Any) -> None:
    sid = await stored(manager, call)
    now[0] += INTERVAL - 1
    set_idle(store, sid, 100)
    session = manager.open(sid)
    round_trips.reset()
    assert await call(session.try_renew()) is False
    assert round_trips.count == 1
    assert session.id == sid
    assert store.ttl(key(sid)) > TTL - 100  # touched
    assert store.hgetall(key(sid)) == {"a": "1"}
    assert store.keys("*") == [key(sid)]


async def test_try_renew_after_a_get_costs_nothing(
        manager: Any, call: Any, now: list[int], round_trips: Any) -> None:
    sid = await stored(manager, call)
    now[0] += 10
    session = manager.open(sid)
    assert await call(session.get("a")) == 1
    round_trips.reset()
    assert await call(session.try_renew()) is False
    assert round_trips.count == 0
    assert session.id == sid


# -- a due rotation ----------------------------------------------------------------


async def test_due_sid_rotates(manager: Any, call: Any, now: list[int], round_trips: Any,
                               store: Any) -> None:
    sid = await stored(manager, call, a=1, b=[1, 2])
    now[0] += INTERVAL
    session = manager.open(sid)
    round_trips.reset()
    assert await call(session.try_renew()) is True
    assert round_trips.count == 1  # load, judge and rotate in one script
    new = session.id
    assert new != sid
    assert parse_sid(new) == (60, now[0])
    assert store.hgetall(key(sid)) == {"$newid": new}  # the old key keeps only the pointer
    assert store.hgetall(key(new)) == {"a": "1", "b": "[1,2]"}
    assert 0 < store.ttl(key(new)) <= TTL
    assert 0 < store.ttl(key(sid)) <= TTL
    assert await call(session.get("b")) == [1, 2]
    await call(session.set("c", 3))
    assert store.hget(key(new), "c") == "3"
    assert not store.hexists(key(sid), "c")


async def test_rotation_of_a_logged_in_session_indexes_the_new_sid(
        manager: Any, call: Any, now: list[int]) -> None:
    session = manager.new()
    sid = await call(session.login(USER))
    now[0] += INTERVAL
    new = await rotate(manager, call, sid)
    assert new in await call(manager.sessions_of(42))
    opened = manager.open(new)
    assert await call(opened.uid()) == 42


# -- the grace period --------------------------------------------------------------


async def test_old_sid_within_grace_is_served_by_the_new_session(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    sid = await stored(manager, call, a=1)
    now[0] += INTERVAL
    new = await rotate(manager, call, sid)
    await call(manager.open(new).set("fresh", "yes"))
    now[0] += GRACE  # the last second of grace
    late = manager.open(sid)
    assert await call(late.try_renew()) is True
    assert late.id == new
    assert await call(late.get("fresh")) == "yes"
    await call(late.set("b", 2))
    assert store.hget(key(new), "b") == "2"
    assert not store.hexists(key(sid), "b")
    assert len(store.keys("dcesid:*")) == 2


async def test_grace_is_measured_from_the_rotation(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    sid = await stored(manager, call, a=1)
    now[0] += 10 * INTERVAL  # a late rotation: old TTG + interval is long past
    new = await rotate(manager, call, sid)
    assert parse_sid(new)[1] == now[0]
    now[0] += GRACE
    late = manager.open(sid)
    assert await call(late.try_renew()) is True
    assert late.id == new
    assert store.exists(key(sid))
    assert store.exists(key(new))


# -- after the grace period -----------------------------------------------------------


async def test_after_grace_an_adopted_successor_kills_the_old_sid(
        manager: Any, call: Any, now: list[int], store: Any, round_trips: Any) -> None:
    sid = await stored(manager, call, a=1)
    now[0] += INTERVAL
    new = await rotate(manager, call, sid)
    now[0] += GRACE + 1
    set_idle(store, new, 10)  # the client moved on ...
    set_idle(store, sid, 100)  # ... and left the old sid behind
    late = manager.open(sid)
    round_trips.reset()
    with pytest.raises(SessionDestroyed):
        await call(late.try_renew())
    assert round_trips.count == 2  # load and judge, then destroy
    assert late.destroyed
    assert store.hgetall(key(sid)) == {"$newid": ""}  # judged: refused for the grace period
    assert 0 < store.ttl(key(sid)) <= GRACE
    assert store.hgetall(key(new)) == {"a": "1"}


@pytest.mark.parametrize(("new_idle", "old_idle"), [
    (INACTIVE + 40, 0),  # the successor was never used
    (30, 20),  # used, but the old sid was used more recently
])
async def test_after_grace_an_unused_successor_is_reissued(
        manager: Any, call: Any, now: list[int], store: Any, new_idle: int,
        old_idle: int) -> None:
    sid = await stored(manager, call, a=1)
    now[0] += INTERVAL
    new = await rotate(manager, call, sid)
    now[0] += GRACE + 1
    set_idle(store, new, new_idle)
    set_idle(store, sid, old_idle)
    late = manager.open(sid)
    assert await call(late.try_renew()) is True
    third = late.id
    assert third not in (sid, new)
    assert parse_sid(third)[1] == now[0]
    assert not store.exists(key(new))
    assert store.hgetall(key(third)) == {"a": "1"}
    assert store.hget(key(sid), "$newid") == third
    assert 0 < store.ttl(key(third)) <= TTL
    assert sorted(store.keys("dcesid:*")) == sorted([key(sid), key(third)])


async def test_only_the_immediate_predecessor_is_honoured(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    s0 = await stored(manager, call, a=1)
    now[0] += INTERVAL
    s1 = await rotate(manager, call, s0)
    now[0] += INTERVAL
    s2 = await rotate(manager, call, s1)
    assert store.hget(key(s1), "$newid") == s2
    stale = manager.open(s0)
    with pytest.raises(SessionDestroyed):
        await call(stale.try_renew())
    assert store.hgetall(key(s0)) == {"$newid": s1}  # dead by the chain, left to expire
    assert store.hgetall(key(s2)) == {"a": "1"}


async def test_only_the_immediate_predecessor_even_within_grace(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    s0 = await stored(manager, call, a=1)
    now[0] += INTERVAL
    s1 = await rotate(manager, call, s0)
    now[0] += INTERVAL
    await rotate(manager, call, s1)
    # s1 -> s2 just happened: s1 is in its grace, s0 is not honoured.
    with pytest.raises(SessionDestroyed):
        await call(manager.open(s0).try_renew())
    follower = manager.open(s1)
    assert await call(follower.try_renew()) is True
    assert follower.id == store.hget(key(s1), "$newid")


# -- concurrent rotations ------------------------------------------------------------

WORKERS = 8


async def test_concurrent_rotations_converge_on_one_sid(
        manager: Any, call: Any, now: list[int], store: Any, door: str) -> None:
    sid = await stored(manager, call, a=1)
    now[0] += INTERVAL
    sessions = [manager.open(sid) for _ in range(WORKERS)]
    if door == "sync":
        barrier = threading.Barrier(WORKERS)
        results: list[Any] = [None] * WORKERS

        def work(index: int) -> None:
            barrier.wait()
            try:
                results[index] = sessions[index].try_renew()
            except BaseException as error:  # reported by the assertion below
                results[index] = error

        threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        results = list(await asyncio.gather(
            *(session.try_renew() for session in sessions), return_exceptions=True))
    assert results == [True] * WORKERS
    ids = {session.id for session in sessions}
    assert len(ids) == 1
    (new,) = ids
    assert new != sid
    assert store.hget(key(sid), "$newid") == new
    assert sorted(store.keys("dcesid:*")) == sorted([key(sid), key(new)])
    assert store.hgetall(key(new)) == {"a": "1"}


# -- the Rust decision -------------------------------------------------------------------


def test_renew_decision_smoke() -> None:
    policy = (INTERVAL, GRACE, INACTIVE)
    assert renew_decision(*policy, 1599, 1000) == RenewDecision.KEEP
    assert renew_decision(*policy, 10, 1000) == "keep"  # clock behind the sid
    assert renew_decision(*policy, 1600, 1000) == RenewDecision.ROTATE
    assert renew_decision(*policy, 1600, 1000, stored=Stored.LIVE) == RenewDecision.ROTATE
    assert renew_decision(*policy, 2000, 1000, stored=Stored.FORWARDING) == RenewDecision.FOLLOW
    assert renew_decision(*policy, 3000, 1000, 400, Stored.SUPERSEDED, 10) == "destroy"
    assert renew_decision(*policy, 3000, 1000, 400, Stored.SUPERSEDED, 61) == "reissue"
    assert renew_decision(*policy, 3000, 1000, 20, Stored.SUPERSEDED, 30) == "reissue"
    assert renew_decision(*policy, 1650, 1000, stored=Stored.ENDED) == RenewDecision.REFUSE
    assert renew_decision(*policy, 1650, 1000, stored=Stored.GONE) == RenewDecision.NEWBORN
    assert RenewDecision.KEEP != "rotate"
    assert RenewDecision.KEEP != 0
    with pytest.raises(TypeError):
        renew_decision(*policy, 1650, 1000, 0, "bogus")  # type: ignore[arg-type]
