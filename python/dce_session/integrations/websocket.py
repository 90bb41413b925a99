"""Websockets on a fleet of Starlette / FastAPI servers: bindings, events, routing.

:class:`SocketHub` is a helper (not a middleware: it works with or without
:mod:`dce_session.integrations.starlette`). One hub per process:

- ``await hub.accept(websocket)`` reads the session cookie itself
  (``websocket.cookies[session_cookie]``, default ``"session"`` as Starlette's),
  binds a :class:`dce_session.asyncio.Connection` for this server in ONE store
  call (the binding rides on the first read, which also gives the uid), then
  accepts the socket and registers it by sid and uid. A missing, malformed or
  unknown sid is never adopted: the socket is refused (close code 1008 before
  the handshake completes, an HTTP 403 to the client), and so is a session
  with no user when ``require_user=True``.
- leaving ``async with socket:`` (normally, on ``WebSocketDisconnect``, on any
  error) removes exactly this socket's binding and unregisters it.
- ``async with hub:`` (or ``await hub.start()`` / ``await hub.aclose()``, e.g.
  from a lifespan) keeps this server's presence alive
  (``manager.keep_alive``), listens to this server's routing channel and,
  with ``watch_events=True``, runs ONE ``manager.events()`` listener for the
  process: a ``destroy``, ``logout`` or ``logout_everywhere`` that concerns a
  registered socket's session calls ``on_session_end(socket, event)``
  (default: close the socket with code 4401), a ``rotate`` moves the socket
  to the new sid, and every event concerning a socket is passed to
  ``on_event(socket, event)`` when given.
- ``await hub.send_to_user(uid, data)`` sends ``data`` (JSON) to every socket
  of that user in the fleet: the sockets here directly, and for each other
  server that ``manager.connections_of(uid)`` names, ONE ``PUBLISH`` on that
  server's channel ``<sid_name>~socket~<server>`` (``dcesid~socket~...`` by
  default), which that server's hub delivers to its sockets of the user.
  Delivery is at most once, like Redis pub/sub: a server that is not
  listening (dead, or gone since) counts in ``Delivery.unreachable``.

A FastAPI app (``uvicorn app:app``; the full two-server version is
``examples/fleet``)::

    import contextlib
    import redis.asyncio
    from fastapi import FastAPI, WebSocket
    import dce_session.asyncio
    from dce_session.integrations.websocket import SocketHub

    manager = dce_session.asyncio.SessionManager(redis.asyncio.Redis())
    hub = SocketHub(manager, watch_events=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with hub:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        socket = await hub.accept(websocket)
        if socket is None:
            return  # refused: no live session
        async with socket:
            async for text in socket.iter_text():
                await socket.send_json({"echo": text, "uid": socket.uid})

    @app.post("/notify/{uid}")
    async def notify(uid: int, message: dict):
        delivery = await hub.send_to_user(uid, message)
        return {"local": delivery.local, "servers": delivery.forwarded}

The server name (``server=``) defaults to ``<hostname>:<pid>``, unique per
process, which is all the pub/sub routing needs; give the address other
servers reach this one on (``"10.0.0.7:8000"``) when you route over HTTP
instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket as _socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from dce_session.asyncio import Connection, Presence, Session, SessionEvent, SessionManager
from dce_session.core import is_valid_sid
from dce_session.errors import StoreError

__all__ = ["ENDING_EVENTS", "Delivery", "SocketHub", "SocketSession", "default_server"]

log = logging.getLogger("dce_session")

#: Event kinds after which a socket's session is over for the socket.
ENDING_EVENTS = frozenset({"destroy", "logout", "logout_everywhere"})

#: Close code of a socket whose session ended (4000-4999: the application's own).
SESSION_ENDED = 4401

EventHandler = Callable[["SocketSession", SessionEvent], Awaitable[None]]


def default_server() -> str:
    """``<hostname>:<pid>``: a name unique to this process.

    >>> default_server().endswith(f":{os.getpid()}")
    True
    """
    return f"{_socket.gethostname()}:{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class Delivery:
    """What :meth:`SocketHub.send_to_user` did.

    ``local``: sockets of this server the data was sent to; ``forwarded``:
    other servers that received it on their channel; ``unreachable``: servers
    that hold a binding of the user but had no listener on their channel.

    >>> Delivery(local=1, forwarded=("b:2",), unreachable=()).reached
    2
    """

    local: int = 0
    forwarded: tuple[str, ...] = ()
    unreachable: tuple[str, ...] = ()

    @property
    def reached(self) -> int:
        """Local sockets plus servers reached."""
        return self.local + len(self.forwarded)


class SocketSession:
    """One registered websocket: its :class:`~dce_session.asyncio.Connection`,
    session id and uid. ``async with socket:`` releases it (binding removed,
    unregistered) however the block ends.

    Attributes: ``websocket``, ``connection``, ``uid`` (``None`` when not
    logged in), ``sid`` (follows rotations), ``ended`` (the event that ended
    its session, if one did).
    """

    __slots__ = ("_key", "_released", "connection", "ended", "hub", "uid", "websocket")

    def __init__(self, hub: SocketHub, websocket: WebSocket, connection: Connection,
                 uid: int | None) -> None:
        self.hub, self.websocket, self.connection, self.uid = hub, websocket, connection, uid
        self.ended: SessionEvent | None = None
        self._released = False
        self._key = connection.id  # the sid the hub files it under

    def __repr__(self) -> str:
        return f"<SocketSession uid={self.uid} {self.connection!r}>"

    @property
    def sid(self) -> str:
        """The session id the socket is bound to (it follows rotations)."""
        return self.connection.id

    @property
    def closed(self) -> bool:
        """The socket is closed on either side."""
        return (self.websocket.application_state is WebSocketState.DISCONNECTED
                or self.websocket.client_state is WebSocketState.DISCONNECTED)

    def request(self) -> Session:
        """The session for one message (``await socket.request().get("cart")``)."""
        return self.connection.request()

    async def iter_text(self) -> AsyncIterator[str]:
        """The text messages until the client disconnects or the socket is closed
        (by ``on_session_end``, say): the loop simply ends, no exception."""
        while not self.closed:
            try:
                message = await self.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode()
            if text is not None:
                yield text

    async def send_json(self, data: Any) -> bool:
        """Send ``data`` as JSON text; False (nothing raised) when the socket is gone."""
        if self.closed:
            return False
        try:
            await self.websocket.send_text(json.dumps(data, separators=(",", ":")))
        except (RuntimeError, OSError, WebSocketDisconnect):
            return False
        return True

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the socket (once; closing a closed socket does nothing)."""
        if self.closed:
            return
        with contextlib.suppress(RuntimeError, OSError):
            await self.websocket.close(code=code, reason=reason)

    async def release(self) -> None:
        """Remove this socket's binding and unregister it (idempotent)."""
        if self._released:
            return
        self._released = True
        self.hub._unregister(self)
        try:
            await self.connection.disconnect()
        except StoreError as error:  # the binding lapses with the presence
            log.warning("socket of %s: disconnect failed (%s)", self.uid, error)

    async def __aenter__(self) -> SocketSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()


async def close_on_end(socket: SocketSession, event: SessionEvent) -> None:
    """The default ``on_session_end``: close with 4401 and the event's kind."""
    await socket.close(SESSION_ENDED, f"session ended: {event.kind}")


class SocketHub:
    """This process's websockets: bindings, a registry, events, routing.

    Args:
        manager: a :class:`dce_session.asyncio.SessionManager`.
        server: this server's name in bindings and presence
            (default :func:`default_server`).
        session_cookie: the cookie holding the sid (Starlette's default ``"session"``).
        require_user: refuse sockets whose session has no logged-in user.
        watch_events: run the ``manager.events()`` listener (opt-in).
        on_session_end: ``async (socket, event)`` for a socket whose session
            ended (default :func:`close_on_end`).
        on_event: ``async (socket, event)`` for every event concerning a socket
            (called before ``on_session_end``).
        beat_every: seconds between presence beats; connections of a server
            that stopped beating drop out of ``connections_of`` after
            ``3 * beat_every`` seconds, at least 3 (15 s by default; up to one
            more second, as presence counts whole seconds). ``None``: no presence.
        poll: how long the listeners wait on Redis before checking for close.

    >>> import redis.asyncio, dce_session.asyncio
    >>> manager = dce_session.asyncio.SessionManager(redis.asyncio.Redis())
    >>> hub = SocketHub(manager, server="a:8000", watch_events=True)
    >>> hub.channel, hub.channel_of("b:8000")
    ('dcesid~socket~a:8000', 'dcesid~socket~b:8000')
    """

    def __init__(self, manager: SessionManager, *, server: str | None = None,
                 session_cookie: str = "session", require_user: bool = False,
                 watch_events: bool = False, on_session_end: EventHandler | None = None,
                 on_event: EventHandler | None = None, beat_every: float | None = 5.0,
                 poll: float = 0.5) -> None:
        self.manager = manager
        self.server = server or default_server()
        self.session_cookie = session_cookie
        self.require_user, self.watch_events = require_user, watch_events
        self.on_session_end = on_session_end or close_on_end
        self.on_event = on_event
        self.beat_every, self.poll = beat_every, poll
        self._by_sid: dict[str, set[SocketSession]] = {}
        self._by_uid: dict[int, set[SocketSession]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._presence: Presence | None = None
        self._closing = False
        self._ready: list[asyncio.Event] = []

    # -- lifetime ------------------------------------------------------------------

    @property
    def channel(self) -> str:
        """This server's routing channel."""
        return self.channel_of(self.server)

    def channel_of(self, server: str) -> str:
        """The routing channel of ``server``: ``<sid_name>~socket~<server>``."""
        return f"{self.manager.sid_name}~socket~{server}"

    async def start(self) -> SocketHub:
        """Start the presence, the routing listener and (opt-in) the event
        listener; returns once the listeners are subscribed (``TimeoutError``
        after 10 s, everything stopped again)."""
        self._closing = False
        if self.beat_every is not None:
            self._presence = await self.manager.keep_alive(self.server,
                                                           every=self.beat_every).start()
        self._ready = [asyncio.Event()]
        self._tasks = [asyncio.create_task(self._routing(self._ready[0]),
                                           name=f"dce-sockets {self.server}")]
        if self.watch_events:
            self._ready.append(asyncio.Event())
            self._tasks.append(asyncio.create_task(self._events(self._ready[1]),
                                                   name=f"dce-events {self.server}"))
        try:
            await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in self._ready)), 10)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        """Stop the listeners, close and release every socket, forget the server."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for socket in self.sockets():
            await socket.close(1001, "server shutting down")
            await socket.release()
        if self._presence is not None:
            presence, self._presence = self._presence, None
            try:
                await presence.aclose()
            except StoreError as error:  # its presence lapses on its own
                log.warning("forgetting %s failed (%s)", self.server, error)

    async def __aenter__(self) -> SocketHub:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- sockets -------------------------------------------------------------------

    async def accept(self, websocket: WebSocket, subprotocol: str | None = None
                     ) -> SocketSession | None:
        """Bind, accept and register ``websocket``; ``None`` when refused
        (no live session, or no user with ``require_user``): it is then closed
        with 1008 and nothing of it stays in the store."""
        sid = websocket.cookies.get(self.session_cookie)
        if not sid or not is_valid_sid(sid):
            await websocket.close(1008)
            return None
        peer = websocket.client
        connection = self.manager.connect(sid, self.server,
                                          None if peer is None else f"{peer.host}:{peer.port}")
        request = connection.request()
        try:
            uid = await request.uid()  # ONE call: binds, and reads the user
            if request.newborn or (self.require_user and uid is None):
                if not request.newborn:  # an unknown sid was bound nowhere
                    await connection.disconnect()
                await websocket.close(1008)
                return None
        except StoreError as error:  # no store, no binding: refuse (the client may retry)
            log.warning("websocket refused: the store failed (%s)", error)
            await websocket.close(1011)
            return None
        socket = SocketSession(self, websocket, connection, uid)
        self._register(socket)
        try:
            await websocket.accept(subprotocol)
        except BaseException:
            await socket.release()
            raise
        return socket

    def sockets(self, *, uid: int | None = None, sid: str | None = None) -> list[SocketSession]:
        """This server's registered sockets (of a uid, or a sid)."""
        if uid is not None:
            return list(self._by_uid.get(uid, ()))
        if sid is not None:
            return list(self._by_sid.get(sid, ()))
        return [socket for group in list(self._by_sid.values()) for socket in group]

    def _register(self, socket: SocketSession) -> None:
        socket._key = socket.sid
        self._by_sid.setdefault(socket._key, set()).add(socket)
        if socket.uid is not None:
            self._by_uid.setdefault(socket.uid, set()).add(socket)

    def _unregister(self, socket: SocketSession) -> None:
        sids = self._by_sid.get(socket._key, set())
        sids.discard(socket)
        if not sids:
            self._by_sid.pop(socket._key, None)
        if socket.uid is not None:
            users = self._by_uid.get(socket.uid, set())
            users.discard(socket)
            if not users:
                self._by_uid.pop(socket.uid, None)

    def _moved(self, old: str, new: str, uid: int | None) -> list[SocketSession]:
        """A rotation: the sockets filed under ``old`` move to ``new``, and to
        ``uid`` when the event names one (a login elsewhere: another user)."""
        moved = list(self._by_sid.get(old, ()))
        for socket in moved:
            self._unregister(socket)
            socket.connection.id = new
            if uid is not None:
                socket.uid = uid
            self._register(socket)
        return moved

    # -- routing -------------------------------------------------------------------

    async def send_to_user(self, uid: int, data: Any) -> Delivery:
        """Send ``data`` (JSON) to every socket of ``uid`` in the fleet: this
        server's directly, each other server's through ONE ``PUBLISH`` on its
        channel (from ``manager.connections_of(uid)``)."""
        servers = {server for _, server, _ in await self.manager.connections_of(uid)}
        local = await self.deliver(uid, data)
        servers.discard(self.server)
        message = json.dumps({"uid": uid, "data": data}, separators=(",", ":"))
        forwarded: list[str] = []
        unreachable: list[str] = []
        for server in sorted(servers):
            try:
                receivers = await self.manager.client.publish(self.channel_of(server), message)
            except (RedisError, RedisClusterException) as error:
                log.warning("routing to %s failed (%s)", server, error)
                receivers = 0
            (forwarded if receivers else unreachable).append(server)
        return Delivery(local, tuple(forwarded), tuple(unreachable))

    async def deliver(self, uid: int, data: Any) -> int:
        """Send ``data`` to this server's sockets of ``uid``; how many took it."""
        sent = await asyncio.gather(*(socket.send_json(data) for socket in self.sockets(uid=uid)))
        return sum(sent)

    async def _routing(self, ready: asyncio.Event) -> None:
        async for message in self._subscribed(self.channel, ready):
            try:
                routed = json.loads(message)
                await self.deliver(int(routed["uid"]), routed["data"])
            except (ValueError, KeyError, TypeError) as error:
                log.warning("bad routed message on %s (%s)", self.channel, error)

    async def _subscribed(self, channel: str, ready: asyncio.Event) -> AsyncIterator[str]:
        """The messages of ``channel``, resubscribing after a store error."""
        while not self._closing:
            client = self.manager.client
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                if isinstance(client, RedisCluster):
                    await client.initialize()  # its slots, which its pubsub needs
                await pubsub.subscribe(channel)
                ready.set()
                while not self._closing:
                    message = await pubsub.get_message(timeout=self.poll)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        yield data.decode() if isinstance(data, bytes) else str(data)
            except (RedisError, RedisClusterException) as error:
                log.warning("listening on %s failed (%s); retrying", channel, error)
                await asyncio.sleep(self.poll)
            finally:
                with contextlib.suppress(RedisError, RedisClusterException):
                    await pubsub.aclose()

    # -- events --------------------------------------------------------------------

    async def _events(self, ready: asyncio.Event) -> None:
        # What manager.events() yields, read on its channel by the same
        # subscriber loop as the routing (one readiness signal, resubscription).
        async for message in self._subscribed(self.manager.events_channel, ready):
            event = SessionEvent.of(message)
            if event is not None:
                await self.handle(event)

    async def handle(self, event: SessionEvent) -> None:
        """Apply one session event to this server's sockets (what the listener
        does; call it yourself when you consume ``manager.events()`` elsewhere)."""
        if event.kind == "rotate" and event.sid and event.new_sid:
            concerned = self._moved(event.sid, event.new_sid, event.uid)
        else:
            concerned = self._concerned(event)
        for socket in concerned:
            if self.on_event is not None:
                await self._call(self.on_event, socket, event)
            if event.kind in ENDING_EVENTS:
                socket.ended = event
                await self._call(self.on_session_end, socket, event)

    def _concerned(self, event: SessionEvent) -> list[SocketSession]:
        sids: Iterable[str] = (*((event.sid,) if event.sid else ()), *event.sids)
        return [socket for sid in sids for socket in self._by_sid.get(sid, ())]

    async def _call(self, handler: EventHandler, socket: SocketSession,
                    event: SessionEvent) -> None:
        try:
            await handler(socket, event)
        except Exception:
            log.exception("session event handler failed for %r", socket)
