"""Basic sessions, both front doors, over every client configuration.

Every test body is ``async`` and drives the door under test through ``call``;
``store`` is a plain client that shows what is really in Redis.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from dce_session.core import encode_value, generate_sid, is_valid_sid, parse_sid
from dce_session.errors import (
    ConfigError,
    SerializationError,
    SessionDestroyed,
    StoreError,
    UnknownSetting,
)
from dce_session.testing import RedisServer
from redis.backoff import NoBackoff


def key(sid: str) -> str:
    return f"dcesid:{sid}"


async def stored(make_manager: Any, call: Any, **fields: Any) -> tuple[Any, str]:
    """A manager and the sid of a stored session holding ``fields``."""
    manager = make_manager()
    session = manager.new()
    await call(session.update(fields or {"seed": 1}))
    return manager, session.id


MALFORMED: list[Any] = [
    "", "abc", "not a sid", "G" * 76, "0" * 75, "0" * 85,
    generate_sid(60) + " ", " " + generate_sid(60), generate_sid(60)[:-1] + "é",
    "+" + generate_sid(60)[1:], "F" * 100_000,
    "0" * 64 + "0000" + "65600000",  # a ttl of 0 minutes: never lived
    b"0" * 76, 12345, 1.5, ["x"], object(),
]


# -- new / open --------------------------------------------------------------------


async def test_new_is_newborn_and_writes_nothing(make_manager: Any, call: Any, store: Any,
                                                  round_trips: Any) -> None:
    manager = make_manager()
    session = manager.new()
    assert session.newborn is True
    assert is_valid_sid(session.id)
    assert session.id == session.id.upper()
    assert session.key == key(session.id)
    assert session.ttl_minutes == 60
    assert parse_sid(session.id) == (60, session.created_at)
    assert round_trips.count == 0
    assert await call(session.get("missing")) is None
    assert await call(session.get("missing", 7)) == 7
    assert await call(session.raw()) == {}
    assert store.dbsize() == 0
    assert round_trips.count == 0


async def test_new_with_ttl(make_manager: Any, call: Any, store: Any) -> None:
    session = make_manager(ttl_minutes=30).new(ttl_minutes=5)
    assert session.ttl_minutes == 5
    assert parse_sid(session.id)[0] == 5
    await call(session.set("a", 1))
    assert 0 < store.ttl(session.key) <= 300
    assert make_manager(ttl_minutes=30).new().ttl_minutes == 30


@pytest.mark.parametrize("ttl", [0, -1, 65536, "60", True, 1.0])
async def test_new_bad_ttl(make_manager: Any, ttl: Any) -> None:
    with pytest.raises(ConfigError):
        make_manager().new(ttl_minutes=ttl)


@pytest.mark.parametrize("presented", MALFORMED, ids=lambda v: repr(v)[:20])
async def test_open_malformed_is_newborn_at_once(make_manager: Any, call: Any, store: Any,
                                                  round_trips: Any, presented: Any) -> None:
    manager = make_manager()
    session = manager.open(presented)
    assert session.newborn is True
    assert is_valid_sid(session.id)
    assert session.id != presented
    assert round_trips.count == 0  # known at once, without I/O
    assert await call(session.get("a")) is None
    assert round_trips.count == 0
    await call(session.set("a", 1))
    assert store.keys("*") == [session.key]
    assert store.ttl(session.key) > 0


async def test_open_none_is_newborn(make_manager: Any, call: Any, store: Any) -> None:
    session = make_manager().open(None)
    assert session.newborn is True
    assert is_valid_sid(session.id)
    await call(session.set("a", 1))
    assert store.hget(session.key, "a") == "1"


@pytest.mark.parametrize("write", ["set", "silent_set", "update", "load"])
async def test_unknown_sid_is_never_adopted(make_manager: Any, call: Any, store: Any,
                                            write: str) -> None:
    manager = make_manager()
    presented = generate_sid(60)
    session = manager.open(presented)
    # Until its first store operation an opened session keeps the presented sid.
    assert session.id == presented
    assert session.newborn is False
    if write == "update":
        await call(session.update({"a": 1, "b": 2}))
    elif write == "load":
        await call(session.load({"a": "1"}))
    else:
        await call(getattr(session, write)("a", 1))
    assert session.newborn is True
    assert session.id != presented
    assert is_valid_sid(session.id)
    assert store.exists(key(presented)) == 0
    assert store.keys("*") == [key(session.id)]
    assert store.hget(key(session.id), "a") == "1"
    assert 0 < store.ttl(key(session.id)) <= 3600


@pytest.mark.parametrize("case", ["upper", "lower"])
async def test_unknown_sid_get_then_set(make_manager: Any, call: Any, store: Any,
                                        case: str) -> None:
    presented = generate_sid(60)
    presented = presented.lower() if case == "lower" else presented
    session = make_manager().open(presented)
    assert await call(session.get("a", "dflt")) == "dflt"
    assert session.newborn is True
    fresh = session.id
    assert fresh != presented
    assert fresh.lower() != presented.lower()
    assert store.dbsize() == 0  # a read writes nothing
    await call(session.set("a", 1))
    assert session.id == fresh
    assert store.exists(key(presented), key(presented.upper()), key(presented.lower())) == 0
    assert store.hgetall(key(fresh)) == {"a": "1"}


async def test_unknown_sid_other_operations_write_nothing(make_manager: Any, call: Any,
                                                          store: Any) -> None:
    manager = make_manager()
    for operation in ("touch", "ttl_passed", "delete", "silent_delete", "raw", "destroy"):
        presented = generate_sid(60)
        session = manager.open(presented)
        args = ("a",) if operation.endswith("delete") else ()
        result = await call(getattr(session, operation)(*args))
        assert result in (False, None, {}), operation
        assert store.dbsize() == 0, operation
        if operation != "destroy":
            assert session.id != presented, operation
            assert session.newborn is True, operation


async def test_open_known(make_manager: Any, call: Any) -> None:
    manager, sid = await stored(make_manager, call, cart=["apple"])
    session = manager.open(sid)
    assert session.id == sid
    assert session.newborn is False
    assert await call(session.get("cart")) == ["apple"]
    assert session.id == sid
    assert session.newborn is False
    assert (session.ttl_minutes, session.created_at) == parse_sid(sid)


async def test_open_known_then_write_first(make_manager: Any, call: Any, store: Any) -> None:
    manager, sid = await stored(make_manager, call, a=1)
    session = manager.open(sid)
    await call(session.set("b", 2))
    assert session.id == sid
    assert session.newborn is False
    assert store.hgetall(key(sid)) == {"a": "1", "b": "2"}
    assert await call(session.get("a")) == 1


# -- reads and writes ----------------------------------------------------------------


async def test_get_set_update_delete(make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    await call(session.update({"b": "two", "c": [3]}))
    assert await call(session.get("a")) == 1
    assert await call(session.get("b")) == "two"
    await call(session.set("a", {"x": 1}))
    assert await call(session.get("a")) == {"x": 1}
    assert await call(session.delete("c")) is True
    assert await call(session.delete("c")) is False
    assert await call(session.get("c", "gone")) == "gone"
    assert store.hgetall(session.key) == {"a": '{"x":1}', "b": '"two"'}
    again = manager.open(session.id)
    assert await call(again.get("a")) == {"x": 1}
    assert await call(again.get("c")) is None
    assert await call(again.delete("b")) is True
    assert await call(again.delete("zzz")) is False
    assert store.hgetall(session.key) == {"a": '{"x":1}'}


async def test_silent_operations(make_manager: Any, call: Any, store: Any) -> None:
    manager, sid = await stored(make_manager, call, a=1)
    session = manager.open(sid)
    assert await call(session.silent_get("a")) == 1
    assert await call(session.silent_get("nope", 3)) == 3
    await call(session.silent_set("b", [1, 2]))
    assert await call(session.silent_delete("a")) is True
    assert await call(session.silent_delete("a")) is False
    assert store.hgetall(key(sid)) == {"b": "[1,2]"}
    assert await call(manager.open(sid).silent_get("b")) == [1, 2]


async def test_defaults(make_manager: Any, call: Any) -> None:
    manager, sid = await stored(make_manager, call, null=None, zero=0, empty="", no=False)
    session = manager.open(sid)
    assert await call(session.get("missing")) is None
    assert await call(session.get("missing", {"d": 1})) == {"d": 1}
    assert await call(session.silent_get("missing", 5)) == 5
    # A stored null/falsy value is a value, not a miss.
    assert await call(session.get("null", "dflt")) is None
    assert await call(session.get("zero", 9)) == 0
    assert await call(session.get("empty", "x")) == ""
    assert await call(session.get("no", True)) is False


ROUND_TRIPPING: list[Any] = [
    None, True, False, 0, -1, 42, -(2**63), 2**63 - 1, 2**64 - 1, 0.5, -1.25, 1e300, 0.1 + 0.2,
    "", "text", "héllo ☃ 😀", "quote \" back \\ nl \n tab \t nul \x00 del \x7f",
    [], {}, [1, "a", None, [True, {"k": []}]],
    {"a": 1, "b": [1, 2.5], "c": {"d": None}, "é": "ü", "": 0}, ["x"] * 200,
]


async def test_values_round_trip(make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.update({f"v{index}": value for index, value in enumerate(ROUND_TRIPPING)}))
    await call(session.set("tuple", (1, ("a", None))))
    again = manager.open(session.id)
    for index, value in enumerate(ROUND_TRIPPING):
        assert await call(again.get(f"v{index}")) == value
        assert store.hget(session.key, f"v{index}") == encode_value(value)
        assert json.loads(store.hget(session.key, f"v{index}")) == value
    assert await call(again.get("tuple")) == [1, ["a", None]]
    big = 2**64 - 1
    assert store.hget(session.key, "v8") == str(big)  # every digit kept


UNENCODABLE: list[Any] = [
    {1, 2}, b"bytes", object(), 2**64, -(2**63) - 1, float("nan"), float("inf"),
    {1: "a"}, [1, {2}], {"ok": {None: 1}}, "\ud800",
]


@pytest.mark.parametrize("value", UNENCODABLE, ids=lambda v: type(v).__name__)
async def test_unencodable_on_new_writes_nothing(make_manager: Any, call: Any, store: Any,
                                                  value: Any) -> None:
    session = make_manager().new()
    with pytest.raises(SerializationError):
        await call(session.set("a", value))
    with pytest.raises(SerializationError):
        await call(session.silent_set("a", value))
    with pytest.raises(SerializationError):
        await call(session.update({"ok": 1, "bad": value}))
    assert store.dbsize() == 0


async def test_unencodable_on_stored_writes_nothing(make_manager: Any, call: Any,
                                                    store: Any) -> None:
    manager, sid = await stored(make_manager, call, keep=1)
    session = manager.open(sid)
    loop: list[Any] = []
    loop.append(loop)
    for value in [*UNENCODABLE, loop]:
        with pytest.raises(SerializationError):
            await call(session.set("bad", value))
        with pytest.raises(SerializationError):
            await call(session.update({"fine": 2, "bad": value}))
        with pytest.raises(SerializationError):
            await call(session.regenerate({"fine": 2, "bad": value}))
    assert store.hgetall(key(sid)) == {"keep": "1"}
    assert store.keys("*") == [key(sid)]
    assert session.id == sid


@pytest.mark.parametrize("field", [1, None, b"a", ("a",), 1.5])
async def test_non_str_field_is_type_error_without_io(make_manager: Any, call: Any,
                                                      round_trips: Any, store: Any,
                                                      field: Any) -> None:
    manager, sid = await stored(make_manager, call, a=1)
    session = manager.open(sid)
    round_trips.reset()
    operations = [
        lambda: session.get(field), lambda: session.silent_get(field),
        lambda: session.set(field, 1), lambda: session.silent_set(field, 1),
        lambda: session.update({field: 1}), lambda: session.delete(field),
        lambda: session.silent_delete(field), lambda: session.load({field: "1"}),
        lambda: session.regenerate({field: 1}), lambda: session.regenerate({field: None}),
    ]
    for operation in operations:
        with pytest.raises(TypeError) as caught:
            await call(operation())
        assert not isinstance(caught.value, SerializationError)
    assert round_trips.count == 0
    assert store.hgetall(key(sid)) == {"a": "1"}


@pytest.mark.parametrize("raw", ["not json", "NaN", "Infinity", "{", "'a'", "", "[1,]"])
async def test_stored_non_json_raises_on_get(make_manager: Any, call: Any, store: Any,
                                             raw: str) -> None:
    manager, sid = await stored(make_manager, call, good=1)
    store.hset(key(sid), "bad", raw)
    session = manager.open(sid)
    with pytest.raises(SerializationError):
        await call(session.get("bad"))
    with pytest.raises(SerializationError):
        await call(session.silent_get("bad", 0))
    assert await call(session.get("good")) == 1
    assert (await call(session.raw()))["bad"] == raw


async def test_raw_and_load(make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.load({"a": '"x"', "b": "1", "odd": "not json"}))
    assert store.hgetall(session.key) == {"a": '"x"', "b": "1", "odd": "not json"}
    assert 0 < store.ttl(session.key) <= 3600  # a key load creates has its TTL
    again = manager.open(session.id)
    raw = await call(again.raw())
    assert raw == {"a": '"x"', "b": "1", "odd": "not json"}
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items())
    assert await call(again.get("a")) == "x"
    await call(again.load({"c": "[1]"}))
    assert await call(again.get("c")) == [1]
    assert (await call(again.raw()))["c"] == "[1]"
    for bad in ({"d": 1}, {"d": None}, {"d": b"x"}, {"e": "1", "d": ["x"]}):
        with pytest.raises(SerializationError):
            await call(again.load(bad))
    assert set(store.hkeys(session.key)) == {"a", "b", "odd", "c"}
    raw["a"] = "changed"  # raw() hands out a copy
    assert (await call(again.raw()))["a"] == '"x"'


# -- touch and TTL --------------------------------------------------------------------


async def test_touch_restores_the_ttl(make_manager: Any, call: Any, store: Any) -> None:
    manager, sid = await stored(make_manager, call)
    store.expire(key(sid), 10)
    assert await call(manager.open(sid).touch()) is True
    assert store.ttl(key(sid)) > 3500


async def test_touch_unknown_is_false(make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    assert await call(manager.open(generate_sid(60)).touch()) is False
    assert await call(manager.new().touch()) is False
    assert store.dbsize() == 0


@pytest.mark.parametrize("first", ["get", "set", "update", "delete"])
async def test_first_operation_touches(make_manager: Any, call: Any, store: Any,
                                       first: str) -> None:
    manager, sid = await stored(make_manager, call, a=1)
    store.expire(key(sid), 100)
    session = manager.open(sid)
    await call({
        "get": lambda: session.get("a"), "set": lambda: session.set("b", 1),
        "update": lambda: session.update({"b": 1}), "delete": lambda: session.delete("zz"),
    }[first]())
    assert store.ttl(key(sid)) > 3500


async def test_touch_at_most_once_per_object(make_manager: Any, call: Any, store: Any) -> None:
    manager, sid = await stored(make_manager, call, a=1)
    session = manager.open(sid)
    assert await call(session.get("a")) == 1
    store.expire(key(sid), 100)
    assert await call(session.get("a")) == 1
    await call(session.set("b", 2))
    await call(session.update({"c": 3}))
    assert await call(session.delete("c")) is True
    assert 0 < store.ttl(key(sid)) <= 100
    # A fresh object touches again.
    assert await call(manager.open(sid).get("b")) == 2
    assert store.ttl(key(sid)) > 3500
    # touch() always sends its EXPIRE.
    store.expire(key(sid), 100)
    assert await call(session.touch()) is True
    assert store.ttl(key(sid)) > 3500


async def test_a_created_session_counts_as_touched(make_manager: Any, call: Any,
                                                   store: Any) -> None:
    session = make_manager().new()
    await call(session.set("a", 1))
    store.expire(session.key, 100)
    await call(session.set("b", 1))
    assert await call(session.get("a")) == 1
    assert 0 < store.ttl(session.key) <= 100


async def test_silent_operations_never_touch(make_manager: Any, call: Any, store: Any) -> None:
    manager, sid = await stored(make_manager, call, a=1, b=2)
    store.expire(key(sid), 100)
    session = manager.open(sid)
    assert await call(session.silent_get("a")) == 1
    await call(session.silent_set("c", 3))
    assert await call(session.silent_delete("b")) is True
    assert await call(session.raw()) == {"a": "1", "c": "3"}
    await call(session.load({"d": "4"}))
    assert await call(session.user()) is None
    assert await call(session.uid()) is None
    fresh = manager.open(sid)
    await call(fresh.silent_set("e", 5))  # silent as the very first operation
    assert await call(manager.open(sid).silent_delete("e")) is True
    assert 0 < store.ttl(key(sid)) <= 100


async def test_silent_set_creates_a_key_with_a_ttl(make_manager: Any, call: Any,
                                                    store: Any) -> None:
    manager = make_manager()
    session = manager.new(ttl_minutes=2)
    await call(session.silent_set("a", 1))
    assert 0 < store.ttl(session.key) <= 120
    unknown = manager.open(generate_sid(60))
    await call(unknown.silent_set("a", 1))
    assert 0 < store.ttl(unknown.key) <= 3600
    assert sorted(store.keys("*")) == sorted([session.key, unknown.key])
    assert all(store.ttl(k) > 0 for k in store.keys("*"))


async def test_ttl_passed(make_manager: Any, call: Any, store: Any) -> None:
    manager, sid = await stored(make_manager, call)
    store.expire(key(sid), 3600 - 100)
    assert await call(manager.open(sid).ttl_passed()) == 100
    store.expire(key(sid), 3600)
    assert await call(manager.open(sid).ttl_passed()) == 0
    short = manager.new(ttl_minutes=3)
    await call(short.set("a", 1))
    store.expire(short.key, 180 - 42)
    assert await call(short.ttl_passed()) == 42


async def test_ttl_passed_not_stored(make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    assert await call(manager.new().ttl_passed()) is None
    assert await call(manager.open(generate_sid(60)).ttl_passed()) is None
    assert store.dbsize() == 0


# -- destroy ---------------------------------------------------------------------------


async def test_destroy(make_manager: Any, call: Any, store: Any) -> None:
    manager, sid = await stored(make_manager, call, a=1)
    session = manager.open(sid)
    assert await call(session.destroy()) is True
    assert store.exists(key(sid)) == 0
    assert await call(session.destroy()) is False
    for write in (lambda: session.set("a", 2), lambda: session.silent_set("a", 2),
                  lambda: session.update({"a": 2}), lambda: session.load({"a": "2"}),
                  lambda: session.delete("a"), lambda: session.regenerate({"a": 2})):
        with pytest.raises(SessionDestroyed):
            await call(write())
    assert store.keys("dcesid:*") + store.keys("dceusmap:*") == []  # replay records aside
    assert await call(manager.open(sid).destroy()) is False
    assert await call(manager.new().destroy()) is False


@pytest.mark.parametrize("how", ["destroy", "expired"])
async def test_destroyed_elsewhere_is_never_recreated(make_manager: Any, call: Any, store: Any,
                                                      how: str) -> None:
    manager, sid = await stored(make_manager, call, a=1)
    loaded = [manager.open(sid) for _ in range(7)]
    for session in loaded:
        assert await call(session.get("a")) == 1
    if how == "destroy":
        assert await call(manager.open(sid).destroy()) is True
    else:
        store.delete(key(sid))
    writes = [
        lambda s: s.set("a", 2), lambda s: s.silent_set("a", 2), lambda s: s.update({"a": 2}),
        lambda s: s.load({"a": "2"}), lambda s: s.delete("a"), lambda s: s.silent_delete("a"),
        lambda s: s.regenerate({"b": 1}),
    ]
    for session, write in zip(loaded, writes, strict=True):
        with pytest.raises(SessionDestroyed) as caught:
            await call(write(session))
        assert sid not in str(caught.value)
        assert store.keys("dcesid:*") + store.keys("dceusmap:*") == []  # replay records aside
        with pytest.raises(SessionDestroyed):  # and it stays so
            await call(session.set("a", 3))
        assert store.keys("dcesid:*") + store.keys("dceusmap:*") == []  # replay records aside


async def test_a_created_session_destroyed_elsewhere(make_manager: Any, call: Any,
                                                     store: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    assert await call(manager.open(session.id).destroy()) is True
    with pytest.raises(SessionDestroyed):
        await call(session.set("a", 2))
    assert store.keys("dcesid:*") + store.keys("dceusmap:*") == []  # replay records aside


# -- regenerate ------------------------------------------------------------------------


async def test_regenerate(make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    session = manager.new(ttl_minutes=7)
    await call(session.update({"a": 1, "b": 2, "c": 3}))
    old = session.id
    session = manager.open(old)
    new = await call(session.regenerate({"b": None, "c": "three", "d": [4]}))
    assert new == session.id != old
    assert is_valid_sid(new)
    assert parse_sid(new)[0] == 7 == session.ttl_minutes
    assert store.hgetall(key(old)) == {"a": "1", "b": "2", "c": "3"}  # old left in place
    assert store.hgetall(key(new)) == {"a": "1", "c": '"three"', "d": "[4]"}
    assert 0 < store.ttl(key(new)) <= 420
    assert await call(session.get("d")) == [4]
    assert await call(session.get("b", "dropped")) == "dropped"
    await call(session.set("e", 5))
    assert store.hget(key(new), "e") == "5"
    assert store.hexists(key(old), "e") == 0
    again = manager.open(new)
    assert await call(again.get("c")) == "three"
    assert again.newborn is False


async def test_regenerate_without_changes(make_manager: Any, call: Any, store: Any) -> None:
    manager, sid = await stored(make_manager, call, a=1)
    session = manager.open(sid)
    new = await call(session.regenerate())
    assert new != sid
    assert store.hgetall(key(new)) == store.hgetall(key(sid)) == {"a": "1"}


async def test_regenerate_with_nothing_to_write(make_manager: Any, call: Any,
                                                store: Any) -> None:
    manager = make_manager()
    fresh = manager.new()
    new = await call(fresh.regenerate())
    assert is_valid_sid(new)
    assert fresh.id == new
    assert store.dbsize() == 0
    manager, sid = await stored(make_manager, call, a=1)
    session = manager.open(sid)
    new = await call(session.regenerate({"a": None}))
    assert new != sid
    assert store.keys("*") == [key(sid)]  # the old one left, nothing new written
    assert store.hgetall(key(sid)) == {"a": "1"}
    assert await call(session.get("a")) is None


async def test_regenerate_a_newborn_with_changes(make_manager: Any, call: Any,
                                                 store: Any) -> None:
    manager = make_manager()
    session = manager.open(generate_sid(60))  # unknown
    new = await call(session.regenerate({"a": 1}))
    assert session.id == new
    assert store.keys("*") == [key(new)]
    assert store.ttl(key(new)) > 0


# -- settings ----------------------------------------------------------------------------


async def test_clock_sets_created_at(make_manager: Any, call: Any) -> None:
    manager = make_manager(clock=lambda: 1_700_000_000.9)
    session = manager.new()
    assert session.created_at == 1_700_000_000
    assert parse_sid(session.id)[1] == 1_700_000_000
    assert manager.open("junk").created_at == 1_700_000_000
    unknown = manager.open(generate_sid(60, 5))
    assert unknown.created_at == 5
    await call(unknown.get("a"))
    assert unknown.created_at == 1_700_000_000  # now a fresh id, made by the clock
    await call(session.set("a", 1))
    new = await call(session.regenerate())
    assert parse_sid(new)[1] == 1_700_000_000 == session.created_at


async def test_repr_and_messages_never_show_a_sid(make_manager: Any, call: Any) -> None:
    manager, sid = await stored(make_manager, call, a=1)
    session = manager.open(sid)
    texts = [repr(session)]
    await call(session.get("a"))
    texts.append(repr(session))
    texts.append(repr(manager.new()))
    await call(manager.open(sid).destroy())
    with pytest.raises(SessionDestroyed) as caught:
        await call(session.set("a", 2))
    texts.append(str(caught.value))
    texts.append(repr(caught.value))
    texts.append(repr(session))
    for text in texts:
        assert sid not in text
        assert sid[:16] not in text
        assert sid[-16:] not in text


@pytest.mark.parametrize(("setting", "value"), [
    ("ttl_minutes", 0), ("ttl_minutes", 65536), ("ttl_minutes", "60"), ("ttl_minutes", True),
    ("ttl_minutes", -5), ("ttl_minutes", 60.0), ("ttl_minutes", None),
    ("sid_name", ""), ("sid_name", None), ("user_prefix", ""), ("user_prefix", 5),
    ("user_field", ""), ("new_sid_field", ""), ("server_field", ""), ("client_field", b"$c"),
    ("new_sid_field", "$user"), ("server_field", "$client"), ("user_field", "$newid"),
    ("clock", 5), ("clock", "time"), ("user_loader", 5), ("renew", 5), ("renew", {}),
    ("mapping_ttl_seconds", 0), ("mapping_ttl_seconds", -1), ("mapping_ttl_seconds", "1"),
    ("mapping_ttl_seconds", True),
])
async def test_bad_settings(make_manager: Any, setting: str, value: Any) -> None:
    with pytest.raises(ConfigError):
        make_manager(**{setting: value})


async def test_unknown_setting_is_a_type_error(make_manager: Any, redis_client: Any) -> None:
    with pytest.raises(UnknownSetting, match=r"no setting 'ttl': did you mean 'ttl_minutes'\?"):
        make_manager(ttl=60)
    with pytest.raises(UnknownSetting, match="the settings are ttl_minutes, sid_name") as raised:
        make_manager(wat=1)
    assert isinstance(raised.value, TypeError)
    assert isinstance(raised.value, ConfigError)
    manager_type = type(make_manager())
    with pytest.raises(UnknownSetting, match=r"takes its settings by keyword .* 1 more by posit"):
        manager_type(redis_client, 60)


async def test_wrong_client_type(door: str, dce: Any, redis_url: str) -> None:
    sync_client = redis.Redis.from_url(redis_url)
    async_client = redis.asyncio.Redis.from_url(redis_url)
    try:
        wrong = async_client if door == "sync" else sync_client
        for bad in (wrong, None, redis_url, object()):
            with pytest.raises(ConfigError):
                dce.SessionManager(bad)
        right = sync_client if door == "sync" else async_client
        assert dce.SessionManager(right).ttl_minutes == 60
    finally:
        sync_client.close()
        await async_client.aclose()


# -- Redis failures ------------------------------------------------------------------------


def _client(door: str, url: str, **kwargs: Any) -> Any:
    if door == "sync":
        return redis.Redis.from_url(url, retry=redis.retry.Retry(NoBackoff(), 0), **kwargs)
    return redis.asyncio.Redis.from_url(
        url, retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **kwargs)


async def _close(client: Any) -> None:
    if isinstance(client, redis.asyncio.Redis):
        await client.aclose()
    else:
        client.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_store_error_on_a_closed_port(door: str, dce: Any, call: Any,
                                            client_config: Any) -> None:
    client = _client(door, f"redis://127.0.0.1:{_closed_port()}/0", socket_connect_timeout=2,
                     **client_config.kwargs())
    try:
        manager = dce.SessionManager(client)
        operations = [
            lambda: manager.new().set("a", 1), lambda: manager.open(generate_sid(60)).get("a"),
            lambda: manager.open(generate_sid(60)).touch(),
            lambda: manager.open(generate_sid(60)).ttl_passed(),
            lambda: manager.open(generate_sid(60)).destroy(),
        ]
        for operation in operations:
            with pytest.raises(StoreError) as caught:
                await call(operation())
            assert isinstance(caught.value.__cause__, redis.RedisError)
            assert isinstance(caught.value.__cause__, redis.ConnectionError)
    finally:
        await _close(client)


async def test_store_error_when_the_server_stops(door: str, dce: Any, call: Any,
                                                 client_config: Any) -> None:
    server = RedisServer().start()
    client = None
    try:
        client = _client(door, server.url, **client_config.kwargs())
        manager = dce.SessionManager(client)
        session = manager.new()
        await call(session.set("a", 1))
        server.stop()
        with pytest.raises(StoreError) as caught:
            await call(manager.open(session.id).get("a"))
        assert isinstance(caught.value.__cause__, redis.RedisError)
        with pytest.raises(StoreError):
            await call(session.set("a", 2))
    finally:
        server.stop()
        if client is not None:
            await _close(client)


async def test_store_error_on_a_wrong_type_key(make_manager: Any, call: Any,
                                               store: Any) -> None:
    sid = generate_sid(60)
    store.set(key(sid), "a string, not a hash")
    with pytest.raises(StoreError) as caught:
        await call(make_manager().open(sid).get("a"))
    assert isinstance(caught.value.__cause__, redis.ResponseError)
    assert sid not in str(caught.value)


# -- wire compatibility ----------------------------------------------------------------------


async def test_reads_a_session_written_by_the_rust_crate(make_manager: Any, call: Any,
                                                         store: Any) -> None:
    sid = generate_sid(30)  # upper case, as the Rust crate writes it
    assert sid == sid.upper()
    written = {
        "name": '"alice"', "n": "42", "big": "18446744073709551615", "list": "[1,2.5,null]",
        "obj": '{"k":{"é":"ü"}}', "$user": '{"id":7,"name":"bob"}',
    }
    store.hset(key(sid), mapping=written)
    store.expire(key(sid), 1800)
    store.expire(key(sid), 1000)  # partly used
    session = make_manager().open(sid)
    assert await call(session.get("name")) == "alice"
    assert await call(session.get("n")) == 42
    assert await call(session.get("big")) == 2**64 - 1
    assert await call(session.get("list")) == [1, 2.5, None]
    assert await call(session.get("obj")) == {"k": {"é": "ü"}}
    assert await call(session.user()) == {"id": 7, "name": "bob"}
    assert await call(session.uid()) == 7
    assert await call(session.raw()) == written
    assert session.newborn is False
    assert session.id == sid
    assert session.ttl_minutes == 30
    assert 1000 < store.ttl(key(sid)) <= 1800  # touched with the sid's own ttl
    await call(session.set("cart", {"items": ["é", 1, 2.5, True, None]}))
    assert store.hget(key(sid), "cart") == '{"items":["é",1,2.5,true,null]}'


async def test_lower_case_sid_is_its_own_key(make_manager: Any, call: Any, store: Any) -> None:
    sid = generate_sid(60).lower()  # as the Go sibling writes it
    store.hset(key(sid), "a", '"go"')
    store.expire(key(sid), 3600)
    manager = make_manager()
    session = manager.open(sid)
    assert await call(session.get("a")) == "go"
    assert session.id == sid
    assert session.key == key(sid)
    assert session.newborn is False
    await call(session.set("b", 1))
    assert store.hgetall(key(sid)) == {"a": '"go"', "b": "1"}
    assert store.keys("*") == [key(sid)]
    other = manager.open(sid.upper())  # a different key: not found
    assert await call(other.get("a")) is None
    assert other.newborn is True
