"""Round trips per request: counted socket writes and the server's own command stats.

``round_trips`` counts what the door's client wrote (a NOSCRIPT retry, a
``SCRIPT EXISTS`` or a health check would count too); ``commandstats`` says
what the server ran. Redis also counts the commands a script runs inside its
own stats, so the server side is checked on the commands a client can send
to start a script, while the client side lists every command sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from dce_session.core import generate_sid

SCRIPT_ENTRY = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro", "script")


def scripts(delta: dict[str, int]) -> dict[str, int]:
    """The script-starting commands of a commandstats delta (``script|load`` and the like)."""
    return {name: n for name, n in delta.items() if name.split("|", 1)[0] in SCRIPT_ENTRY}


class Meter:
    """Measure one step: ``with meter(): ...`` then ``meter.trips`` / ``meter.sent`` / ``.ran``."""

    def __init__(self, round_trips: Any, commandstats: Any) -> None:
        self.round_trips, self.commandstats = round_trips, commandstats
        self.trips, self.sent, self.ran, self.delta = 0, [], {}, {}

    def __call__(self) -> Meter:
        return self

    def __enter__(self) -> Meter:
        self.commandstats.snapshot()
        self.round_trips.reset()
        return self

    def __exit__(self, *exc: object) -> None:
        self.trips = self.round_trips.count
        self.sent = list(self.round_trips.commands)
        self.delta = self.commandstats.delta()
        self.ran = scripts(self.delta)

    def assert_scripts(self, count: int) -> None:
        """Exactly ``count`` round trips, each one EVALSHA, and nothing else sent."""
        assert self.trips == count, self.sent
        assert self.sent == [b"EVALSHA"] * count
        assert self.ran == ({"evalsha": count} if count else {}), self.delta


@pytest.fixture
def meter(round_trips: Any, commandstats: Any) -> Meter:
    """A meter (``make_manager``'s scripts are already cached, as in a warm process)."""
    return Meter(round_trips, commandstats)


@dataclass
class User:
    id: int
    name: str


async def stored_sid(manager: Any, call: Any, **fields: Any) -> str:
    session = manager.new()
    await call(session.update(fields or {"seed": 1}))
    return str(session.id)


# -- basic sessions ------------------------------------------------------------------


async def test_open_and_any_reads_cost_one_round_trip(make_manager: Any, call: Any,
                                                      meter: Meter) -> None:
    manager = make_manager()
    sid = await stored_sid(manager, call, a=1, b=[2], c="three")
    with meter():
        session = manager.open(sid)
        assert await call(session.get("a")) == 1
        assert await call(session.get("b")) == [2]
        assert await call(session.silent_get("c")) == "three"
        assert await call(session.get("missing", 0)) == 0
        for _ in range(20):
            await call(session.get("a"))
            await call(session.silent_get("b"))
        assert await call(session.raw()) == {"a": "1", "b": "[2]", "c": '"three"'}
        assert await call(session.user()) is None
        assert await call(session.uid()) is None
    meter.assert_scripts(1)
    # and the touch happened in that same round trip
    assert meter.delta.get("expire") == 1


async def test_new_then_set_is_one_round_trip(make_manager: Any, call: Any,
                                              meter: Meter) -> None:
    manager = make_manager()
    with meter():
        session = manager.new()
        await call(session.set("a", 1))
    meter.assert_scripts(1)


async def test_new_then_update_five_fields_is_one_round_trip(make_manager: Any, call: Any,
                                                             meter: Meter, store: Any) -> None:
    manager = make_manager()
    with meter():
        session = manager.new()
        await call(session.update({f"f{i}": i for i in range(5)}))
    meter.assert_scripts(1)
    assert store.hlen(session.key) == 5


async def test_open_then_set_is_one_round_trip(make_manager: Any, call: Any,
                                               meter: Meter) -> None:
    manager = make_manager()
    sid = await stored_sid(manager, call)
    with meter():
        await call(manager.open(sid).set("a", 1))
    meter.assert_scripts(1)


async def test_open_unknown_get_then_set(make_manager: Any, call: Any, meter: Meter) -> None:
    manager = make_manager()
    session = manager.open(generate_sid(60))
    with meter():
        assert await call(session.get("a")) is None
    meter.assert_scripts(1)
    with meter():
        await call(session.set("a", 1))
    meter.assert_scripts(1)


async def test_open_unknown_set_is_one_round_trip(make_manager: Any, call: Any,
                                                  meter: Meter) -> None:
    manager = make_manager()
    with meter():
        await call(manager.open(generate_sid(60)).set("a", 1))
    meter.assert_scripts(1)


async def test_open_get_set_is_two_round_trips(make_manager: Any, call: Any,
                                               meter: Meter) -> None:
    manager = make_manager()
    sid = await stored_sid(manager, call, a=1)
    with meter():
        session = manager.open(sid)
        assert await call(session.get("a")) == 1
        await call(session.set("a", 2))
        await call(session.get("a"))
    meter.assert_scripts(2)


async def test_a_newborn_reads_for_free(make_manager: Any, call: Any, meter: Meter) -> None:
    manager = make_manager()
    with meter():
        for session in (manager.new(), manager.open(None), manager.open("malformed")):
            assert await call(session.get("a")) is None
            assert await call(session.silent_get("a", 1)) == 1
            assert await call(session.raw()) == {}
            assert await call(session.user()) is None
    meter.assert_scripts(0)
    assert meter.trips == 0


async def test_after_a_write_reads_are_free(make_manager: Any, call: Any, meter: Meter) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    with meter():
        assert await call(session.get("a")) == 1
        assert await call(session.get("b", 2)) == 2
    meter.assert_scripts(0)


async def test_noscript_costs_one_extra_round_trip(make_manager: Any, call: Any, meter: Meter,
                                                   store: Any) -> None:
    manager = make_manager()
    sid = await stored_sid(manager, call, a=1)
    store.script_flush()
    with meter():
        assert await call(manager.open(sid).get("a")) == 1
    assert meter.trips == 2
    assert meter.sent == [b"EVALSHA", b"EVAL"]
    assert meter.ran == {"evalsha": 1, "eval": 1}
    # EVAL cached the script again: the next request is one EVALSHA.
    with meter():
        assert await call(manager.open(sid).get("a")) == 1
    meter.assert_scripts(1)
    store.script_flush()
    with meter():
        session = manager.new()
        await call(session.set("b", 2))
    assert meter.sent == [b"EVALSHA", b"EVAL"]
    assert store.hget(session.key, "b") == "2"


async def test_other_single_steps(make_manager: Any, call: Any, meter: Meter) -> None:
    manager = make_manager()
    sid = await stored_sid(manager, call, a=1)
    with meter():
        assert await call(manager.open(sid).touch()) is True
    meter.assert_scripts(1)
    with meter():
        assert await call(manager.open(sid).regenerate({"b": 2})) != sid
    meter.assert_scripts(1)
    with meter():
        assert await call(manager.open(sid).destroy()) is True
    meter.assert_scripts(1)
    with meter():
        assert await call(manager.open(generate_sid(60)).ttl_passed()) is None
    meter.assert_scripts(1)  # ttl.lua: the lifecycle state, then the TTL


# -- user sessions ---------------------------------------------------------------------


async def test_login_is_one_round_trip(make_manager: Any, call: Any, meter: Meter,
                                       store: Any) -> None:
    manager = make_manager()
    sid = await stored_sid(manager, call, a=1)
    with meter():
        new = await call(manager.open(sid).login(User(7, "ann")))
    meter.assert_scripts(1)
    assert store.exists(f"dcesid:{sid}") == 0
    assert store.smembers("dceusmap:7") == {new}
    with meter():
        await call(manager.new().login({"id": 8}))
    meter.assert_scripts(1)


async def test_auto_login_is_one_round_trip(make_manager: Any, call: Any, meter: Meter,
                                            store: Any) -> None:
    manager = make_manager()
    session = manager.new()
    sid = await call(session.login({"id": 9, "name": "x"}))
    with meter():
        again = manager.open(sid)
        new = await call(again.auto_login())
    meter.assert_scripts(1)
    assert new != sid
    assert store.smembers("dceusmap:9") == {new}


async def test_logout_is_one_round_trip(make_manager: Any, call: Any, meter: Meter,
                                        store: Any) -> None:
    manager = make_manager()
    sid = await call(manager.new().login({"id": 10}))
    with meter():
        assert await call(manager.open(sid).logout()) is True
    meter.assert_scripts(1)
    assert store.exists("dceusmap:10") == 0 or store.smembers("dceusmap:10") == set()


async def test_destroy_logged_in_is_one_round_trip(make_manager: Any, call: Any, meter: Meter,
                                                   store: Any) -> None:
    manager = make_manager()
    sid = await call(manager.new().login({"id": 11}))
    other = await call(manager.new().login({"id": 11}))
    with meter():
        assert await call(manager.open(sid).destroy()) is True
    meter.assert_scripts(1)
    assert store.smembers("dceusmap:11") == {other}


async def test_user_wide_operations_are_one_round_trip(make_manager: Any, call: Any,
                                                       meter: Meter, store: Any) -> None:
    manager = make_manager()
    sids = {await call(manager.new().login({"id": 12, "n": i})) for i in range(50)}
    store.delete(f"dcesid:{next(iter(sids))}")  # one dead entry to prune
    with meter():
        live = await call(manager.sessions_of(12))
    meter.assert_scripts(1)
    assert len(live) == 49
    assert set(live) < sids
    with meter():
        assert await call(manager.sync({"id": 12, "n": "synced"})) == 49
    meter.assert_scripts(1)
    with meter():
        assert await call(manager.logout_everywhere(12)) == 49
    meter.assert_scripts(1)
    assert store.keys("dcesid:*") + store.keys("dceusmap:*") == []  # replay records aside
    with meter():
        assert await call(manager.sessions_of(12)) == []
        assert await call(manager.logout_everywhere(12)) == 0
    meter.assert_scripts(2)
