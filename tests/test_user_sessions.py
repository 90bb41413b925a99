"""User sessions (issue 3): login, logout, the user index, sync and logout everywhere.

Both front doors (``door``), every client configuration, a real Redis; what is
stored is checked through the plain ``store`` client. Each call's round trips
are asserted.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pydantic
import pytest
from dce_session.core import generate_sid, parse_sid
from dce_session.errors import (
    InvalidField,
    InvalidUser,
    NotLoggedIn,
    ReservedField,
    SerializationError,
    SessionDestroyed,
)

WEEK = 604800
BIG_UID = 2**64 - 1
SID = re.compile(r"[0-9A-F]{64}[0-9A-F]{4}[0-9A-F]{8,16}")


@dataclasses.dataclass
class DataUser:
    id: int
    name: str
    tags: list[str] = dataclasses.field(default_factory=list)


class ModelUser(pydantic.BaseModel):
    id: int
    name: str
    tags: list[str] = []


class PlainUser:
    def __init__(self, id: int, name: str, tags: list[str] | None = None) -> None:
        self.id = id
        self.name = name
        self.tags = tags or []


USER_SHAPES = {
    "dict": lambda: {"id": 42, "name": "Ann", "tags": ["a", "[b]"]},
    "dataclass": lambda: DataUser(42, "Ann", ["a", "[b]"]),
    "pydantic": lambda: ModelUser(id=42, name="Ann", tags=["a", "[b]"]),
    "object": lambda: PlainUser(42, "Ann", ["a", "[b]"]),
}
ANN = {"id": 42, "name": "Ann", "tags": ["a", "[b]"]}


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def session_keys(store: Any) -> set[str]:
    return set(store.keys("dcesid:*"))


async def stored_session(manager: Any, call: Any, **fields: Any) -> str:
    """A stored session holding ``fields`` (at least one); its sid."""
    session = manager.new()
    await call(session.update(fields or {"seed": 1}))
    return str(session.id)


async def logged_in(manager: Any, call: Any, user: Any, **fields: Any) -> str:
    """A stored session logged in as ``user``; its sid."""
    session = manager.open(await stored_session(manager, call, **fields))
    return str(await call(session.login(user)))


# -- user() / uid() ---------------------------------------------------------


async def test_not_logged_in_user_and_uid_are_none(make_manager, call, round_trips):
    manager = make_manager()
    fresh = manager.new()
    assert await call(fresh.user()) is None
    assert await call(fresh.uid()) is None
    opened = manager.open(await stored_session(manager, call, cart=["x"]))
    round_trips.reset()
    assert await call(opened.user()) is None
    assert await call(opened.uid()) is None
    assert round_trips.count == 1  # one load serves both


@pytest.mark.parametrize("shape", USER_SHAPES)
async def test_login_with_users_of_any_shape(make_manager, call, store, shape):
    manager = make_manager()
    sid = await logged_in(manager, call, USER_SHAPES[shape]())
    assert store.hget(f"dcesid:{sid}", "$user") == compact(ANN)
    again = manager.open(sid)
    assert await call(again.user()) == ANN
    assert await call(again.uid()) == 42


@pytest.mark.parametrize("cls", [DataUser, ModelUser, PlainUser])
async def test_user_loader_returns_the_users_own_type(make_manager, call, cls):
    manager = make_manager(user_loader=lambda document: cls(**document))
    sid = await logged_in(manager, call, cls(id=7, name="Bo", tags=["t"]))
    user = await call(manager.open(sid).user())
    assert type(user) is cls
    assert (user.id, user.name, user.tags) == (7, "Bo", ["t"])
    assert await call(manager.open(sid).uid()) == 7


# -- login ------------------------------------------------------------------


async def test_login_moves_the_data_to_a_fresh_sid(make_manager, call, store, round_trips):
    manager = make_manager()
    old = await stored_session(manager, call, cart=["apple", {"n": 1}], note="hi")
    session = manager.open(old)
    round_trips.reset()
    new = await call(session.login({"id": 5, "name": "Eve"}))
    assert round_trips.count == 1
    assert new != old
    assert session.id == new
    assert SID.fullmatch(new)
    assert store.exists(f"dcesid:{old}") == 0  # dead the moment login returns
    assert session_keys(store) == {f"dcesid:{new}"}
    assert store.hgetall(f"dcesid:{new}") == {
        "cart": compact(["apple", {"n": 1}]),
        "note": compact("hi"),
        "$user": '{"id":5,"name":"Eve"}',
    }
    assert store.type("dceusmap:5") == "set"
    assert store.smembers("dceusmap:5") == {new}
    assert store.ttl("dceusmap:5") >= WEEK - 2
    assert 3600 - 2 <= store.ttl(f"dcesid:{new}") <= 3600
    # the object follows the new sid: reads come from it, writes go to it
    assert await call(session.get("note")) == "hi"
    await call(session.set("after", 1))
    assert store.hget(f"dcesid:{new}", "after") == "1"
    assert store.exists(f"dcesid:{old}") == 0


async def test_login_of_a_loaded_session_is_one_round_trip(make_manager, call, store, round_trips):
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    old = session.id
    round_trips.reset()
    new = await call(session.login({"id": 1}))
    assert round_trips.count == 1
    assert store.exists(f"dcesid:{old}") == 0
    assert store.hgetall(f"dcesid:{new}") == {"a": "1", "$user": '{"id":1}'}


async def test_login_writes_its_changes_in_the_same_step(make_manager, call, store, round_trips):
    manager = make_manager()
    old = await stored_session(manager, call, cart=["apple"], note="hi")
    session = manager.open(old)
    round_trips.reset()
    new = await call(session.login({"id": 5}, changes={"note": None, "greeted": True}))
    assert round_trips.count == 1
    assert store.hgetall(f"dcesid:{new}") == {"cart": '["apple"]', "greeted": "true",
                                              "$user": '{"id":5}'}
    assert await call(session.data()) == {"cart": ["apple"], "greeted": True}
    assert store.exists(f"dcesid:{old}") == 0
    fresh = manager.new()
    new = await call(fresh.login({"id": 6}, changes={"a": 1}))
    assert store.hgetall(f"dcesid:{new}") == {"a": "1", "$user": '{"id":6}'}


@pytest.mark.parametrize(("changes", "error"), [
    ({"$user": {"id": 1}}, ReservedField), ({"$newid": "x"}, ReservedField),
    ({"bad": object()}, SerializationError), ({1: "x"}, InvalidField),
])
async def test_login_refuses_bad_changes_and_writes_nothing(make_manager, call, store,
                                                            round_trips, changes, error):
    manager = make_manager()
    old = await stored_session(manager, call, cart=["apple"])
    session = manager.open(old)
    round_trips.reset()
    with pytest.raises(error):
        await call(session.login({"id": 5}, changes=changes))
    assert round_trips.count == 0
    assert session_keys(store) == {f"dcesid:{old}"}
    assert not store.exists("dceusmap:5")


async def test_login_of_a_newborn_session_creates_a_logged_in_one(make_manager, call, store):
    manager = make_manager()
    session = manager.new()
    new = await call(session.login({"id": 3}))
    assert store.hgetall(f"dcesid:{new}") == {"$user": '{"id":3}'}
    assert store.smembers("dceusmap:3") == {new}
    assert store.ttl(f"dcesid:{new}") > 0


async def test_index_ttl_covers_sessions_longer_than_the_floor(make_manager, call, store):
    manager = make_manager(ttl_minutes=20000)
    sid = await logged_in(manager, call, {"id": 8})
    assert parse_sid(sid)[0] == 20000
    assert store.ttl(f"dcesid:{sid}") >= 20000 * 60 - 2
    assert store.ttl("dceusmap:8") >= 20000 * 60 - 2  # past the 7-day floor


async def test_index_ttl_floor_is_configurable(make_manager, call, store):
    manager = make_manager(mapping_ttl_seconds=90000)
    await logged_in(manager, call, {"id": 8})
    assert 90000 - 2 <= store.ttl("dceusmap:8") <= 90000


async def test_login_with_its_own_ttl(make_manager, call, store):
    manager = make_manager()
    session = manager.open(await stored_session(manager, call))
    new = await call(session.login({"id": 4}, ttl_minutes=5))
    assert parse_sid(new)[0] == 5
    assert session.ttl_minutes == 5
    assert 298 <= store.ttl(f"dcesid:{new}") <= 300
    assert store.ttl("dceusmap:4") >= WEEK - 2


async def test_login_as_another_user_moves_the_index_entry(make_manager, call, store):
    manager = make_manager()
    first = await logged_in(manager, call, {"id": 1}, cart=[1])
    session = manager.open(first)
    second = await call(session.login({"id": 2}))
    assert store.smembers("dceusmap:1") == set()
    assert store.smembers("dceusmap:2") == {second}
    assert store.hgetall(f"dcesid:{second}") == {"cart": "[1]", "$user": '{"id":2}'}
    assert session_keys(store) == {f"dcesid:{second}"}
    assert await call(manager.sessions_of(1)) == []
    # the same on a loaded object, logged in twice in a row
    third = await call(session.login({"id": 1}))
    assert store.smembers("dceusmap:2") == set()
    assert store.smembers("dceusmap:1") == {third}
    assert await call(session.uid()) == 1


BAD_USERS = {
    "no id": {"name": "x"},
    "id str": {"id": "1"},
    "id bool": {"id": True},
    "id negative": {"id": -1},
    "id 2**64": {"id": 2**64},
    "id float": {"id": 1.0},
    "id None": {"id": None},
    "object without id": PlainUser.__new__(PlainUser),
    "dataclass bool id": DataUser(True, "x"),  # type: ignore[arg-type]
    "not a user": 42,
}


@pytest.mark.parametrize("bad", BAD_USERS)
async def test_invalid_user_writes_nothing(make_manager, call, store, round_trips, bad):
    manager = make_manager()
    old = await stored_session(manager, call, a=1)
    session = manager.open(old)
    before = {key: store.hgetall(key) for key in store.keys("*")}
    round_trips.reset()
    with pytest.raises(InvalidUser):
        await call(session.login(BAD_USERS[bad]))
    with pytest.raises(InvalidUser):
        await call(manager.sync(BAD_USERS[bad]))
    assert round_trips.count == 0
    assert {key: store.hgetall(key) for key in store.keys("*")} == before
    assert session.id == old


@pytest.mark.parametrize("uid", ["1", True, -1, 2**64, 1.0, None])
async def test_invalid_uid_in_manager_calls(make_manager, call, round_trips, uid):
    manager = make_manager()
    for method in (manager.sessions_of, manager.logout_everywhere):
        with pytest.raises(InvalidUser):
            await call(method(uid))
    assert round_trips.count == 0


async def test_largest_uid_end_to_end(make_manager, call, store, round_trips):
    manager = make_manager()
    user = {"id": BIG_UID, "name": "max"}
    sid = await logged_in(manager, call, user)
    index = "dceusmap:18446744073709551615"
    assert store.smembers(index) == {sid}
    assert store.hget(f"dcesid:{sid}", "$user") == '{"id":18446744073709551615,"name":"max"}'
    session = manager.open(sid)
    assert await call(session.uid()) == BIG_UID
    assert await call(session.user()) == user
    round_trips.reset()
    assert await call(manager.sessions_of(BIG_UID)) == [sid]
    assert await call(manager.sync({"id": BIG_UID, "name": "renamed"})) == 1
    assert round_trips.count == 2
    assert await call(manager.open(sid).user()) == {"id": BIG_UID, "name": "renamed"}
    # 2**64-2 shares every digit but the last: it is another user
    assert await call(manager.sessions_of(BIG_UID - 1)) == []
    assert await call(manager.logout_everywhere(BIG_UID)) == 1
    assert store.exists(f"dcesid:{sid}", index) == 0


# -- auto_login ------------------------------------------------------------------


@pytest.mark.parametrize("loaded", [False, True])
async def test_auto_login_keeps_the_user_under_a_new_sid(
    make_manager, call, store, round_trips, loaded
):
    manager = make_manager()
    old = await logged_in(manager, call, {"id": 6, "name": "Al"}, cart=["c"])
    session = manager.open(old)
    if loaded:
        assert await call(session.uid()) == 6
    round_trips.reset()
    new = await call(session.auto_login())
    assert round_trips.count == 1
    assert new != old
    assert session.id == new
    assert store.exists(f"dcesid:{old}") == 0
    assert store.hgetall(f"dcesid:{new}") == {"cart": '["c"]', "$user": '{"id":6,"name":"Al"}'}
    assert store.smembers("dceusmap:6") == {new}
    assert await call(session.user()) == {"id": 6, "name": "Al"}


@pytest.mark.parametrize("loaded", [False, True])
async def test_auto_login_without_a_user_changes_nothing(make_manager, call, store, loaded):
    manager = make_manager()
    old = await stored_session(manager, call, cart=["c"])
    session = manager.open(old)
    if loaded:
        assert await call(session.user()) is None
    before = {key: store.hgetall(key) for key in store.keys("*")}
    with pytest.raises(NotLoggedIn):
        await call(session.auto_login())
    assert session.id == old
    assert {key: store.hgetall(key) for key in store.keys("*")} == before
    assert await call(session.get("cart")) == ["c"]


async def test_auto_login_of_a_newborn_session_is_not_logged_in(
    make_manager, call, store, round_trips
):
    manager = make_manager()
    session = manager.new()
    round_trips.reset()
    with pytest.raises(NotLoggedIn):
        await call(session.auto_login())
    assert round_trips.count == 0
    assert store.dbsize() == 0


# -- logout / destroy --------------------------------------------------------------


@pytest.mark.parametrize("loaded", [False, True])
async def test_logout(make_manager, call, store, round_trips, loaded):
    manager = make_manager()
    sid = await logged_in(manager, call, {"id": 9}, cart=["c"], note="n")
    other = await logged_in(manager, call, {"id": 9})
    session = manager.open(sid)
    if loaded:
        assert await call(session.uid()) == 9
    round_trips.reset()
    assert await call(session.logout()) is True
    assert round_trips.count == 1
    assert store.hgetall(f"dcesid:{sid}") == {"cart": '["c"]', "note": '"n"'}
    assert store.smembers("dceusmap:9") == {other}
    assert await call(session.user()) is None
    assert await call(session.uid()) is None
    assert await call(session.logout()) is False
    assert await call(manager.open(sid).logout()) is False
    assert store.hgetall(f"dcesid:{sid}") == {"cart": '["c"]', "note": '"n"'}


async def test_logout_of_a_session_never_logged_in(make_manager, call, store):
    manager = make_manager()
    assert await call(manager.new().logout()) is False
    sid = await stored_session(manager, call, a=1)
    assert await call(manager.open(sid).logout()) is False
    assert store.hgetall(f"dcesid:{sid}") == {"a": "1"}


@pytest.mark.parametrize("ending", ["login", "destroy", "expiry"])
async def test_logout_of_a_session_ended_since_it_was_loaded_is_session_destroyed(
    make_manager, call, store, ending
):
    """A logout is a write: on a session this object found stored and another
    request ended since, SessionDestroyed, nothing written (SEMANTICS 3.4); a
    fresh open of the same sid is newborn: False."""
    manager = make_manager()
    sid = await logged_in(manager, call, {"id": 11})
    stale = manager.open(sid)
    assert await call(stale.uid()) == 11
    if ending == "login":
        await call(manager.open(sid).login({"id": 11}))
    elif ending == "destroy":
        await call(manager.open(sid).destroy())
    else:
        store.delete(f"dcesid:{sid}")
    before = {key: store.type(key) for key in store.keys("*")}
    with pytest.raises(SessionDestroyed):
        await call(stale.logout())
    assert {key: store.type(key) for key in store.keys("*")} == before
    assert await call(manager.open(sid).logout()) is False


async def test_destroy_of_a_logged_in_session_leaves_the_index(
    make_manager, call, store, round_trips
):
    manager = make_manager()
    sid = await logged_in(manager, call, {"id": 10})
    other = await logged_in(manager, call, {"id": 10})
    session = manager.open(sid)
    round_trips.reset()
    assert await call(session.destroy()) is True
    assert round_trips.count == 1
    assert store.exists(f"dcesid:{sid}") == 0
    assert store.smembers("dceusmap:10") == {other}
    assert await call(manager.open(other).destroy()) is True
    assert store.exists("dceusmap:10") == 0


# -- sessions_of / sync / logout_everywhere ------------------------------------------


async def dead_and_live(manager: Any, call: Any, store: Any) -> tuple[set[str], set[str]]:
    """Sessions of user 11: three live, and four index entries that are dead."""
    live = {await logged_in(manager, call, {"id": 11}, n=i) for i in range(3)}
    deleted = await logged_in(manager, call, {"id": 11})
    store.delete(f"dcesid:{deleted}")
    expired = await logged_in(manager, call, {"id": 11})
    store.expire(f"dcesid:{expired}", 0)  # expires at once, no waiting
    logged_out = await logged_in(manager, call, {"id": 11}, keep=1)
    store.hdel(f"dcesid:{logged_out}", "$user")  # logged out behind our back
    stolen = await logged_in(manager, call, {"id": 12})
    store.sadd("dceusmap:11", stolen)  # an entry whose session holds another user
    assert store.scard("dceusmap:11") == 7
    return live, {deleted, expired, logged_out, stolen}


async def test_sessions_of_prunes_dead_sids_in_the_same_call(
    make_manager, call, store, round_trips
):
    manager = make_manager()
    live, _ = await dead_and_live(manager, call, store)
    round_trips.reset()
    assert set(await call(manager.sessions_of(11))) == live
    assert round_trips.count == 1
    assert store.smembers("dceusmap:11") == live
    assert len(await call(manager.sessions_of(12))) == 1
    assert await call(manager.sessions_of(404)) == []


async def test_sync_writes_every_live_session_and_prunes(make_manager, call, store, round_trips):
    manager = make_manager()
    live, dead = await dead_and_live(manager, call, store)
    round_trips.reset()
    assert await call(manager.sync(DataUser(11, "new name", ["x"]))) == 3
    assert round_trips.count == 1
    for sid in live:
        fields = store.hgetall(f"dcesid:{sid}")
        assert fields["$user"] == '{"id":11,"name":"new name","tags":["x"]}'
        assert "n" in fields
    assert store.smembers("dceusmap:11") == live
    for sid in dead:  # none of them was written, none recreated
        fields = store.hgetall(f"dcesid:{sid}")
        assert fields.get("$user") != '{"id":11,"name":"new name","tags":["x"]}'
    assert await call(manager.sync({"id": 404})) == 0
    assert store.exists("dceusmap:404") == 0


async def test_logout_everywhere_destroys_all_and_counts_live(
    make_manager, call, store, round_trips
):
    manager = make_manager()
    live, _ = await dead_and_live(manager, call, store)
    survivors = session_keys(store) - {f"dcesid:{sid}" for sid in live}
    round_trips.reset()
    assert await call(manager.logout_everywhere(11)) == 3
    assert round_trips.count == 1
    assert session_keys(store) == survivors  # the user-12 and logged-out ones stay
    assert store.exists("dceusmap:11") == 0
    assert len(await call(manager.sessions_of(12))) == 1
    assert await call(manager.logout_everywhere(11)) == 0


async def test_one_round_trip_however_many_sessions(make_manager, call, round_trips):
    manager = make_manager()
    for _ in range(40):
        await call(manager.new().login({"id": 13}))
    round_trips.reset()
    assert len(await call(manager.sessions_of(13))) == 40
    assert await call(manager.sync({"id": 13, "v": 2})) == 40
    assert await call(manager.logout_everywhere(13)) == 40
    assert round_trips.count == 3


async def test_glob_characters_are_plain_characters(make_manager, call, store):
    manager = make_manager(sid_name="s*[?]", user_prefix="u?*[a-z]")
    pattern_user = {"id": 1, "name": "*", "q": "?", "class": "[a-z]", "nested": {"id": "*"}}
    one = await logged_in(manager, call, pattern_user, v="*")
    eleven = await logged_in(manager, call, {"id": 11, "name": "[1]"})
    assert store.smembers("u?*[a-z]:1") == {one}
    assert store.hget(f"s*[?]:{one}", "v") == '"*"'
    assert await call(manager.sessions_of(1)) == [one]
    assert await call(manager.sync({**pattern_user, "name": "?*"})) == 1
    assert await call(manager.logout_everywhere(1)) == 1
    assert store.exists(f"s*[?]:{one}", "u?*[a-z]:1") == 0
    assert await call(manager.sessions_of(11)) == [eleven]
    assert await call(manager.open(eleven).user()) == {"id": 11, "name": "[1]"}


# -- the index stays alive --------------------------------------------------------


@pytest.mark.parametrize("how", ["get", "touch", "set"])
async def test_touch_of_a_logged_in_session_keeps_the_index_alive(
    make_manager, call, store, round_trips, how
):
    manager = make_manager(ttl_minutes=20000)
    sid = await logged_in(manager, call, {"id": 14}, a=1)
    store.expire("dceusmap:14", 10)
    store.srem("dceusmap:14", sid)  # even a lost entry comes back with the touch
    session = manager.open(sid)
    round_trips.reset()
    if how == "get":
        assert await call(session.get("a")) == 1
    elif how == "touch":
        assert await call(session.touch()) is True
    else:
        await call(session.set("b", 2))
    assert round_trips.count == 1
    assert store.ttl("dceusmap:14") >= 20000 * 60 - 2
    assert store.smembers("dceusmap:14") == {sid}


async def test_a_touch_never_shortens_the_index(make_manager, call, store):
    long = make_manager(ttl_minutes=20000)
    short = make_manager(ttl_minutes=5)
    await logged_in(long, call, {"id": 15})
    brief = await logged_in(short, call, {"id": 15})
    assert await call(short.open(brief).touch()) is True
    assert store.ttl("dceusmap:15") >= 20000 * 60 - 2


# -- wire compatibility with the Rust and Go services ----------------------------------


@pytest.mark.parametrize("case", ["rust", "go"])
async def test_reads_sessions_written_by_the_reference(make_manager, call, store, case):
    manager = make_manager()
    sid = generate_sid(60)
    if case == "go":
        sid = sid.lower()
    user_json = '{"profile":{"id":5,"tags":["}"]},"name":"Ann \\"A\\"","id":42}'
    store.hset(f"dcesid:{sid}", mapping={"$user": user_json, "cart": '["a",1]'})
    store.expire(f"dcesid:{sid}", 3600)
    store.sadd("dceusmap:42", sid)
    store.expire("dceusmap:42", WEEK)
    session = manager.open(sid)
    assert await call(session.user()) == json.loads(user_json)
    assert await call(session.uid()) == 42
    assert await call(session.get("cart")) == ["a", 1]
    assert session.id == sid
    assert session.newborn is False
    assert await call(manager.sessions_of(42)) == [sid]
    assert await call(manager.sessions_of(5)) == []  # the nested id is not the uid
    new = await call(manager.open(sid).auto_login())
    assert store.exists(f"dcesid:{sid}") == 0
    assert store.smembers("dceusmap:42") == {new}
    assert store.hget(f"dcesid:{new}", "$user") == user_json  # kept byte for byte


async def test_our_sessions_read_as_the_reference_writes_them(make_manager, call, store):
    manager = make_manager()
    session = manager.new()
    await call(session.update({"cart": ["é", 1.5, None], "big": 2**64 - 1, "empty": []}))
    sid = await call(session.login(ModelUser(id=77, name="Zoë")))
    assert SID.fullmatch(sid)  # upper case, as the Rust crate writes
    fields = store.hgetall(f"dcesid:{sid}")
    decoded = {field: json.loads(value) for field, value in fields.items()}
    assert decoded == {
        "cart": ["é", 1.5, None],
        "big": 2**64 - 1,
        "empty": [],
        "$user": {"id": 77, "name": "Zoë", "tags": []},
    }
    assert fields["empty"] == "[]"
    assert fields["big"] == "18446744073709551615"
    assert fields["$user"] == '{"id":77,"name":"Zoë","tags":[]}'
    assert store.type("dceusmap:77") == "set"
    assert store.smembers("dceusmap:77") == {sid}
    assert 0 < store.ttl(f"dcesid:{sid}") <= 3600
    ttl_minutes, created = parse_sid(sid)
    assert (ttl_minutes, int(sid[68:], 16)) == (60, created)
