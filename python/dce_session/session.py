"""The blocking front door: sessions over ``redis.Redis`` or ``RedisCluster``.

>>> from dce_session import SessionManager
>>> from dce_session.testing import RedisServer
>>> import redis
>>> with RedisServer() as server, redis.Redis.from_url(server.url) as client:
...     manager = SessionManager(client)
...     session = manager.new()
...     session.set("cart", ["apple"])
...     again = manager.open(session.id)
...     again.get("cart"), again.newborn
(['apple'], False)
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import redis
import redis.cluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, SlotNotCoveredError

from dce_session._flows import Call, ConnectionCore, Flow, ManagerCore, SessionCore
from dce_session._flows.calls import (
    MIGRATION_PAUSES,
    Command,
    Direct,
    Pipeline,
    ScriptCall,
    direct_for,
    slot_migrating,
    store_error,
)
from dce_session._flows.connection import (
    BEAT_SECONDS,
    LAPSE_SECONDS,
    SUBSCRIBE_SECONDS,
    SessionEvent,
    lapse_for,
    not_subscribed,
    presence_beat,
    presence_forget,
    received_event,
    seconds,
    server_name,
    subscribed,
)
from dce_session.errors import SessionError, StoreError

__all__ = ["Connection", "EventStream", "Presence", "Session", "SessionEvent", "SessionManager"]

log = logging.getLogger("dce_session")

T = TypeVar("T")


def _pipeline(client: Any, call: Pipeline) -> list[Any]:
    # On a cluster each command goes to its key's node (redis-py would otherwise
    # ask the server for the keys of every EVALSHA: COMMAND GETKEYS).
    route = getattr(client, "get_node_from_key", None)
    try:
        with client.pipeline(transaction=False) as pipe:
            for args, key in zip(call.commands, call.keys, strict=True):
                pipe.execute_command(*args, **({"target_nodes": route(key)} if route else {}))
            return list(pipe.execute(raise_on_error=False))
    except Exception as error:  # whatever the client raised (cluster errors are no RedisError)
        raise store_error(error) from error


def _trip(connection: Any, packed: Any) -> Any:
    connection.send_packed_command(packed)
    return connection.read_response()


def _direct(direct: Direct, *command: Any) -> Any:
    connection = direct.pool.get_connection(*direct.connection_args)

    def failed(error: BaseException) -> None:
        connection.disconnect()
        if not direct.retried(connection, error):
            raise error

    try:
        packed = Direct.pack(connection, command)
        return connection.retry.call_with_retry(lambda: _trip(connection, packed), failed)
    finally:
        direct.pool.release(connection)


def _execute(manager: ManagerCore, call: ScriptCall | Command) -> Any:
    direct = direct_for(manager.direct, manager.client, call)
    send = manager.client.execute_command if direct is None else functools.partial(_direct, direct)
    try:
        return send(*call.wire())
    except NoScriptError:
        fallback = call.fallback()
        if fallback is None:
            raise
        return send(*fallback)


def _send(manager: ManagerCore, call: Call) -> Any:
    client = manager.client
    if isinstance(call, Pipeline):
        return _pipeline(client, call)
    pauses = iter(MIGRATION_PAUSES)
    while True:
        try:
            return _execute(manager, call)
        except Exception as error:  # whatever the client raised (cluster errors are no RedisError)
            pause = next(pauses, None) if slot_migrating(error) else None
            if pause is None:
                if isinstance(error, SlotNotCoveredError) and hasattr(client, "nodes_manager"):
                    client.nodes_manager.initialize()  # else it keeps a stale slot map
                raise store_error(error) from error
            log.debug("slot moving (%s): sent again in %g s", error, pause)
        time.sleep(pause)


def run(manager: ManagerCore, flow: Flow[T]) -> T:
    """Drive a flow to its end, one blocking round trip per call it yields; a
    failed call is thrown into the flow (which may carry on without it)."""
    try:
        call = next(flow)
        while True:
            try:
                reply = _send(manager, call)
            except StoreError as error:
                call = flow.throw(error)
            else:
                call = flow.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class Session(SessionCore):
    """One session. Made by :meth:`SessionManager.new` or :meth:`SessionManager.open`.

    ``id`` is the sid to send to the client whenever it differs from the
    one the client presented; reads come from one load per object.
    ``replaced`` is True when the presented sid, found gone, had been replaced
    by a ``login``/``auto_login``/``regenerate(destroy_old=True)`` less than
    the grace period ago: the client was most likely sent the new sid, so a
    web integration should send no cookie for this one (the session itself is
    newborn as for any unknown sid).
    """

    __slots__ = ()

    def _run(self, flow: Flow[T]) -> T:
        return run(self._manager, flow)

    def get(self, field: str, default: Any = None) -> Any:
        """The JSON-decoded value of ``field`` (``default`` when absent); touches once."""
        return self._run(self._get_flow(field, default, True))

    def silent_get(self, field: str, default: Any = None) -> Any:
        """:meth:`get` without the touch."""
        return self._run(self._get_flow(field, default, False))

    def set(self, field: str, value: Any) -> None:
        """Store ``value`` as JSON in ``field``; touches once."""
        self._run(self._set_flow({field: value}, True))

    def silent_set(self, field: str, value: Any) -> None:
        """:meth:`set` without the touch (a key it creates still gets its TTL)."""
        self._run(self._set_flow({field: value}, False))

    def update(self, mapping: Mapping[str, Any], *, delete: Iterable[str] = ()) -> None:
        """Many :meth:`set` and the ``delete`` fields removed, in one round trip; touches once."""
        self._run(self._set_flow(mapping, True, delete))

    def delete(self, field: str) -> bool:
        """Remove ``field``; True when it existed. Touches once."""
        return self._run(self._delete_flow(field, True))

    def silent_delete(self, field: str) -> bool:
        """:meth:`delete` without the touch."""
        return self._run(self._delete_flow(field, False))

    def raw(self) -> dict[str, str]:
        """Every stored field, undecoded."""
        return self._run(self._raw_flow())

    def data(self) -> dict[str, Any]:
        """Every user value, JSON-decoded, bookkeeping fields left out; touches once."""
        return self._run(self._data_flow())

    def load(self, mapping: Mapping[str, str]) -> None:
        """Write many undecoded fields (str values), without the touch."""
        self._run(self._load_raw_flow(mapping))

    def touch(self) -> bool:
        """Refresh the TTL; False when the session is not stored."""
        return self._run(self._touch_flow())

    def ttl_passed(self) -> int | None:
        """Seconds since the last touch; None when the session is not stored."""
        return self._run(self._ttl_passed_flow())

    def destroy(self) -> bool:
        """Delete the session and its user-index entry; True when it existed."""
        return self._run(self._destroy_flow())

    def regenerate(self, changes: Mapping[str, Any] | None = None, *,
                   destroy_old: bool = False, ttl_minutes: int | None = None) -> str:
        """Copy the data under a new sid (``changes``: value, or None to drop); the new sid.

        The old session stays unless ``destroy_old`` (then it goes in the same
        step, as with login); ``ttl_minutes`` gives the new sid another ttl.
        """
        return self._run(self._regenerate_flow(changes, destroy_old, ttl_minutes))

    def user(self) -> Any:
        """The logged-in user (through ``user_loader`` when set), or None."""
        return self._run(self._user_flow())

    def uid(self) -> int | None:
        """The logged-in user's id, or None."""
        return self._run(self._uid_flow())

    def login(self, user: Any, ttl_minutes: int | None = None, *,
              changes: Mapping[str, Any] | None = None) -> str:
        """Log ``user`` in under a fresh sid (returned); the old session is destroyed.

        ``changes`` (value, or None to drop) are written in the same step, as
        with :meth:`regenerate`.
        """
        return self._run(self._login_flow(user, ttl_minutes, changes))

    def auto_login(self) -> str:
        """Trade the sid of a logged-in session for a fresh one; ``NotLoggedIn`` if none."""
        return self._run(self._auto_login_flow())

    def logout(self) -> bool:
        """Forget the user and its index entry; True when one was logged in."""
        return self._run(self._logout_flow())

    def try_renew(self) -> bool:
        """Rotate the sid when it is due (needs ``renew=``); True: send the new ``id``."""
        return self._run(self._try_renew_flow())


class Connection(ConnectionCore):
    """The root session of a long connection (websocket and the like).

    ``request()`` gives the session of one message; when that session
    regenerates (login, auto_login, regenerate), ``id`` follows it.
    """

    __slots__ = ()

    def request(self, sid: str | None = None) -> Session:
        """The session for one message: the connection's sid, or one the message carries."""
        return self._request(Session, sid)

    def disconnect(self) -> bool:
        """Remove this connection's binding (only this one); True when it was stored."""
        return run(self._manager, self._disconnect_flow(Session))


class Presence:
    """A server's presence, kept alive by a daemon thread (``keep_alive``): one
    beat every ``every`` seconds; ``close()`` (or leaving the ``with`` block)
    stops it and forgets the server, so its connections are no longer
    reported. A beat that fails is logged and retried at the next one."""

    def __init__(self, manager: SessionManager, server: str, every: float) -> None:
        self.manager, self.server = manager, server_name(server)
        self.every = seconds(every, "every")
        self._lapse = lapse_for(self.every)
        self._stopped = threading.Event()
        manager.beat(server, lapse_seconds=self._lapse)
        self._thread = threading.Thread(target=self._beat, name=f"dce-presence {server}",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stopped.wait(self.every):
            try:
                self.manager.beat(self.server, lapse_seconds=self._lapse)
            except SessionError as error:  # Redis, or the manager's clock
                log.warning("presence of %s: beat failed (%s)", self.server, error)

    def close(self) -> None:
        """Stop beating and forget the server (its connections drop out at once)."""
        self._stopped.set()
        self._thread.join()
        self.manager.forget_server(self.server)

    def __enter__(self) -> Presence:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EventStream:
    """Session events as they are published (``SessionManager.events()``),
    subscribed from the moment it is made: iterate it (blocking); ``close()``
    ends the iteration within ``poll`` seconds, from any thread."""

    def __init__(self, manager: SessionManager, poll: float = 0.5) -> None:
        self._poll, self._closed = seconds(poll, "poll"), threading.Event()
        self._reading = False
        self._pubsub: Any = manager.client.pubsub()
        try:
            self._pubsub.subscribe(manager.events_channel)
            if not subscribed(self._pubsub.get_message(timeout=SUBSCRIBE_SECONDS)):
                raise not_subscribed()
        except (RedisError, RedisClusterException, StoreError) as error:
            self._pubsub.close()
            if isinstance(error, StoreError):
                raise
            raise store_error(error) from error

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> SessionEvent:
        self._reading = True
        try:
            while not self._closed.is_set():
                try:
                    message = self._pubsub.get_message(timeout=self._poll)
                except (RedisError, RedisClusterException) as error:
                    self._pubsub.close()
                    raise store_error(error) from error
                event = received_event(message)
                if event is not None:
                    return event
        finally:
            self._reading = False
        self._pubsub.close()
        raise StopIteration

    def close(self) -> None:
        """End the stream: an iteration on it stops within ``poll`` seconds (and
        releases the subscription); none running, it is released now."""
        self._closed.set()
        if not self._reading:  # else the reading thread releases it as it stops
            self._pubsub.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SessionManager(ManagerCore):
    """Sessions in Redis through the caller's blocking redis-py client.

    Settings are described in the README; every one is checked at once
    (``ConfigError``).
    """

    _client_types = (redis.Redis, redis.cluster.RedisCluster)
    _cluster_types = (redis.cluster.RedisCluster,)
    _plain_client = redis.Redis

    def new(self, ttl_minutes: int | None = None) -> Session:
        """A newborn session with a fresh sid; nothing is written yet."""
        return Session(self, None, ttl_minutes)

    def open(self, sid: str | None) -> Session:
        """The session of a sid a client sent; a malformed or unknown one gives a newborn."""
        return Session(self, sid, None)

    def sessions_of(self, uid: int) -> list[str]:
        """The live sids of user ``uid``; dead ones leave the index."""
        return run(self, self._sessions_of_flow(uid))

    def sync(self, user: Any) -> int:
        """Write ``user`` into every live session of its uid; how many."""
        return run(self, self._sync_flow(user))

    def logout_everywhere(self, uid: int) -> int:
        """Destroy every live session of user ``uid``; how many."""
        return run(self, self._logout_everywhere_flow(uid))

    def connect(self, sid: str | None, server: str, client: str | None = None) -> Connection:
        """The root session of a long connection held by ``server`` (e.g. "10.0.0.5:8000")."""
        return Connection(self, sid, server, client)

    def connections_of(self, uid: int) -> list[tuple[str, str, str | None]]:
        """``(sid, server, client)`` of each live connection of user ``uid``."""
        return run(self, self._connections_of_flow(uid))

    def beat(self, server: str, lapse_seconds: int = LAPSE_SECONDS) -> None:
        """One presence beat: ``server``'s connections stay reported for
        ``lapse_seconds`` more (``keep_alive`` beats for you)."""
        run(self, presence_beat(self, server, lapse_seconds))

    def keep_alive(self, server: str, every: float = BEAT_SECONDS) -> Presence:
        """Keep ``server``'s presence alive from a background thread until closed."""
        return Presence(self, server, every)

    def forget_server(self, server: str) -> None:
        """``server``'s connections are no longer reported, at once (it died)."""
        run(self, presence_forget(self, server))

    def events(self, poll: float = 0.5) -> EventStream:
        """The session events published from now on (logout, logout_everywhere,
        destroy, rotate, sync): iterate the returned stream."""
        return EventStream(self, poll)
