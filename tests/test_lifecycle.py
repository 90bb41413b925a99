"""SEMANTICS Part 3 - one lifecycle: every operation defined in every state
(live, forwarding, superseded, gone), through fresh objects and objects
loaded earlier. Both doors; the clock is the manager's ``clock=``, idle times
are Redis' own (a key's ``ttl - remaining``: tests lower a TTL to age it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from dce_session import RenewPolicy
from dce_session.core import parse_sid, session_key
from dce_session.errors import SessionDestroyed

BASE = 1_800_000_000
INTERVAL, GRACE, INACTIVE = 600, 120, 60
POLICY = RenewPolicy(interval_seconds=INTERVAL, original_judgment_seconds=GRACE,
                     cloned_inactive_judgment_seconds=INACTIVE)
TTL = 3600
USER = {"id": 77, "name": "ada"}


@pytest.fixture
def now() -> list[int]:
    return [BASE]


@pytest.fixture
def manager(make_manager: Any, now: list[int]) -> Any:
    return make_manager(renew=POLICY, clock=lambda: now[0])


def key(sid: str) -> str:
    return session_key("dcesid", sid)


def age(store: Any, sid: str, idle: int) -> None:
    """Make the stored key look idle (or rotated) ``idle`` seconds ago."""
    assert store.expire(key(sid), TTL - idle)


async def logged_in(manager: Any, call: Any, **data: Any) -> str:
    session = manager.new()
    if data:
        await call(session.update(data))
    return str(await call(session.login(USER)))


async def rotate(manager: Any, call: Any, now: list[int], sid: str) -> str:
    now[0] += INTERVAL
    session = manager.open(sid)
    assert await call(session.try_renew()) is True
    assert session.id != sid
    return str(session.id)


# -- the walk-through ------------------------------------------------------------


async def test_a_request_straddling_a_rotation_writes_where_later_requests_read(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    sid0 = await logged_in(manager, call)
    slow = manager.open(sid0)
    assert await call(slow.try_renew()) is False  # a slow request loads the session
    new = await rotate(manager, call, now, sid0)  # another request rotates it
    await call(slow.set("k", 1))
    assert slow.id == new  # the write followed the rotation: send this sid
    assert await call(manager.open(new).get("k")) == 1
    assert store.hgetall(key(sid0)) == {"$newid": new}
    assert await call(manager.sessions_of(77)) == [new]


async def test_rotations_of_one_browser_are_one_session(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    sid = await logged_in(manager, call)
    for _ in range(5):
        sid = await rotate(manager, call, now, sid)
    assert await call(manager.sessions_of(77)) == [sid]
    assert store.smembers("dceusmap:77") == {sid}


# -- 3.1 forwarding is transparent, one hop ------------------------------------------------


async def test_forwarding_serves_every_operation_from_the_successor(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    sid = await logged_in(manager, call, a=1)
    new = await rotate(manager, call, now, sid)
    now[0] += GRACE  # the last second of grace
    operations: list[Callable[[Any], Any]] = [
        lambda s: s.get("a"), lambda s: s.raw(), lambda s: s.data(), lambda s: s.user(),
        lambda s: s.uid(), lambda s: s.touch(), lambda s: s.set("b", 2),
        lambda s: s.update({"c": 3}), lambda s: s.delete("c"), lambda s: s.silent_get("a"),
    ]
    for operation in operations:
        session = manager.open(sid)
        await call(operation(session))
        assert session.id == new
        assert not session.newborn
    assert store.hgetall(key(sid)) == {"$newid": new}
    assert store.hgetall(key(new)) == {"a": "1", "b": "2", "$user": '{"id":77,"name":"ada"}'}


async def test_forwarding_never_extends_the_rotated_key_or_the_successors_idle(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    sid = await logged_in(manager, call, a=1)
    new = await rotate(manager, call, now, sid)
    age(store, sid, 50)
    age(store, new, 50)
    for operation in (lambda s: s.get("a"), lambda s: s.set("b", 2), lambda s: s.touch()):
        await call(operation(manager.open(sid)))
    assert store.ttl(key(sid)) <= TTL - 50
    assert store.ttl(key(new)) <= TTL - 50  # the judgment reads the successor's own use
    await call(manager.open(new).get("a"))  # used through its own sid: touched
    assert store.ttl(key(new)) > TTL - 50


async def test_only_one_hop_is_honoured(manager: Any, call: Any, now: list[int],
                                        store: Any) -> None:
    s0 = await logged_in(manager, call, a=1)
    s1 = await rotate(manager, call, now, s0)
    s2 = await rotate(manager, call, now, s1)
    late = manager.open(s0)
    assert await call(late.get("a")) is None
    assert late.newborn
    assert late.id not in (s0, s1, s2)
    assert await call(late.user()) is None
    follower = manager.open(s1)
    assert await call(follower.get("a")) == 1
    assert follower.id == s2


async def test_a_loaded_object_writes_into_the_successor_of_a_successor_never(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    s0 = await logged_in(manager, call, a=1)
    loaded = manager.open(s0)
    assert await call(loaded.get("a")) == 1
    s1 = await rotate(manager, call, now, s0)
    await rotate(manager, call, now, s1)
    with pytest.raises(SessionDestroyed):
        await call(loaded.set("b", 2))
    assert store.hgetall(key(s0)) == {"$newid": s1}


# -- 3.2 a rotated sid is not a login --------------------------------------------------------


async def test_a_rotated_sid_is_not_listed_and_holds_nothing(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    session = manager.new()
    await call(session.set("a", 1))
    connection = manager.connect(None, server="10.0.0.5:8000", client="198.51.100.7:1")
    message = connection.request()
    await call(message.login(USER))
    sid = connection.id
    new = await rotate(manager, call, now, sid)
    assert store.hgetall(key(sid)) == {"$newid": new}
    assert await call(manager.sessions_of(77)) == [new]
    assert await call(manager.connections_of(77)) == [(new, "10.0.0.5:8000", "198.51.100.7:1")]
    assert store.smembers("dceusmap:77") == {new}


async def test_a_superseded_sid_reads_as_unknown_and_refuses_writes(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    sid = await logged_in(manager, call, a=1)
    loaded = manager.open(sid)
    assert await call(loaded.get("a")) == 1
    new = await rotate(manager, call, now, sid)
    now[0] += GRACE + 1
    fresh = manager.open(sid)
    assert await call(fresh.user()) is None
    assert fresh.newborn
    assert await call(fresh.get("a")) is None
    await call(fresh.set("mine", 1))  # a newborn's own key
    assert fresh.id not in (sid, new)
    with pytest.raises(SessionDestroyed):
        await call(loaded.set("b", 2))
    assert store.hgetall(key(sid)) == {"$newid": new}
    assert "b" not in store.hgetall(key(new))


@pytest.mark.parametrize("ending", ["logout_everywhere", "destroy", "logout"])
async def test_ending_the_successor_ends_the_rotated_sid(
        manager: Any, call: Any, now: list[int], store: Any, ending: str) -> None:
    sid = await logged_in(manager, call, a=1)
    new = await rotate(manager, call, now, sid)
    if ending == "logout_everywhere":
        assert await call(manager.logout_everywhere(77)) == 1
    elif ending == "destroy":
        assert await call(manager.open(new).destroy()) is True
    else:
        assert await call(manager.open(new).logout()) is True
    late = manager.open(sid)
    assert await call(late.user()) is None
    if ending != "logout":
        assert late.newborn
        with pytest.raises(SessionDestroyed):
            await call(manager.open(sid).try_renew())
    assert await call(manager.sessions_of(77)) == []


# -- 3.3 the reissue loses nothing -----------------------------------------------------------


async def test_the_reissue_holds_every_write_made_through_either_sid(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    sid = await logged_in(manager, call, a=1)
    loaded = manager.open(sid)
    assert await call(loaded.get("a")) == 1
    new = await rotate(manager, call, now, sid)
    await call(loaded.set("through_loaded", 1))  # forwarded
    await call(manager.open(sid).set("through_old", 2))  # forwarded
    now[0] += GRACE + 1
    age(store, new, INACTIVE + 10)  # the successor never reached the client
    age(store, sid, INACTIVE + 10)
    late = manager.open(sid)
    assert await call(late.try_renew()) is True
    third = late.id
    assert third not in (sid, new)
    assert parse_sid(third)[1] == now[0]
    assert store.hgetall(key(third)) == {
        "a": "1", "through_loaded": "1", "through_old": "2",
        "$user": '{"id":77,"name":"ada"}'}
    assert not store.exists(key(new))
    assert store.hgetall(key(sid)) == {"$newid": third}
    assert await call(manager.sessions_of(77)) == [third]


# -- 3.4 login never forwards ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["login", "auto_login"])
async def test_login_ends_the_old_sid_outright(manager: Any, call: Any, store: Any,
                                               how: str) -> None:
    sid = await logged_in(manager, call, a=1)
    loaded = manager.open(sid)
    assert await call(loaded.get("a")) == 1
    tab = manager.open(sid)
    new = await call(tab.login({"id": 78}) if how == "login" else tab.auto_login())
    assert not store.exists(key(sid))
    with pytest.raises(SessionDestroyed):
        await call(loaded.set("b", 2))
    fresh = manager.open(sid)
    assert await call(fresh.get("a")) is None
    assert fresh.newborn
    assert fresh.id != new


async def test_login_through_a_forwarding_sid_ends_both(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    sid = await logged_in(manager, call, a=1)
    new = await rotate(manager, call, now, sid)
    session = manager.open(sid)
    third = await call(session.login({"id": 78}))
    assert store.hgetall(key(third))["a"] == "1"
    assert not store.exists(key(sid))
    assert not store.exists(key(new))
    assert await call(manager.sessions_of(77)) == []
    assert await call(manager.sessions_of(78)) == [third]


def replaced_key(sid: str) -> str:
    return f"dcesid~replaced:{{{key(sid)}}}"


@pytest.mark.parametrize("how", ["login", "auto_login", "regenerate(destroy_old)"])
async def test_a_sid_a_login_replaced_says_so_for_the_grace_period(
        manager: Any, call: Any, store: Any, how: str) -> None:
    """A request still carrying the old sid after a login elsewhere: newborn as
    for any unknown sid, and ``replaced`` (its browser holds the new sid)."""
    sid = await logged_in(manager, call, a=1)
    tab = manager.open(sid)
    if how == "login":
        await call(tab.login({"id": 78}))
    elif how == "auto_login":
        await call(tab.auto_login())
    else:
        await call(tab.regenerate(destroy_old=True))
    assert not store.exists(key(sid))
    assert 0 < store.ttl(replaced_key(sid)) <= GRACE  # the grace of the manager's policy
    late = manager.open(sid)
    assert await call(late.get("a")) is None
    assert late.newborn
    assert late.replaced
    assert late.id != sid
    blind = manager.open(sid)  # a write that reads nothing first says so too
    await call(blind.set("b", 2))
    assert blind.newborn
    assert blind.replaced
    assert blind.id != sid
    assert store.hgetall(key(blind.id)) == {"b": "2"}  # the core still writes: newborn


async def test_negative_control_sids_nobody_replaced(manager: Any, call: Any,
                                                     store: Any) -> None:
    unknown = manager.open(manager.new().id)
    assert await call(unknown.get("a")) is None
    assert unknown.newborn
    assert not unknown.replaced
    sid = await logged_in(manager, call, a=1)
    kept = manager.open(sid)
    await call(kept.regenerate())  # the old sid stays: nothing replaced
    assert not store.exists(replaced_key(sid))
    destroyed = manager.open(sid)
    assert await call(destroyed.destroy()) is True  # an ending is not a replacement
    late = manager.open(sid)
    assert await call(late.get("a")) is None
    assert late.newborn
    assert not late.replaced


async def test_without_renew_a_replaced_sid_reads_so_for_the_default_grace(
        make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    sid = session.id
    await call(session.login(USER))
    assert 0 < store.ttl(replaced_key(sid)) <= 120
    store.delete(replaced_key(sid))  # past the grace: an unknown sid like any other
    late = manager.open(sid)
    assert await call(late.get("a")) is None
    assert late.newborn
    assert not late.replaced


# -- 3.7 index membership by uid -------------------------------------------------------------


async def test_uid_field_names_the_uid(make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager(uid_field="uid")
    session = manager.new()
    sid = await call(session.login({"uid": 5, "name": "x"}))
    assert await call(session.uid()) == 5
    assert await call(manager.sessions_of(5)) == [sid]
    assert await call(manager.sync({"uid": 5, "name": "y"})) == 1
    assert await call(manager.open(sid).user()) == {"uid": 5, "name": "y"}
    assert await call(manager.logout_everywhere(5)) == 1


async def test_pruning_never_drops_a_live_session_it_cannot_read_the_uid_of(
        make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    ours = await call(manager.new().login({"id": 9}))
    # Another writer (e.g. the Rust crate with a UidGetter over `user_id`):
    foreign = manager.new().id
    store.hset(key(foreign), mapping={"$user": '{"user_id":9}', "a": "1"})
    store.expire(key(foreign), TTL)
    other = manager.new().id  # logged in as someone else: pruned
    store.hset(key(other), mapping={"$user": '{"id":10}'})
    store.expire(key(other), TTL)
    anonymous = manager.new().id  # logged out: pruned
    store.hset(key(anonymous), mapping={"a": "1"})
    store.expire(key(anonymous), TTL)
    store.sadd("dceusmap:9", foreign, other, anonymous, "0" * 76)
    assert sorted(await call(manager.sessions_of(9))) == sorted([ours, foreign])
    assert store.smembers("dceusmap:9") == {ours, foreign}


@pytest.mark.parametrize(("user_json", "listed"), [
    ('{"id":4}', True),
    ('{"id":4,"name":"x"}', True),
    ('{"name":"x","id":4}', True),  # the uid not first: read by the parse
    ('{ "id" : 4 }', True),
    ('{"id":42}', False),  # opens like uid 4, is another uid
    ('{"id":43,"id4":4}', False),
    ('{"friend":{"id":4},"id":5}', False),  # a nested uid is not the user's
])
async def test_index_membership_reads_the_top_level_uid(
        make_manager: Any, call: Any, store: Any, user_json: str, listed: bool) -> None:
    manager = make_manager()
    sid = manager.new().id
    store.hset(key(sid), mapping={"$user": user_json})
    store.expire(key(sid), TTL)
    store.sadd("dceusmap:4", sid)
    assert await call(manager.sessions_of(4)) == ([sid] if listed else [])


# -- 3.8 any size ----------------------------------------------------------------------------


async def test_any_number_of_fields_and_deletions(make_manager: Any, call: Any,
                                                  store: Any) -> None:
    manager = make_manager()
    session = manager.new()
    many = {f"f{i}": i for i in range(12_000)}
    await call(session.update(many))
    assert store.hlen(session.key) == 12_000
    opened = manager.open(session.id)
    await call(opened.update({"small": 1}, delete=[f"f{i}" for i in range(10_000)]))
    assert store.hlen(session.key) == 2_001
    assert store.ttl(session.key) > 0
    new = await call(opened.login(USER))
    assert store.hlen(key(new)) == 2_002
    assert await call(manager.open(new).get("f11999")) == 11999


# -- 3.9 a judged sid stays judged, and concurrent judges agree ------------------------------

WORKERS = 20
ROUNDS = 10


async def concurrently(door: str, sessions: list[Any], method: str) -> list[Any]:
    """``method`` of every session at once; results or the exceptions raised."""
    if door == "async":
        return list(await asyncio.gather(*(getattr(s, method)() for s in sessions),
                                         return_exceptions=True))
    barrier = threading.Barrier(len(sessions))
    results: list[Any] = [None] * len(sessions)

    def work(index: int) -> None:
        barrier.wait()
        try:
            results[index] = getattr(sessions[index], method)()
        except BaseException as error:  # reported by the caller's assertions
            results[index] = error

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sessions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


STATES = ["due", "in grace", "abandoned", "moved on", "chain"]


async def prepare(state: str, manager: Any, call: Any, now: list[int], store: Any) -> str:
    """A presented sid in ``state``."""
    sid = await logged_in(manager, call, a=1)
    if state == "due":
        now[0] += INTERVAL
        return sid
    new = await rotate(manager, call, now, sid)
    if state == "chain":
        await rotate(manager, call, now, new)
        return sid
    if state == "in grace":
        now[0] += GRACE
        return sid
    now[0] += GRACE + 1
    if state == "abandoned":
        age(store, new, INACTIVE + 10)
        age(store, sid, INACTIVE + 10)
    else:
        age(store, new, 5)
        age(store, sid, 200)
    return sid


@pytest.mark.parametrize("state", STATES)
async def test_concurrent_callers_on_one_sid_get_one_answer(
        manager: Any, call: Any, now: list[int], store: Any, door: str, state: str) -> None:
    for _ in range(ROUNDS):
        store.flushdb()
        sid = await prepare(state, manager, call, now, store)
        sessions = [manager.open(sid) for _ in range(WORKERS)]
        results = await concurrently(door, sessions, "try_renew")
        if state in ("moved on", "chain"):
            assert all(isinstance(r, SessionDestroyed) for r in results), results
        else:
            assert results == [True] * WORKERS
            ids = {s.id for s in sessions}
            assert len(ids) == 1
            (new,) = ids
            assert store.hget(key(sid), "$newid") == new
            assert store.hget(key(new), "a") == "1"
            assert await call(manager.sessions_of(77)) == [new]


@pytest.mark.parametrize("state", ["moved on", "chain"])
async def test_a_judged_sid_stays_judged(manager: Any, call: Any, now: list[int],
                                         store: Any, state: str) -> None:
    sid = await prepare(state, manager, call, now, store)
    with pytest.raises(SessionDestroyed):
        await call(manager.open(sid).try_renew())
    for _ in range(GRACE // 30):  # late requests carrying the sid, within the grace period
        now[0] += 30
        late = manager.open(sid)
        with pytest.raises(SessionDestroyed):
            await call(late.try_renew())
        assert late.destroyed


def naive_judge(store: Any, sid: str) -> str:
    """The negative control: the judgment as two steps, reading the successor
    with a touch (as a request using it would) before deciding."""
    pointer = store.hget(key(sid), "$newid")
    old_idle = TTL - store.ttl(key(sid))
    successor_idle = TTL - store.ttl(key(pointer))
    store.expire(key(pointer), TTL)  # the read touched it
    return "destroy" if successor_idle <= INACTIVE and successor_idle < old_idle else "reissue"


async def test_negative_control_a_judgment_that_touches_disagrees_with_itself(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    sid = await prepare("abandoned", manager, call, now, store)
    answers = {naive_judge(store, sid) for _ in range(2)}
    assert answers == {"reissue", "destroy"}  # the check above would catch it
    store.flushdb()
    sid = await prepare("abandoned", manager, call, now, store)
    ours = [manager.open(sid) for _ in range(2)]
    assert [await call(s.try_renew()) for s in ours] == [True, True]
    assert ours[0].id == ours[1].id


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "expected"), [
    ("due", 1), ("in grace", 1), ("abandoned", 2), ("moved on", 2), ("chain", 1)])
async def test_round_trips_of_try_renew(manager: Any, call: Any, now: list[int], store: Any,
                                        round_trips: Any, state: str, expected: int) -> None:
    sid = await prepare(state, manager, call, now, store)
    session = manager.open(sid)
    round_trips.reset()
    try:
        await call(session.try_renew())
    except SessionDestroyed:
        assert state in ("moved on", "chain")
    assert round_trips.count == expected


# -- ttl_passed in every state ---------------------------------------------------------------


async def test_ttl_passed_follows_a_forwarding_sid_and_reads_no_other_state(
        manager: Any, call: Any, now: list[int], store: Any) -> None:
    """ttl_passed is an operation like the others: a forwarding sid reports its
    successor (the object moves to it), a superseded one reads as unknown."""
    sid = await logged_in(manager, call, c=1)
    new = await rotate(manager, call, now, sid)
    age(store, new, 30)
    forwarded = manager.open(sid)
    assert 30 <= await call(forwarded.ttl_passed()) <= 32
    assert forwarded.id == new
    assert not forwarded.newborn
    assert await call(forwarded.get("c")) == 1  # read from the successor
    now[0] += GRACE + 1  # the old sid is superseded now
    superseded = manager.open(sid)
    assert await call(superseded.ttl_passed()) is None
    assert superseded.newborn  # as every other operation reads it
    await call(superseded.set("a", 1))  # a newborn's write: a fresh sid, no adoption
    assert superseded.id not in (sid, new)
    assert store.hgetall(key(new)) == {"c": "1", "$user": '{"id":77,"name":"ada"}'}
    assert 30 <= await call(manager.open(new).ttl_passed()) <= 32  # never touched


async def test_ttl_passed_of_a_session_ended_meanwhile_is_none(
        manager: Any, call: Any, now: list[int]) -> None:
    sid = await logged_in(manager, call)
    loaded = manager.open(sid)
    assert await call(loaded.ttl_passed()) == 0
    await call(manager.open(sid).destroy())
    assert await call(loaded.ttl_passed()) is None
    assert loaded.destroyed
