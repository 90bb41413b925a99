"""Bad input and bad stored data give our typed errors, never Python's raw ones.

Issue 7, item 1: stored JSON nested too deep for Python (``RecursionError``
inside :mod:`json`), a ``str`` subclass whose ``__str__`` differs from its
text, bytes, ints, huge strings... ``open``/``connect``/``request`` never
raise for a bad sid (SEMANTICS Part 2.6), and a bad sid costs no command.
"""

from __future__ import annotations

from typing import Any

import pytest
from dce_session._flows import decode_value
from dce_session.core import is_valid_sid, parse_sid, session_key
from dce_session.errors import (
    ConfigError,
    InvalidField,
    InvalidUser,
    SerializationError,
    StoreError,
)

DEEP = "[" * 10_000 + "]" * 10_000
DEEP_USER = '{"id": 7, "x": ' + DEEP + "}"


class Shouting(str):
    """A str subclass whose ``__str__`` differs from its text."""

    def __str__(self) -> str:
        return self.upper() + "!"


# -- the decoder itself ----------------------------------------------------


@pytest.mark.parametrize("raw", [DEEP, '{"a":' * 5_000 + "1" + "}" * 5_000, "NaN",
                                 "[Infinity]", "not json", "", "{", "\ud800"])
def test_decode_value_refuses_with_serialization_error(raw: str) -> None:
    with pytest.raises(SerializationError) as excinfo:
        decode_value(raw)
    assert isinstance(excinfo.value.__cause__, (ValueError, RecursionError))


def test_decode_value_reads_what_python_can_nest() -> None:
    assert decode_value("[" * 500 + "]" * 500) is not None
    assert decode_value('{"a": [1, "x", null, true, 1.5]}') == {"a": [1, "x", None, True, 1.5]}


# -- deep stored JSON through the sessions ---------------------------------


async def _stored_with(make_manager: Any, call: Any, store: Any, **raw: str) -> tuple[Any, str]:
    manager = make_manager()
    session = manager.new()
    await call(session.set("kept", 1))
    store.hset(session.key, mapping=raw)
    return manager, session.id


async def test_deep_stored_value_is_serialization_error(make_manager: Any, call: Any,
                                                        store: Any) -> None:
    manager, sid = await _stored_with(make_manager, call, store, deep=DEEP)
    session = manager.open(sid)
    with pytest.raises(SerializationError):
        await call(session.get("deep"))
    with pytest.raises(SerializationError):
        await call(manager.open(sid).data())
    assert await call(manager.open(sid).get("kept")) == 1  # the other fields still read


async def test_deep_stored_user_breaks_no_other_operation(make_manager: Any, call: Any,
                                                          store: Any) -> None:
    manager, sid = await _stored_with(make_manager, call, store, **{"$user": DEEP_USER})
    # Reading another field touches, and the touch looks at $user for the index.
    assert await call(manager.open(sid).get("kept")) == 1
    await call(manager.open(sid).set("more", 2))  # the write commits and reports success
    assert store.hget(f"dcesid:{sid}", "more") == "2"
    assert await call(manager.open(sid).touch()) is True
    with pytest.raises(SerializationError):
        await call(manager.open(sid).user())
    with pytest.raises(SerializationError):
        await call(manager.open(sid).uid())


async def test_deep_stored_user_touch_is_fine(make_manager: Any, call: Any, store: Any) -> None:
    manager, sid = await _stored_with(make_manager, call, store, **{"$user": DEEP_USER})
    assert await call(manager.open(sid).touch()) is True


# -- bad sids: open / connect / request never raise, cost nothing ----------

BAD_SIDS: list[Any] = [
    None, 0, 12345, 3.5, True, b"", object(), ["x"], str,
    "", "x" * 10_000_000, "\ud800" * 80, "A" * 76 + "\x00", "g" * 76,
    Shouting("not a sid"),
]


def _bad_sid_id(value: Any) -> str:
    return f"{type(value).__name__}:{repr(value)[:16]}"


@pytest.mark.parametrize("presented", BAD_SIDS, ids=_bad_sid_id)
async def test_bad_sid_never_raises_and_costs_nothing(make_manager: Any, call: Any,
                                                      commandstats: Any, presented: Any) -> None:
    manager = make_manager()
    commandstats.snapshot()
    opened = manager.open(presented)
    assert opened.newborn is True
    assert is_valid_sid(opened.id)
    assert opened.id != presented
    assert await call(opened.get("a")) is None
    assert await call(opened.user()) is None
    assert await call(opened.raw()) == {}
    assert commandstats.delta() == {}  # a malformed sid costs no command
    # A connection's first request writes the binding, so those cost one write each.
    connection = manager.connect(presented, "10.0.0.1:8000")
    assert is_valid_sid(connection.id)
    assert connection.id != presented
    requested = manager.connect(None, "10.0.0.1:8000").request(presented)
    for session in (connection.request(), requested):
        assert session.newborn is True
        assert is_valid_sid(session.id)
        assert session.id != presented
        assert await call(session.get("a")) is None
        assert await call(session.user()) is None


async def test_touch_of_a_malformed_sid_costs_nothing(make_manager: Any, call: Any,
                                                      commandstats: Any) -> None:
    session = make_manager().open("not a sid")
    commandstats.snapshot()
    assert await call(session.touch()) is False
    assert await call(session.ttl_passed()) is None
    assert commandstats.delta() == {}


async def test_open_of_a_ttl_zero_sid_is_newborn(make_manager: Any, call: Any,
                                                  commandstats: Any) -> None:
    zero = "0" * 76  # the sid shape, but a ttl of 0 minutes: it never lived
    commandstats.snapshot()
    session = make_manager().open(zero)
    assert session.newborn is True
    assert session.id != zero
    assert await call(session.get("a")) is None
    assert commandstats.delta() == {}


async def test_connect_with_a_ttl_zero_sid_keeps_one_session(make_manager: Any,
                                                             call: Any) -> None:
    connection = make_manager().connect("0" * 76, "10.0.0.1:8000")
    assert connection.id != "0" * 76
    await call(connection.request().set("a", 1))
    assert await call(connection.request().get("a")) == 1


async def test_str_subclass_sid_opens_by_its_text(make_manager: Any, call: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    presented = Shouting(session.id)
    assert str(presented) != session.id  # the subclass lies in __str__
    opened = manager.open(presented)
    assert opened.newborn is False
    assert await call(opened.get("a")) == 1
    assert type(opened.id) is str
    assert opened.id == session.id
    connection = manager.connect(presented, "10.0.0.1:8000")
    assert connection.id == session.id
    assert await call(connection.request().get("a")) == 1
    request = manager.connect(None, "10.0.0.1:8000").request(presented)
    assert await call(request.get("a")) == 1


async def test_bytes_of_a_valid_sid_are_not_adopted(make_manager: Any, call: Any,
                                                    store: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    for presented in (session.id.encode(), bytearray(session.id.encode())):
        opened = manager.open(presented)
        assert opened.newborn is True
        assert await call(opened.get("a")) is None
        await call(opened.set("b", 2))
        assert opened.id != session.id
    assert store.hgetall(session.key) == {"a": "1"}


# -- arguments of the wrong shape ----------------------------------------------


NOT_MAPPINGS = [[("a", 1)], None, "ab", 5, {("a", 1)}]


@pytest.mark.parametrize("bad", NOT_MAPPINGS, ids=repr)
@pytest.mark.parametrize("operation", ["update", "load", "regenerate", "login"])
async def test_a_non_mapping_is_serialization_error_with_nothing_written(
        make_manager: Any, call: Any, store: Any, bad: Any, operation: str) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("kept", 1))
    before = store.hgetall(session.key)
    opened = manager.open(session.id)
    attempts = {"update": lambda: opened.update(bad), "load": lambda: opened.load(bad),
                "regenerate": lambda: opened.regenerate(bad),
                "login": lambda: opened.login({"id": 7}, changes=bad)}
    if bad is None and operation in ("regenerate", "login"):  # None: no changes, allowed
        await call(attempts[operation]())
        assert opened.id != session.id
        return
    with pytest.raises(SerializationError, match="mapping"):
        await call(attempts[operation]())
    assert store.hgetall(session.key) == before
    assert store.keys("dcesid:*") == [session.key]


@pytest.mark.parametrize("bad", ["cart", b"cart", 5])
async def test_delete_takes_an_iterable_of_names_not_one_str(make_manager: Any, call: Any,
                                                            store: Any, bad: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.update({"c": 1, "a": 2, "cart": 3}))
    with pytest.raises(InvalidField, match="delete="):
        await call(manager.open(session.id).update({"x": 1}, delete=bad))
    assert set(store.hkeys(session.key)) == {"c", "a", "cart"}  # nothing written
    await call(manager.open(session.id).update({"x": 1}, delete=["cart"]))
    assert set(store.hkeys(session.key)) == {"c", "a", "x"}


@pytest.mark.parametrize("clock", [lambda: "x", lambda: None, lambda: float("nan"),
                                   lambda: True], ids=["str", "None", "nan", "bool"])
async def test_a_clock_that_gives_no_time_is_config_error(make_manager: Any, call: Any,
                                                          store: Any, clock: Any) -> None:
    manager = make_manager(clock=clock)
    with pytest.raises(ConfigError, match="clock"):
        await call(manager.new().set("a", 1))
    assert store.keys("dcesid:*") == []


# -- what a fault or another program leaves behind (the abuse review) ---------


async def test_a_field_that_is_not_utf8_spoils_only_itself(make_manager: Any, call: Any,
                                                           store: Any, client_config: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    store.hset(session.key, "b", b"\xff")
    opened = manager.open(session.id)
    if client_config.decode_responses:  # redis-py itself cannot decode the reply
        with pytest.raises(StoreError):
            await call(opened.get("a"))
        return
    assert await call(opened.get("a")) == 1
    with pytest.raises(SerializationError):
        await call(opened.get("b"))
    assert (await call(opened.raw()))["b"] == "\udcff"


@pytest.mark.parametrize("operation", ["login", "regenerate"])
async def test_an_unknown_sid_never_lends_its_ttl(make_manager: Any, call: Any, store: Any,
                                                  operation: str) -> None:
    """A client-made sid of the longest ttl, unknown to the store: the new
    session gets the manager's ttl, not the client's."""
    manager = make_manager()
    forged = manager.open("A" * 64 + "FFFF" + "00000001")
    if operation == "login":
        new = await call(forged.login({"id": 1}))
    else:
        new = await call(forged.regenerate({"a": 1}))
    assert parse_sid(new)[0] == manager.ttl_minutes
    assert 0 < store.ttl(session_key("dcesid", new)) <= manager.ttl_minutes * 60
    assert forged.newborn
    stored = manager.new(44640)  # a stored long-lived session keeps its ttl
    await call(stored.set("a", 1))
    assert parse_sid(await call(manager.open(stored.id).login({"id": 2})))[0] == 44640


@pytest.mark.parametrize("operation", ["login", "set", "regenerate", "get"])
async def test_a_user_index_of_another_type_is_store_error_with_nothing_written(
        make_manager: Any, call: Any, store: Any, operation: str) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    if operation != "login":
        await call(session.login({"id": 42}))
    store.delete("dceusmap:42")
    store.set("dceusmap:42", "another program's")
    store.expire(session.key, 100)
    before = {key: store.dump(key) for key in store.keys("*") if "~replay" not in key}
    opened = manager.open(session.id)
    attempts = {"login": lambda: opened.login({"id": 42}), "set": lambda: opened.set("b", 2),
                "regenerate": lambda: opened.regenerate(), "get": lambda: opened.get("a")}
    with pytest.raises(StoreError, match="WRONGTYPE"):
        await call(attempts[operation]())
    after = {key: store.dump(key) for key in store.keys("*") if "~replay" not in key}
    assert after == before  # every key as it was: nothing written
    assert store.ttl(session.key) <= 100  # not even a touch


class Exploding:
    """A user object whose id property raises."""

    @property
    def id(self) -> int:
        raise RuntimeError("the database is down")


class BadModel:
    id = 7

    def model_dump(self, mode: str = "python") -> Any:
        return "not a dict"


@pytest.mark.parametrize("user", [Exploding(), BadModel()], ids=["raising", "bad model"])
async def test_a_user_object_that_fails_is_invalid_user(make_manager: Any, call: Any,
                                                        store: Any, user: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    with pytest.raises(InvalidUser):
        await call(manager.open(session.id).login(user))
    with pytest.raises(InvalidUser):
        await call(manager.sync(user))
    assert store.hgetall(session.key) == {"a": "1"}


@pytest.mark.parametrize(("setting", "value"), [("mapping_ttl_seconds", 2**62),
                                                ("uid_field", 'a"b'), ("uid_field", "a\\b")])
async def test_settings_the_scripts_could_not_honour_are_config_errors(
        make_manager: Any, setting: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=setting):
        make_manager(**{setting: value})


async def test_ttl_passed_of_a_key_without_ttl_keeps_it_stored(make_manager: Any, call: Any,
                                                               store: Any) -> None:
    """Another writer's key without a TTL (the reference's silent_set writes them)."""
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    store.persist(session.key)
    opened = manager.open(session.id)
    assert await call(opened.ttl_passed()) == 0
    assert not opened.newborn
    assert opened.id == session.id
    assert await call(opened.get("a")) == 1


async def test_a_clock_that_raises_is_config_error(make_manager: Any, call: Any,
                                                   store: Any) -> None:
    def broken() -> float:
        raise RuntimeError("no time")

    manager = make_manager(clock=broken)
    with pytest.raises(ConfigError, match="clock"):
        await call(manager.new().set("a", 1))
    assert store.keys("dcesid:*") == []


async def test_a_rotation_over_a_user_index_of_another_type_writes_nothing(
        make_manager: Any, call: Any, store: Any) -> None:
    from dce_session import RenewPolicy

    now = [1_800_000_000]
    manager = make_manager(renew=RenewPolicy(), clock=lambda: now[0])
    session = manager.new()
    sid = await call(session.login({"id": 42}))
    store.delete("dceusmap:42")
    store.set("dceusmap:42", "another program's")
    before = {key: store.dump(key) for key in store.keys("*")}
    now[0] += 700  # due
    with pytest.raises(StoreError, match="WRONGTYPE"):
        await call(manager.open(sid).try_renew())
    assert {key: store.dump(key) for key in store.keys("*")} == before
