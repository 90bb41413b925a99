"""Connection sessions (long connections): ``connect`` / ``Connection.request`` /
``disconnect`` and ``connections_of`` (SEMANTICS "Connection session"). Both doors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dce_session.core import generate_sid, is_valid_sid, session_key
from dce_session.errors import ConfigError, StoreError

SERVER = "10.0.0.5:8000"
CLIENT = "203.0.113.9:51000"
USER = {"id": 42, "name": "ada"}


def dce_fields(store: Any, key: str) -> dict[str, str]:
    """The hash without the per-connection bindings field (what dce readers use)."""
    fields = store.hgetall(key)
    fields.pop("$servers", None)
    return fields


def bindings(store: Any, key: str) -> dict[str, list[str | None]]:
    return json.loads(store.hget(key, "$servers") or "{}")


async def _stored_session(manager: Any, call: Any, **data: Any) -> Any:
    session = manager.new()
    await call(session.update(data or {"a": 1}))
    return session


# -- connect -----------------------------------------------------------------


async def test_connect_without_sid_gets_a_fresh_one(make_manager: Any, round_trips: Any) -> None:
    manager = make_manager()
    connection = manager.connect(None, SERVER, CLIENT)
    assert is_valid_sid(connection.id)
    assert connection.server == SERVER
    assert connection.client == CLIENT
    assert manager.connect(None, SERVER).id != connection.id
    assert manager.connect(None, SERVER).client is None
    assert round_trips.count == 0  # connect does no I/O


@pytest.mark.parametrize("bad", ["garbage", "", 12, b"bytes"])
async def test_connect_with_a_malformed_sid_gets_a_fresh_one(make_manager: Any, bad: Any) -> None:
    connection = make_manager().connect(bad, SERVER)
    assert is_valid_sid(connection.id)
    assert connection.id != bad


async def test_connect_with_a_valid_sid_keeps_it(make_manager: Any, call: Any) -> None:
    manager = make_manager()
    session = await _stored_session(manager, call)
    assert manager.connect(session.id, SERVER).id == session.id


@pytest.mark.parametrize(("server", "client"), [
    ("", None), (None, None), (5, None), (b"10.0.0.5", None), (SERVER, 7), (SERVER, b"x"),
])
async def test_connect_rejects_bad_addresses(make_manager: Any, server: Any,
                                             client: Any) -> None:
    with pytest.raises(ConfigError):
        make_manager().connect(None, server, client)


# -- the binding --------------------------------------------------------------


async def test_first_request_writes_the_binding_as_bare_strings(
        make_manager: Any, call: Any, store: Any, round_trips: Any) -> None:
    manager = make_manager()
    session = await _stored_session(manager, call, a=1)
    connection = manager.connect(session.id, SERVER, CLIENT)
    request = connection.request()
    assert request.id == session.id
    round_trips.reset()
    assert await call(request.get("a")) == 1
    assert round_trips.count == 1  # the load carries the binding
    assert dce_fields(store, session.key) == {"a": "1", "$server": SERVER, "$client": CLIENT}
    assert bindings(store, session.key) == {connection.binding_id: [SERVER, CLIENT]}
    assert store.ttl(session.key) > 0


async def test_binding_without_client_writes_only_the_server(
        make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    session = await _stored_session(manager, call, a=1)
    request = manager.connect(session.id, SERVER).request()
    await call(request.set("b", 2))
    assert dce_fields(store, session.key) == {"a": "1", "b": "2", "$server": SERVER}


async def test_later_requests_do_not_rewrite_the_binding(
        make_manager: Any, call: Any, store: Any, round_trips: Any) -> None:
    manager = make_manager()
    session = await _stored_session(manager, call, a=1)
    connection = manager.connect(session.id, SERVER, CLIENT)
    assert await call(connection.request().get("a")) == 1
    store.hset(session.key, mapping={"$server": "moved", "$client": "elsewhere"})
    later = connection.request()
    round_trips.reset()
    assert await call(later.get("a")) == 1
    await call(later.set("b", 2))
    assert round_trips.count == 2
    assert store.hget(session.key, "$server") == "moved"
    assert store.hget(session.key, "$client") == "elsewhere"
    assert store.hget(session.key, "b") == "2"


async def test_newborn_connection_binds_on_its_first_write(
        make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    connection = manager.connect(None, SERVER, CLIENT)
    request = connection.request()
    await call(request.set("a", 1))
    assert request.id == connection.id
    assert is_valid_sid(connection.id)
    assert dce_fields(store, request.key) == {"a": "1", "$server": SERVER, "$client": CLIENT}
    assert store.ttl(request.key) > 0


async def test_request_with_a_carried_sid(make_manager: Any, call: Any) -> None:
    manager = make_manager()
    root = await _stored_session(manager, call, who="root")
    carried = await _stored_session(manager, call, who="carried")
    connection = manager.connect(root.id, SERVER)
    request = connection.request(carried.id)
    assert request.id == carried.id
    assert await call(request.get("who")) == "carried"
    assert connection.id == root.id  # carrying a sid does not re-root the connection
    assert await call(connection.request().get("who")) == "root"
    new_sid = await call(request.login({"id": 5}))
    assert connection.id == new_sid  # its regeneration does


async def test_a_carried_sid_never_takes_the_connections_binding(make_manager: Any, call: Any,
                                                                store: Any) -> None:
    """The binding rides on the first request of the connection's own sid: a
    message carrying another session's sid (or a malformed one) writes none."""
    manager = make_manager()
    root = await _stored_session(manager, call, who="root")
    carried = await _stored_session(manager, call, who="carried")
    connection = manager.connect(root.id, SERVER)
    await call(connection.request(carried.id).set("seen", 1))
    await call(connection.request("garbage").set("k", 1))
    assert bindings(store, carried.key) == {}
    assert len(store.keys("dcesid:*")) == 3  # the garbage sid's write: a fresh session
    assert all(bindings(store, key) == {} for key in store.keys("dcesid:*"))
    assert await call(connection.request().get("who")) == "root"  # its own: bound now
    assert list(bindings(store, root.key).values()) == [[SERVER, None]]
    assert await call(connection.disconnect()) is True
    assert bindings(store, root.key) == {}


async def test_request_with_an_unknown_sid_falls_back_to_a_fresh_session(
        make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    unknown = generate_sid(60)
    connection = manager.connect(unknown, SERVER)
    request = connection.request()
    assert await call(request.get("a")) is None
    assert request.id != unknown
    assert connection.id == request.id
    assert not store.exists(session_key("dcesid", unknown))  # no adoption
    assert request.newborn
    assert store.keys("dcesid:*") == []  # the lone binding of a read wrote nothing
    await call(request.set("a", 1))  # the binding rides on the first write instead
    assert bindings(store, request.key) == {connection.binding_id: [SERVER, None]}


# -- regenerations move the connection --------------------------------------


async def test_login_moves_the_connection(make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    session = await _stored_session(manager, call, a=1)
    connection = manager.connect(session.id, SERVER, CLIENT)
    request = connection.request()
    new_sid = await call(request.login(USER))
    assert new_sid != session.id
    assert connection.id == new_sid
    following = connection.request()
    assert following.id == new_sid
    assert await call(following.get("a")) == 1
    assert await call(following.uid()) == 42
    assert store.hget(session_key("dcesid", new_sid), "$server") == SERVER


async def test_auto_login_and_regenerate_move_the_connection(
        make_manager: Any, call: Any) -> None:
    manager = make_manager()
    connection = manager.connect(None, SERVER)
    first = await call(connection.request().login(USER))
    assert connection.id == first
    second = await call(connection.request().auto_login())
    assert second != first
    assert connection.id == second
    third = await call(connection.request().regenerate({"b": 2}))
    assert third not in (first, second)
    assert connection.id == third
    request = connection.request()
    assert request.id == third
    assert await call(request.get("b")) == 2
    # regenerate keeps the old session, and this connection's binding moves
    assert await call(manager.connections_of(42)) == [(third, SERVER, None)]


async def test_regenerate_leaves_other_connections_on_the_old_sid(
        make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    session = manager.new()
    sid = await call(session.login(USER))
    staying = manager.connect(sid, SERVER)
    await call(staying.request().get("a"))
    moving = manager.connect(sid, "10.0.0.6:8000")
    await call(moving.request().get("a"))
    new_sid = await call(moving.request().regenerate())
    assert (moving.id, staying.id) == (new_sid, sid)
    assert sorted(await call(manager.connections_of(42))) == sorted(
        [(sid, SERVER, None), (new_sid, "10.0.0.6:8000", None)])
    assert list(bindings(store, session_key("dcesid", sid))) == [staying.binding_id]
    plain = await call(manager.open(sid).regenerate())  # not a connection: nothing moves
    assert bindings(store, session_key("dcesid", plain)) == {}
    assert await call(staying.disconnect()) is True
    assert await call(moving.disconnect()) is True
    assert await call(manager.connections_of(42)) == []



# -- connections_of / disconnect ------------------------------------------


async def test_connections_of_lists_bound_live_sessions_only(
        make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    with_client = manager.connect(None, SERVER, CLIENT)
    sid_a = await call(with_client.request().login(USER))
    without_client = manager.connect(None, "10.0.0.6:8000")
    sid_b = await call(without_client.request().login(USER))
    plain = manager.new()
    await call(plain.login(USER))  # logged in but not bound to a connection
    other = manager.connect(None, SERVER)
    await call(other.request().login({"id": 43}))
    dead = manager.connect(None, "10.0.0.7:8000")
    sid_dead = await call(dead.request().login(USER))

    store.delete(session_key("dcesid", sid_dead))
    found = await call(manager.connections_of(42))
    assert sorted(found) == sorted([(sid_a, SERVER, CLIENT), (sid_b, "10.0.0.6:8000", None)])
    index = store.smembers("dceusmap:42")
    assert sid_dead not in index  # pruned
    assert {sid_a, sid_b, plain.id} <= index
    assert await call(manager.connections_of(44)) == []


async def test_disconnect_removes_the_binding(make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    connection = manager.connect(None, SERVER, CLIENT)
    sid = await call(connection.request().login(USER))
    assert await call(manager.connections_of(42)) == [(sid, SERVER, CLIENT)]
    assert await call(connection.disconnect()) is True
    key = session_key("dcesid", sid)
    assert not store.hexists(key, "$server")
    assert not store.hexists(key, "$client")
    assert store.hget(key, "$user") is not None  # the session itself survives
    assert await call(manager.connections_of(42)) == []
    assert await call(manager.sessions_of(42)) == [sid]
    assert await call(connection.disconnect()) is False


async def test_disconnect_of_an_unbound_connection(make_manager: Any, call: Any,
                                                   store: Any) -> None:
    manager = make_manager()
    assert await call(manager.connect(None, SERVER).disconnect()) is False
    assert store.keys("*") == []


async def test_a_fresh_connection_keeps_its_own_sid(make_manager: Any, call: Any,
                                                    store: Any) -> None:
    manager = make_manager()
    connection = manager.connect(None, SERVER, CLIENT)
    sid = connection.id
    first = connection.request()
    assert await call(first.get("x")) is None  # even a read binds the connection
    assert first.id == connection.id == sid
    assert dce_fields(store, session_key("dcesid", sid)) == {"$server": SERVER, "$client": CLIENT}
    assert store.ttl(session_key("dcesid", sid)) > 0
    later = connection.request()
    assert await call(later.get("x")) is None
    assert later.id == sid
    assert not later.newborn


async def test_another_writers_bindings_field_stops_a_binding_write_before_it_writes(
        make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    session = await _stored_session(manager, call)
    store.hset(session.key, "$servers", "not json")
    connection = manager.connect(session.id, SERVER)
    with pytest.raises(StoreError):
        await call(connection.request().set("zz", 1))
    assert store.hget(session.key, "zz") is None  # nothing written
    assert store.hget(session.key, "$servers") == "not json"


@pytest.mark.parametrize("operation", ["login", "regenerate"])
async def test_another_writers_bindings_field_stops_a_renewal_before_it_writes(
        make_manager: Any, call: Any, store: Any, operation: str) -> None:
    manager = make_manager()
    session = await _stored_session(manager, call)
    connection = manager.connect(session.id, SERVER)
    if operation == "regenerate":  # bound: the regeneration moves its binding
        assert await call(connection.request().touch())
    # (a login: the connection's first request, its binding rides on it)
    store.hset(session.key, "$servers", "[1")
    before = {key: store.dump(key) for key in store.keys("*")}
    request = connection.request()
    with pytest.raises(StoreError):
        await call(request.login({"id": 5}) if operation == "login"
                   else request.regenerate({"b": 2}))
    assert {key: store.dump(key) for key in store.keys("*")} == before
