"""The asyncio front door: the same names as :mod:`dce_session`, over
``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.

``SessionManager.new/open`` are plain calls (sessions load lazily); every
method that talks to Redis is a coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Generator, Iterable, Mapping
from typing import Any, TypeVar

import redis.asyncio
import redis.asyncio.cluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from dce_session import errors
from dce_session._flows import Call, ConnectionCore, Flow, ManagerCore, RenewPolicy, SessionCore
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
from dce_session.errors import *  # noqa: F403  (each front door re-exports every error)
from dce_session.errors import SessionError, StoreError

__all__ = ["Connection", "EventStream", "Presence", "RenewPolicy", "Session", "SessionEvent",
           "SessionManager"]
__all__ += errors.__all__

T = TypeVar("T")
log = logging.getLogger("dce_session")


async def _pipeline(client: Any, call: Pipeline) -> list[Any]:
    # On a cluster each command goes to its key's node (redis-py would otherwise
    # ask the server for the keys of every EVALSHA: COMMAND GETKEYS).
    route = getattr(client, "get_node_from_key", None)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for args, key in zip(call.commands, call.keys, strict=True):
                pipe.execute_command(*args, **({"target_nodes": route(key)} if route else {}))
            return list(await pipe.execute(raise_on_error=False))
    except Exception as error:  # whatever the client raised (cluster errors are no RedisError)
        raise store_error(error) from error


async def _trip(connection: Any, packed: Any) -> Any:
    await connection.send_packed_command(packed)
    return await connection.read_response()


async def _direct(direct: Direct, *command: Any) -> Any:
    connection = await direct.pool.get_connection(*direct.connection_args)

    async def failed(error: BaseException) -> None:
        await connection.disconnect()
        if not direct.retried(connection, error):
            raise error

    try:
        packed = Direct.pack(connection, command)
        return await connection.retry.call_with_retry(lambda: _trip(connection, packed), failed)
    finally:
        await direct.pool.release(connection)


async def _execute(manager: ManagerCore, call: ScriptCall | Command) -> Any:
    direct = direct_for(manager.direct, manager.client, call)
    send = manager.client.execute_command if direct is None else functools.partial(_direct, direct)
    try:
        return await send(*call.wire())
    except NoScriptError:
        fallback = call.fallback()
        if fallback is None:
            raise
        return await send(*fallback)


async def _send(manager: ManagerCore, call: Call) -> Any:
    client = manager.client
    if isinstance(call, Pipeline):
        return await _pipeline(client, call)
    pauses = iter(MIGRATION_PAUSES)
    while True:
        try:
            return await _execute(manager, call)
        except Exception as error:  # whatever the client raised (cluster errors are no RedisError)
            pause = next(pauses, None) if slot_migrating(error) else None
            if pause is None:
                raise store_error(error) from error
            log.debug("slot moving (%s): sent again in %g s", error, pause)
        await asyncio.sleep(pause)


async def run(manager: ManagerCore, flow: Flow[T]) -> T:
    """Drive a flow to its end, one awaited round trip per call it yields; a
    failed call is thrown into the flow (which may carry on without it)."""
    try:
        call = next(flow)
        while True:
            try:
                reply = await _send(manager, call)
            except StoreError as error:
                call = flow.throw(error)
            else:
                call = flow.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class Session(SessionCore):
    """One session; see :class:`dce_session.Session` for each method."""

    __slots__ = ()

    async def _run(self, flow: Flow[T]) -> T:
        return await run(self._manager, flow)

    async def get(self, field: str, default: Any = None) -> Any:
        return await self._run(self._get_flow(field, default, True))

    async def silent_get(self, field: str, default: Any = None) -> Any:
        return await self._run(self._get_flow(field, default, False))

    async def set(self, field: str, value: Any) -> None:
        await self._run(self._set_flow({field: value}, True))

    async def silent_set(self, field: str, value: Any) -> None:
        await self._run(self._set_flow({field: value}, False))

    async def update(self, mapping: Mapping[str, Any], *, delete: Iterable[str] = ()) -> None:
        await self._run(self._set_flow(mapping, True, delete))

    async def delete(self, field: str) -> bool:
        return await self._run(self._delete_flow(field, True))

    async def silent_delete(self, field: str) -> bool:
        return await self._run(self._delete_flow(field, False))

    async def raw(self) -> dict[str, str]:
        return await self._run(self._raw_flow())

    async def data(self) -> dict[str, Any]:
        return await self._run(self._data_flow())

    async def load(self, mapping: Mapping[str, str]) -> None:
        await self._run(self._load_raw_flow(mapping))

    async def touch(self) -> bool:
        return await self._run(self._touch_flow())

    async def ttl_passed(self) -> int | None:
        return await self._run(self._ttl_passed_flow())

    async def destroy(self) -> bool:
        return await self._run(self._destroy_flow())

    async def regenerate(self, changes: Mapping[str, Any] | None = None, *,
                         destroy_old: bool = False, ttl_minutes: int | None = None) -> str:
        return await self._run(self._regenerate_flow(changes, destroy_old, ttl_minutes))

    async def user(self) -> Any:
        return await self._run(self._user_flow())

    async def uid(self) -> int | None:
        return await self._run(self._uid_flow())

    async def login(self, user: Any, ttl_minutes: int | None = None, *,
                    changes: Mapping[str, Any] | None = None) -> str:
        return await self._run(self._login_flow(user, ttl_minutes, changes))

    async def auto_login(self) -> str:
        return await self._run(self._auto_login_flow())

    async def logout(self) -> bool:
        return await self._run(self._logout_flow())

    async def try_renew(self) -> bool:
        return await self._run(self._try_renew_flow())


class Connection(ConnectionCore):
    """The root session of a long connection; see :class:`dce_session.Connection`."""

    __slots__ = ()

    def request(self, sid: str | None = None) -> Session:
        """The session for one message: the connection's sid, or one the message carries."""
        return self._request(Session, sid)

    async def disconnect(self) -> bool:
        return await run(self._manager, self._disconnect_flow(Session))


class Presence:
    """A server's presence, kept alive by an asyncio task (``keep_alive``):
    ``async with manager.keep_alive(server):`` - or ``await start()`` and
    ``await aclose()``, which stops it and forgets the server."""

    def __init__(self, manager: SessionManager, server: str, every: float) -> None:
        self.manager, self.server = manager, server_name(server)
        self.every = seconds(every, "every")
        self._lapse = lapse_for(self.every)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Presence:
        await self.manager.beat(self.server, lapse_seconds=self._lapse)
        self._task = asyncio.create_task(self._beat(), name=f"dce-presence {self.server}")
        return self

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.manager.beat(self.server, lapse_seconds=self._lapse)
            except SessionError as error:  # Redis, or the manager's clock
                log.warning("presence of %s: beat failed (%s)", self.server, error)

    async def aclose(self) -> None:
        """Stop beating and forget the server (its connections drop out at once)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.manager.forget_server(self.server)

    async def __aenter__(self) -> Presence:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class EventStream:
    """Session events as they are published, from the moment it is subscribed:
    ``async with manager.events() as stream`` (or ``stream = await
    manager.events()``) subscribes at once; ``async for event in stream`` then
    yields them (it subscribes itself on its first step if neither was done).
    ``await aclose()`` (or leaving the ``async with``) ends it."""

    def __init__(self, manager: SessionManager, poll: float = 0.5) -> None:
        self._manager, self._poll = manager, seconds(poll, "poll")
        self._pubsub: Any = None
        self._closed = self._reading = False

    async def _subscribe(self) -> None:
        if self._pubsub is not None:
            return
        client = self._manager.client
        try:
            if self._manager.cluster:  # its pubsub needs the slot map: read it first
                await client.initialize()
            pubsub = client.pubsub()
        except (RedisError, RedisClusterException) as error:
            raise store_error(error) from error
        try:
            await pubsub.subscribe(self._manager.events_channel)
            if not subscribed(await pubsub.get_message(timeout=SUBSCRIBE_SECONDS)):
                raise not_subscribed()
        except (RedisError, RedisClusterException, StoreError) as error:
            await pubsub.aclose()
            if isinstance(error, StoreError):
                raise
            raise store_error(error) from error
        self._pubsub = pubsub

    def __await__(self) -> Generator[Any, None, EventStream]:
        return self.__aenter__().__await__()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> SessionEvent:
        self._reading = True
        try:
            if not self._closed:
                await self._subscribe()
            while not self._closed:
                try:
                    message = await self._pubsub.get_message(timeout=self._poll)
                except (RedisError, RedisClusterException) as error:
                    raise store_error(error) from error
                event = received_event(message)
                if event is not None:
                    return event
        finally:
            self._reading = False
        await self._release()
        raise StopAsyncIteration

    async def _release(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await pubsub.aclose()

    async def aclose(self) -> None:
        """End the stream: an ``async for`` on it stops within ``poll`` seconds."""
        self._closed = True
        if not self._reading:  # else the reading step releases it as it stops
            await self._release()

    async def __aenter__(self) -> EventStream:
        await self._subscribe()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class SessionManager(ManagerCore):
    """Sessions in Redis through the caller's asyncio redis-py client."""

    _client_types = (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)
    _cluster_types = (redis.asyncio.cluster.RedisCluster,)
    _plain_client = redis.asyncio.Redis

    def new(self, ttl_minutes: int | None = None) -> Session:
        return Session(self, None, ttl_minutes)

    def open(self, sid: str | None) -> Session:
        return Session(self, sid, None)

    async def sessions_of(self, uid: int) -> list[str]:
        return await run(self, self._sessions_of_flow(uid))

    async def sync(self, user: Any) -> int:
        return await run(self, self._sync_flow(user))

    async def logout_everywhere(self, uid: int) -> int:
        return await run(self, self._logout_everywhere_flow(uid))

    def connect(self, sid: str | None, server: str, client: str | None = None) -> Connection:
        return Connection(self, sid, server, client)

    async def connections_of(self, uid: int) -> list[tuple[str, str, str | None]]:
        return await run(self, self._connections_of_flow(uid))

    async def beat(self, server: str, lapse_seconds: int = LAPSE_SECONDS) -> None:
        await run(self, presence_beat(self, server, lapse_seconds))

    def keep_alive(self, server: str, every: float = BEAT_SECONDS) -> Presence:
        """``async with manager.keep_alive(server):`` keeps its presence alive."""
        return Presence(self, server, every)

    async def forget_server(self, server: str) -> None:
        await run(self, presence_forget(self, server))

    def events(self, poll: float = 0.5) -> EventStream:
        """The session events from the moment the stream is subscribed:
        ``async with manager.events() as stream: async for event in stream``."""
        return EventStream(self, poll)
