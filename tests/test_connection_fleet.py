"""Connections for websocket fleets (issue 9): one binding per connection,
server presence (lapse and forget_server), and session events published by
the scripts that make the changes. Both doors."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dce_session import RenewPolicy, SessionEvent
from dce_session.errors import ConfigError, ReservedField

A, B = "10.0.0.1:8000", "10.0.0.2:8000"
USER = {"id": 42}


async def logged_in(manager: Any, call: Any, **data: Any) -> str:
    session = manager.new()
    if data:
        await call(session.update(data))
    return str(await call(session.login(USER)))


async def bind(manager: Any, call: Any, sid: str, server: str, client: str) -> Any:
    connection = manager.connect(sid, server, client)
    assert await call(connection.request().touch())
    return connection


async def test_two_tabs_on_two_servers_are_two_bindings(make_manager: Any, call: Any,
                                                        store: Any) -> None:
    manager = make_manager()
    sid = await logged_in(manager, call)
    tab_a = await bind(manager, call, sid, A, "1.1.1.1:1")
    tab_b = await bind(manager, call, sid, B, "2.2.2.2:2")
    assert sorted(await call(manager.connections_of(42))) == [
        (sid, A, "1.1.1.1:1"), (sid, B, "2.2.2.2:2")]
    assert store.hget(f"dcesid:{sid}", "$server") == B  # the dce field: the latest binding
    assert await call(tab_b.disconnect()) is True
    assert await call(manager.connections_of(42)) == [(sid, A, "1.1.1.1:1")]
    assert store.hget(f"dcesid:{sid}", "$server") == A
    assert await call(tab_b.disconnect()) is False  # only its own, once
    assert await call(tab_a.disconnect()) is True
    assert await call(manager.connections_of(42)) == []
    assert store.hgetall(f"dcesid:{sid}") == {"$user": '{"id":42}'}


async def test_bindings_follow_a_rotation_and_a_disconnect_through_the_old_sid(
        make_manager: Any, call: Any, store: Any) -> None:
    now = [1_800_000_000]
    manager = make_manager(renew=RenewPolicy(), clock=lambda: now[0])
    sid = await logged_in(manager, call)
    tab_a = await bind(manager, call, sid, A, "1.1.1.1:1")
    tab_b = await bind(manager, call, sid, B, "2.2.2.2:2")
    now[0] += 600
    message = tab_a.request()
    assert await call(message.try_renew()) is True
    new = message.id
    assert tab_a.id == new
    assert tab_b.id == sid  # tab B has not heard of the rotation yet
    assert sorted(await call(manager.connections_of(42))) == [
        (new, A, "1.1.1.1:1"), (new, B, "2.2.2.2:2")]
    assert await call(tab_b.disconnect()) is True  # forwarded to the successor
    assert await call(manager.connections_of(42)) == [(new, A, "1.1.1.1:1")]


async def test_a_lapsed_or_forgotten_server_is_not_reported(make_manager: Any, call: Any,
                                                            store: Any) -> None:
    now = [1_800_000_000]
    manager = make_manager(clock=lambda: now[0])
    sid = await logged_in(manager, call)
    await bind(manager, call, sid, A, "1.1.1.1:1")
    await bind(manager, call, sid, B, "2.2.2.2:2")
    await call(manager.beat(A, lapse_seconds=15))
    now[0] += 15
    assert len(await call(manager.connections_of(42))) == 2
    now[0] += 1  # A stopped beating: lapsed
    assert await call(manager.connections_of(42)) == [(sid, B, "2.2.2.2:2")]
    await call(manager.beat(A, lapse_seconds=15))  # back
    assert len(await call(manager.connections_of(42))) == 2
    await call(manager.forget_server(B))  # B died: gone at once
    assert await call(manager.connections_of(42)) == [(sid, A, "1.1.1.1:1")]
    assert store.ttl("dcesid~presence") > 0


async def test_keep_alive_beats_and_forgets_on_close(make_manager: Any, store: Any,
                                                     door: str) -> None:
    manager = make_manager()
    if door == "sync":
        with manager.keep_alive(A, every=0.05) as presence:
            assert presence.server == A
            assert store.zscore("dcesid~presence", A) > manager.now()
    else:
        async with manager.keep_alive(A, every=0.05) as presence:
            assert presence.server == A
            assert store.zscore("dcesid~presence", A) > manager.now()
            await asyncio.sleep(0.12)  # a beat or two happen in the background task
            assert store.zscore("dcesid~presence", A) > manager.now()
    assert store.zscore("dcesid~presence", A) == 0  # a clean stop forgets the server


async def test_the_bindings_field_is_reserved(make_manager: Any, call: Any) -> None:
    session = make_manager().new()
    with pytest.raises(ReservedField):
        await call(session.set("$servers", {}))


# -- events ---------------------------------------------------------------------------


class Listener:
    """Collects the events of a manager's stream in the background."""

    def __init__(self, manager: Any, door: str) -> None:
        self.events: queue.Queue[SessionEvent] = queue.Queue()
        self.stream = manager.events(poll=0.05)
        self.door = door
        self.task: Any = None

    async def start(self, store: Any) -> None:
        subscribed = threading.Event()
        if self.door == "sync":
            def listen() -> None:
                for event in self.stream:
                    self.events.put(event)
            self.task = threading.Thread(target=listen, daemon=True)
            self.task.start()
        else:
            async def listen() -> None:
                async for event in self.stream:
                    self.events.put(event)
            self.task = asyncio.create_task(listen())
        while store.pubsub_numsub("dcesid~events")[0][1] == 0:  # subscribed
            subscribed.wait(0.01)
            await asyncio.sleep(0)

    async def next(self) -> SessionEvent:
        for _ in range(200):
            try:
                return self.events.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.01)
        raise AssertionError("no event within 2 s")

    async def stop(self) -> None:
        if self.door == "sync":
            self.stream.close()
            self.task.join(timeout=2)
        else:
            await self.stream.aclose()
            await asyncio.wait_for(self.task, 2)


@pytest.fixture
async def listener(make_manager: Any, door: str, store: Any) -> Iterator[Any]:
    now = [1_800_000_000]
    manager = make_manager(renew=RenewPolicy(), clock=lambda: now[0])
    manager.test_now = now
    watching = Listener(manager, door)
    await watching.start(store)
    yield manager, watching
    await watching.stop()


async def test_every_ending_and_change_is_published(listener: Any, call: Any) -> None:
    manager, watching = listener
    anonymous = manager.new()
    await call(anonymous.set("cart", [1]))
    first = await call(anonymous.login(USER))
    event = await watching.next()  # a login ends the stored sid: its sockets follow
    assert (event.kind, event.new_sid, event.uid) == ("rotate", first, 42)  # to its user
    assert event.sid != first
    second = await logged_in(manager, call)  # a newborn's login ends nothing: no event
    assert await call(manager.sync({"id": 42, "name": "new"})) == 2
    event = await watching.next()
    assert (event.kind, event.uid, sorted(event.sids)) == ("sync", 42, sorted([first, second]))
    assert await call(manager.open(first).logout()) is True
    event = await watching.next()
    assert (event.kind, event.sid, event.uid) == ("logout", first, 42)
    assert await call(manager.open(first).destroy()) is True
    event = await watching.next()
    assert (event.kind, event.sid) == ("destroy", first)
    manager.test_now[0] += 600
    rotating = manager.open(second)
    assert await call(rotating.try_renew()) is True
    event = await watching.next()
    assert (event.kind, event.sid, event.new_sid) == ("rotate", second, rotating.id)
    assert await call(manager.logout_everywhere(42)) == 1
    event = await watching.next()
    assert (event.kind, event.uid, event.sids) == ("logout_everywhere", 42, (rotating.id,))
    assert event.concerns(rotating.id)


async def test_many_session_events_are_json_whatever_the_index_holds(
        listener: Any, call: Any, store: Any) -> None:
    """sync/logout_everywhere list every sid in one event: a member another
    writer put in the index (quotes, backslash) is escaped, never breaking it."""
    manager, watching = listener
    sids = [await logged_in(manager, call) for _ in range(3)]
    odd = 'another "writer\\s'
    store.sadd("dceusmap:42", odd)
    store.hset(f"dcesid:{odd}", "$user", json.dumps({"id": 42}))
    for operation, kind in ((manager.sync({"id": 42, "name": "n"}), "sync"),
                            (manager.logout_everywhere(42), "logout_everywhere")):
        assert await call(operation) == 4
        event = await watching.next()
        assert (event.kind, event.uid, sorted(event.sids)) == (kind, 42, sorted([*sids, odd]))
    sid = await logged_in(manager, call)
    assert await call(manager.sync({"id": 42})) == 1
    event = await watching.next()
    assert (event.kind, event.sids) == ("sync", (sid,))


async def test_no_event_for_a_change_that_did_not_happen(listener: Any, call: Any) -> None:
    manager, watching = listener
    assert await call(manager.logout_everywhere(42)) == 0
    assert await call(manager.new().destroy()) is False
    assert await call(manager.sync({"id": 42})) == 0
    sid = await logged_in(manager, call)
    assert await call(manager.open(sid).destroy()) is True
    event = await watching.next()  # the first event is the only real change
    assert (event.kind, event.sid) == ("destroy", sid)


async def test_a_session_bound_by_another_dce_service_is_listed(make_manager: Any, call: Any,
                                                                store: Any) -> None:
    """The Rust crate binds with $server/$client only: still reported, once."""
    manager = make_manager()
    sid = await logged_in(manager, call)
    store.hset(f"dcesid:{sid}", mapping={"$server": A, "$client": "9.9.9.9:9"})
    assert await call(manager.connections_of(42)) == [(sid, A, "9.9.9.9:9")]
    await bind(manager, call, sid, B, "2.2.2.2:2")  # ours takes over the dce fields
    assert await call(manager.connections_of(42)) == [(sid, B, "2.2.2.2:2")]


# -- the stream itself ----------------------------------------------------------------


async def _first_event(stream: Any, door: str) -> SessionEvent:
    """The stream's next event; the stream closed after 2 s (a failure, not a hang)."""
    if door == "sync":
        timer = threading.Timer(2, stream.close)
        timer.start()
        try:
            return next(stream)  # type: ignore[no-any-return]
        finally:
            timer.cancel()
    return await asyncio.wait_for(anext(stream), 2)  # type: ignore[no-any-return]


async def test_a_stream_reports_what_follows_its_making_without_a_listener_running(
        make_manager: Any, call: Any, door: str) -> None:
    """Made (async: awaited), the stream is subscribed: a change made right after,
    before anything iterates it, is its first event."""
    manager = make_manager()
    sid = await logged_in(manager, call)
    stream = await call(manager.events(poll=0.05))
    try:
        assert await call(manager.open(sid).destroy()) is True
        event = await _first_event(stream, door)
        assert (event.kind, event.sid, event.uid) == ("destroy", sid, 42)
    finally:
        await call(stream.close() if door == "sync" else stream.aclose())


async def test_a_stream_used_as_a_with_block_is_subscribed_inside_and_ended_after(
        make_manager: Any, call: Any, door: str) -> None:
    manager = make_manager()
    sid = await logged_in(manager, call)
    if door == "sync":
        with manager.events(poll=0.05) as stream:
            assert manager.logout_everywhere(42) == 1
            event = await _first_event(stream, door)
        with pytest.raises(StopIteration):  # left: ended
            next(stream)
    else:
        async with manager.events(poll=0.05) as stream:
            assert await manager.logout_everywhere(42) == 1
            event = await _first_event(stream, door)
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
    assert (event.kind, event.sids) == ("logout_everywhere", (sid,))


async def test_a_closed_stream_stops(make_manager: Any, call: Any, door: str) -> None:
    manager = make_manager()
    stream = await call(manager.events(poll=0.05))
    await call(stream.close() if door == "sync" else stream.aclose())
    sid = await logged_in(manager, call)
    assert await call(manager.open(sid).destroy()) is True
    stop = StopIteration if door == "sync" else StopAsyncIteration
    with pytest.raises(stop):
        await call(next(stream) if door == "sync" else anext(stream))


async def test_a_foreign_message_on_the_channel_is_dropped_with_a_warning(
        make_manager: Any, call: Any, door: str, store: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    manager = make_manager()
    sid = await logged_in(manager, call)
    stream = await call(manager.events(poll=0.05))
    try:
        with caplog.at_level("WARNING", logger="dce_session"):
            store.publish("dcesid~events", "not json")
            store.publish("dcesid~events", json.dumps({"no": "event"}))
            store.publish("dcesid~events", '{"event": "x", "uid": Infinity}')
            assert await call(manager.open(sid).destroy()) is True
            event = await _first_event(stream, door)
        assert (event.kind, event.sid) == ("destroy", sid)
        dropped = [r for r in caplog.records if "no session event, dropped" in r.getMessage()]
        assert len(dropped) == 3
    finally:
        await call(stream.close() if door == "sync" else stream.aclose())


@pytest.mark.parametrize("poll", [0, -1, float("nan"), "1", True, None])
async def test_events_refuses_a_bad_poll(make_manager: Any, poll: Any) -> None:
    with pytest.raises(ConfigError, match="poll"):
        make_manager().events(poll=poll)


@pytest.mark.parametrize(("server", "lapse"), [(None, 15), ("", 15), (5, 15),
                                               (A, 0), (A, -5), (A, "x"), (A, True)])
async def test_presence_refuses_bad_input_and_writes_nothing(
        make_manager: Any, call: Any, store: Any, server: Any, lapse: Any) -> None:
    manager = make_manager()
    with pytest.raises(ConfigError):
        await call(manager.beat(server, lapse_seconds=lapse))
    if lapse == 15:
        with pytest.raises(ConfigError, match="server"):
            await call(manager.forget_server(server))
    assert not store.exists("dcesid~presence")


@pytest.mark.parametrize("every", [0, -1, float("inf"), "5", None])
async def test_keep_alive_refuses_a_bad_period(make_manager: Any, store: Any,
                                               every: Any) -> None:
    with pytest.raises(ConfigError, match="every"):
        make_manager().keep_alive(A, every=every)
    assert not store.exists("dcesid~presence")


# -- a connection that did not see its sid change ---------------------------------------


@pytest.mark.parametrize("change", ["login", "auto_login", "rotation past grace"])
async def test_a_connection_left_on_an_old_sid_still_disconnects(
        make_manager: Any, call: Any, change: str) -> None:
    """Another request moved the session (the bindings moved with the data);
    this connection's id is still the old sid: its disconnect finds its
    binding where the data went, and leaves the other tab's."""
    now = [1_800_000_000]
    manager = make_manager(renew=RenewPolicy(), clock=lambda: now[0])
    sid = await logged_in(manager, call)
    mover = await bind(manager, call, sid, A, "1.1.1.1:1")
    idle = await bind(manager, call, sid, B, "2.2.2.2:2")
    if change == "login":
        new = await call(mover.request().login({"id": 43}))
    elif change == "auto_login":
        new = await call(manager.open(sid).auto_login())
    else:
        now[0] += 601
        rotating = manager.open(sid)
        assert await call(rotating.try_renew()) is True
        new = rotating.id
        now[0] += 600  # the old sid is superseded: no forwarding any more
    uid = 43 if change == "login" else 42
    assert idle.id == sid != new
    assert sorted(server for _, server, _ in await call(manager.connections_of(uid))) == [A, B]
    assert await call(idle.disconnect()) is True
    assert await call(manager.connections_of(uid)) == [(new, A, "1.1.1.1:1")]
    assert await call(idle.disconnect()) is False  # gone: nothing more to remove


async def test_a_stream_closed_without_reading_releases_its_subscription(
        make_manager: Any, call: Any, door: str, store: Any) -> None:
    manager = make_manager()
    if door == "sync":
        with manager.events(poll=0.05):
            assert store.pubsub_numsub("dcesid~events")[0][1] == 1
    else:
        async with manager.events(poll=0.05):
            assert store.pubsub_numsub("dcesid~events")[0][1] == 1
    for _ in range(100):  # the server sees the UNSUBSCRIBE / closed connection
        if store.pubsub_numsub("dcesid~events")[0][1] == 0:
            break
        await asyncio.sleep(0.01)
    assert store.pubsub_numsub("dcesid~events")[0][1] == 0
