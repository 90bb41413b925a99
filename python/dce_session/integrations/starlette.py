"""Starlette / FastAPI: ``request.session`` kept in Redis by dce-session.

A drop-in for Starlette's ``SessionMiddleware`` (and starsessions' names):
``SessionMiddleware(app, manager, ...)`` takes Starlette's own arguments with
its defaults -- ``session_cookie="session"`` (``cookie_name`` is an alias),
``max_age=14 days``, ``path="/"``, ``same_site="lax"``, ``https_only=False``,
``domain=None``, ``partitioned=False`` -- plus ``autoload=True``. ``manager``
is a :class:`dce_session.asyncio.SessionManager`. Run this with
``uvicorn example:app``::

    import redis.asyncio
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    import dce_session.asyncio
    from dce_session.integrations.starlette import SessionMiddleware

    manager = dce_session.asyncio.SessionManager(
        redis.asyncio.Redis.from_url("redis://localhost:6379/0"))

    async def visit(request: Request) -> JSONResponse:
        request.session["visits"] = request.session.get("visits", 0) + 1
        return JSONResponse({"visits": request.session["visits"]})

    async def login(request: Request) -> JSONResponse:
        session = request.state.dce_session
        await session.login({"id": 42, "name": "Ada"})  # a new sid: the cookie follows
        return JSONResponse({"user": await session.user()})

    async def logout(request: Request) -> JSONResponse:
        request.session.clear()  # ends the session: destroyed, cookie expired
        return JSONResponse({"bye": True})

    app = Starlette(
        routes=[Route("/", visit), Route("/login", login, methods=["POST"]),
                Route("/logout", logout, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, manager=manager)],
    )

With FastAPI: ``app.add_middleware(SessionMiddleware, manager=manager)``, and
``dce_session.integrations.fastapi`` for a typed dependency.

What a request does
-------------------
- ``request.session`` (``websocket.session``) is a ``dict`` of the session's
  values; ``request.state.dce_session`` is the
  :class:`dce_session.asyncio.Session` (``login``, ``user``, ...).
- **Loading.** With ``autoload=True`` (Starlette's way: its session is always
  there) a request carrying a well-formed cookie costs ONE round trip before
  the app: the values, the TTL refreshed. No cookie (or a malformed one):
  nothing. With ``autoload=False`` nothing is loaded until
  ``await load_session(request)`` (starsessions' name); ``request.session``
  raises :class:`SessionNotLoaded` before that, and a request that never
  loads makes no Redis call, so it is unaffected by a Redis outage.
- **Rotation.** With ``renew=`` on the manager, loading runs ``try_renew()``
  first (http and websocket); a new sid goes out as the cookie.
- **Saving**, when the response starts: only the keys whose value changed
  (in-place edits included) and the removed ones, in one ``update``. An
  unknown sid is never adopted: a write goes to a fresh sid.
- **Regeneration** (the session-fixation defence at login; starsessions'
  ``regenerate_session_id``): ``regenerate_session_id(request)`` without
  ``await`` (starsessions' way) marks the session; the middleware regenerates
  it when the cookie is decided (an http response's start, a websocket's
  ``accept``): a new sid carrying the data and this request's pending
  changes, the old sid destroyed, in one atomic step, and the new cookie.
  ``sid = await regenerate_session_id(request)`` regenerates at once and
  gives the new sid. At most one regeneration per request: a later call,
  awaited or not, gives the current sid. Until it is done ``get_session_id``
  gives the current sid. ``clear()`` (or ``destroy()``) in the same request
  wins: the session ends. A call after the cookie was decided is logged at
  WARNING: no cookie can carry a new sid then.
- **The cookie** is sent when the sid changes (a new session's first write,
  ``login``, ``regenerate_session_id``, a rotation, a forwarded sid) and
  refreshed (same sid, new ``Max-Age``) when the request wrote, or when over
  half of ``max_age`` has passed since the sid was made (checked against the
  store first). ``request.session.clear()`` destroys the session and expires
  the cookie. ``Secure`` when ``https_only`` or the request came over https.
  An unknown or malformed cookie is left alone.
- **Races.** When another request ended this session (a login or logout in
  another tab, a rotation judgment), this request's changes are dropped with
  a WARNING on the ``dce_session`` logger (none when it changed nothing), the
  response is the view's, and no
  cookie is sent: the browser keeps the newer one.
- Websockets load the same way at the handshake, rotation included: the
  handshake's reply (``websocket.accept``) carries the cookie of a new sid.
  Changes to a stored session are saved when the endpoint returns (no cookie
  can go out then, so a session not stored at the handshake is not saved).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Generator, Iterable, Mapping
from typing import Any, Literal, NoReturn

from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import Session as StarletteSession
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dce_session.asyncio import Session, SessionManager
from dce_session.core import is_valid_sid
from dce_session.errors import ConfigError, SerializationError, SessionDestroyed
from dce_session.integrations._common import (
    Cookie,
    Snapshot,
    cookie,
    half_age_passed,
    interrupted,
    logger,
    reserved_fields,
    ttl_minutes,
    user_values,
)

__all__ = [
    "SessionMapping",
    "SessionMiddleware",
    "SessionNotLoaded",
    "get_session_id",
    "is_loaded",
    "load_session",
    "regenerate_session_id",
]

_SAME_SITE = ("lax", "strict", "none")
_HANDLER = "dce_session.handler"


class SessionNotLoaded(RuntimeError):
    """``request.session`` was read with ``autoload=False`` before ``load_session``."""


class SessionMapping(StarletteSession):
    """``request.session``: a ``dict`` of the user's values (Starlette's ``Session``).

    Assigning a bookkeeping field (``$user``, ... as the manager names them)
    raises ``ValueError`` at once; ``clear()`` ends the session.
    """

    ended = False

    def __init__(self, reserved: Iterable[str] = (),
                 values: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /,
                 **kwargs: Any) -> None:
        super().__init__()
        self.reserved = frozenset(reserved)
        self.update(values, **kwargs)
        self.accessed = self.modified = False

    def _check(self, key: object) -> None:
        if key in self.reserved:
            raise ValueError(f"{key!r} is a dce-session bookkeeping field, not a session value; "
                             "use request.state.dce_session (login, logout, ...)")

    def __setitem__(self, key: str, value: Any) -> None:
        self._check(key)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        pairs = dict(*args, **kwargs)
        for key in pairs:
            self._check(key)
        super().update(pairs)

    def __ior__(self, other: Any, /) -> SessionMapping:  # type: ignore[override,misc]  # as dict
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._check(key)
        return super().setdefault(key, default)

    def clear(self) -> None:
        """Forget every value and end the session (destroyed when the response starts)."""
        self.ended = True
        super().clear()


class _Unloaded:
    """``request.session`` before ``load_session`` (``autoload=False``)."""

    def __getattribute__(self, name: str) -> Any:
        if name == "__class__":
            return _Unloaded
        raise SessionNotLoaded("the session is not loaded: SessionMiddleware(autoload=False) "
                               "needs `await load_session(request)` first")

    def __getitem__(self, key: str) -> NoReturn:
        self.mark_accessed()  # raises
        raise AssertionError  # pragma: no cover

    __setitem__ = __contains__ = __iter__ = __len__ = __getitem__


class _Regeneration(enum.Enum):
    """Where a request stands with ``regenerate_session_id``."""

    NOT_ASKED = enum.auto()
    ASKED = enum.auto()  # called, not awaited: done when the cookie is decided
    DONE = enum.auto()  # done (or moot: the session ended): never twice in a request


class _Handler:
    """One request's session: load, save, and the cookie decision."""

    def __init__(self, middleware: SessionMiddleware, scope: Scope, presented: str | None):
        self.middleware, self.scope, self.presented = middleware, scope, presented
        manager = middleware.manager
        self.session: Session = manager.open(presented) if is_valid_sid(presented) \
            else manager.new(middleware.ttl)
        self.snapshot = Snapshot()
        self.loaded = self.interrupted = self.wrote = False
        self.regeneration = _Regeneration.NOT_ASKED
        #: the cookie was decided (http response started, websocket accepted)
        self.decided = False
        scope.setdefault("state", {})["dce_session"] = self.session
        scope["session"] = _Unloaded()

    def _replace(self, session: Session) -> None:
        self.session = self.scope["state"]["dce_session"] = session

    async def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        session, values, texts = self.session, {}, None
        if not session.newborn:  # a well-formed sid: ask the store
            try:
                if session.manager.renew is not None:
                    await session.try_renew()
                values = await _values(session)
                texts = await session.raw()  # loaded already: no round trip
            except SessionDestroyed:  # judged: the browser moved on to a newer sid
                self.interrupted = True  # (the WARNING when save finds changes to drop)
            if session.replaced:  # a login elsewhere: the browser holds its new sid
                self.interrupted = True
            if session.newborn:  # unknown to the store: a fresh session of our lifetime
                self._replace(self.middleware.manager.new(self.middleware.ttl))
        self.snapshot = Snapshot(values, texts=texts)
        self.scope["session"] = SessionMapping(self.middleware.reserved, values)

    async def regenerate(self) -> str:
        """A new sid for the session, its pending changes included, the old sid
        destroyed: one atomic step. Once per request: then the current sid."""
        if self.regeneration is _Regeneration.DONE:
            return self.session.id
        await self.load()
        if self.interrupted:  # another request ended it: this one's newborn is not it
            raise SessionDestroyed("the session was ended by another request (a login, "
                                   "logout or rotation elsewhere); nothing regenerated")
        changes = self.snapshot.changes(self.scope["session"])
        sid = await self.session.regenerate(changes.moved, destroy_old=True)
        self.regeneration = _Regeneration.DONE
        self.snapshot.apply(changes)
        return sid

    async def regenerate_asked(self) -> None:
        """Perform a regeneration asked without ``await`` (when the cookie is decided);
        a session ended elsewhere meanwhile: a race, as for a write."""
        if self.regeneration is not _Regeneration.ASKED:
            return
        await self.load()
        if self.interrupted or self.scope["session"].ended or self.session.destroyed:
            self.regeneration = _Regeneration.DONE  # ended, here or elsewhere: moot
            return
        try:
            await self.regenerate()
        except SessionDestroyed:
            self.regeneration = _Regeneration.DONE
            self._race()

    async def save(self) -> bool:
        """Write what the request changed; whether this request ended the session."""
        if not self.loaded:
            return False
        if self.interrupted:  # ended elsewhere: what this request changed is dropped
            mapping = self.scope["session"]
            if mapping.ended or self.snapshot.changes(mapping):
                interrupted(self.presented)
            return False
        session, mapping = self.session, self.scope["session"]
        ended = False
        if mapping.ended:
            if not session.newborn or session.stored:
                ended = await session.destroy()
                if not ended and not session.newborn:  # gone already: ended elsewhere
                    self._race()
                    return False
            if mapping:  # values set after clear(): a new session
                self._replace(self.middleware.manager.new(self.middleware.ttl))
                self.snapshot = Snapshot()
                await self._write(mapping)
            return ended
        if session.destroyed:  # the view destroyed it through request.state.dce_session
            return True
        await self._write(mapping)
        return False

    async def _write(self, mapping: Mapping[str, Any]) -> None:
        changes = self.snapshot.changes(mapping)
        if not changes:
            return
        try:
            await self.session.update(changes.set, delete=changes.delete)
        except SessionDestroyed:
            self._race()
            return
        self.snapshot.apply(changes)
        self.wrote = True

    def _race(self) -> None:
        self.interrupted = True
        interrupted(self.presented)

    async def finish(self) -> Cookie:
        """Regenerate if asked, save, then decide the cookie (http: when the response starts)."""
        self.decided = True
        await self.regenerate_asked()
        ended = await self.save()
        session, middleware = self.session, self.middleware
        refresh = False
        if session.stored and session.id == self.presented and middleware.max_age:
            refresh = self.wrote
            if not refresh and half_age_passed(session.created_at, middleware.max_age,
                                               session.manager.clock()):
                # the cookie is re-sent only for a session still stored now
                refresh = await session.touch()
                self.interrupted = self.interrupted or not refresh
        return cookie(presented=self.presented, sid=session.id, stored=session.stored,
                      ended=ended, refresh=refresh, interrupted=self.interrupted)


async def _values(session: Session) -> dict[str, Any]:
    """The user's values (one round trip); fields that are not JSON are left out."""
    try:
        return await session.data()
    except SerializationError:  # another program's field: neither shown nor written
        return user_values(await session.raw(), reserved_fields(session.manager))


def _handler(connection: HTTPConnection) -> _Handler:
    handler = connection.scope.get(_HANDLER)
    if not isinstance(handler, _Handler):
        raise ConfigError("dce_session.integrations.starlette.SessionMiddleware is not installed")
    return handler


async def load_session(connection: HTTPConnection) -> None:
    """Load the session (once; later calls do nothing): needed with ``autoload=False``."""
    await _handler(connection).load()


def is_loaded(connection: HTTPConnection) -> bool:
    """Whether this request's session is loaded."""
    return _handler(connection).loaded


def get_session_id(connection: HTTPConnection) -> str | None:
    """The sid the client holds or will be sent; None for a session not stored yet.

    After ``regenerate_session_id(request)`` without ``await``, the current sid
    until the regeneration is done when the response starts."""
    session = _handler(connection).session
    return session.id if session.stored or not session.newborn else None


class _PendingRegeneration:
    """What :func:`regenerate_session_id` returns: await it for the new sid at once,
    or leave it (the regeneration is then done when the response starts). Not a
    coroutine: left un-awaited, it raises no "never awaited" warning."""

    __slots__ = ("_handler",)

    def __init__(self, handler: _Handler) -> None:
        self._handler = handler

    def __await__(self) -> Generator[Any, None, str]:
        return self._handler.regenerate().__await__()


def regenerate_session_id(connection: HTTPConnection) -> Awaitable[str]:
    """A new sid for the session (the session-fixation defence at login).

    The new sid carries the data and this request's pending changes, the old
    sid is destroyed, in one atomic step; the cookie follows. starsessions'
    way, ``regenerate_session_id(request)`` without ``await``, marks the
    session: the middleware regenerates it when the response starts (a
    websocket: at ``accept``), and ``get_session_id`` gives the current sid
    until then. ``sid = await regenerate_session_id(request)`` regenerates at
    once and gives the new sid. At most once per request: a later call gives
    the current sid. A session ended elsewhere meanwhile is a race: the
    request's changes are dropped with a WARNING, no cookie is sent (awaited:
    ``SessionDestroyed``, as ``Session.regenerate``). ``clear()`` in the same
    request wins: the session ends.
    """
    handler = _handler(connection)
    if handler.decided:
        logger.warning("regenerate_session_id after the response started: "
                       "no cookie can carry a new sid now")
    if handler.regeneration is _Regeneration.NOT_ASKED:
        handler.regeneration = _Regeneration.ASKED
    return _PendingRegeneration(handler)


def _checked_ttl(manager: SessionManager, same_site: str, max_age: int | None) -> int:
    """The middleware's settings checked (``ConfigError``); the ttl of its new sessions."""
    if not isinstance(manager, SessionManager):
        raise ConfigError("SessionMiddleware needs a dce_session.asyncio.SessionManager, "
                          f"not {type(manager).__module__}.{type(manager).__qualname__}")
    if same_site not in _SAME_SITE:
        raise ConfigError(f"same_site must be 'lax', 'strict' or 'none', got {same_site!r}")
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)
                                or max_age < 0):
        raise ConfigError(f"max_age must be None or an int >= 0, got {max_age!r}")
    return ttl_minutes(max_age, setting="max_age") or manager.ttl_minutes


class SessionMiddleware:
    """``request.session`` and ``request.state.dce_session`` from a session cookie.

    Starlette's arguments, defaults and cookie format; see the module docstring.
    """

    def __init__(
        self,
        app: ASGIApp,
        manager: SessionManager,
        session_cookie: str = "session",
        max_age: int | None = 14 * 24 * 60 * 60,  # 14 days, in seconds
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        cookie_name: str | None = None,
        autoload: bool = True,
    ) -> None:
        try:
            #: the sid ttl of new sessions: max_age in minutes, else the manager's
            self.ttl = _checked_ttl(manager, same_site, max_age)
        except ConfigError as error:
            # Starlette builds its middleware on its first event, the lifespan,
            # and uvicorn reports an error there only as "lifespan unsupported":
            # say it on our logger too, so that it shows at start-up.
            logger.error("SessionMiddleware: %s", error)
            raise
        self.app, self.manager = app, manager
        self.session_cookie = cookie_name if cookie_name is not None else session_cookie
        self.max_age, self.path, self.autoload = max_age, path, autoload
        self.reserved = reserved_fields(manager)
        flags = "httponly; samesite=" + same_site
        self.https_only = https_only
        tail = ""
        if domain is not None:
            tail += f"; domain={domain}"
        if partitioned:
            tail += "; partitioned"
        self._flags, self._tail = flags, tail

    def _security(self, scope: Scope) -> str:
        secure = self.https_only or scope.get("scheme") in ("https", "wss")
        return self._flags + ("; secure" if secure else "") + self._tail

    def set_cookie(self, scope: Scope, action: Cookie, sid: str) -> str | None:
        """The ``Set-Cookie`` value for ``action``, in Starlette's format."""
        if action is Cookie.LEAVE:
            return None
        if action is Cookie.EXPIRE:
            return (f"{self.session_cookie}=null; path={self.path}; "
                    f"expires=Thu, 01 Jan 1970 00:00:00 GMT; {self._security(scope)}")
        max_age = f"Max-Age={self.max_age}; " if self.max_age else ""
        return f"{self.session_cookie}={sid}; path={self.path}; {max_age}{self._security(scope)}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        presented = HTTPConnection(scope).cookies.get(self.session_cookie) or None
        handler = _Handler(self, scope, presented)
        scope[_HANDLER] = handler
        if self.autoload:
            await handler.load()

        if scope["type"] == "websocket":
            async def accept_with_cookie(message: Message) -> None:
                if message["type"] == "websocket.accept":
                    handler.decided = True
                    await handler.regenerate_asked()
                if message["type"] == "websocket.accept" and handler.loaded:
                    # the handshake's reply carries the cookie of a rotated or
                    # forwarded sid (nothing is saved yet: that waits for the end)
                    session = handler.session
                    action = cookie(presented=handler.presented, sid=session.id,
                                    stored=session.stored, interrupted=handler.interrupted)
                    header = self.set_cookie(scope, action, session.id)
                    if header is not None:
                        message = {**message, "headers": [
                            *message.get("headers", ()), (b"set-cookie", header.encode())]}
                await send(message)

            await self.app(scope, receive, accept_with_cookie)
            if handler.session.stored:
                await handler.save()
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                action = await handler.finish()
                header = self.set_cookie(scope, action, handler.session.id)
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if header is not None:
                    headers.append("set-cookie", header)
                if header is not None or (handler.loaded and scope["session"].accessed):
                    headers.add_vary_header("Cookie")
            await send(message)

        await self.app(scope, receive, send_with_cookie)
