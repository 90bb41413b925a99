"""Starlette / FastAPI: ``request.session`` kept in Redis by dce-session.

``SessionMiddleware(app, manager)`` is a pure ASGI middleware (no
``BaseHTTPMiddleware``); ``manager`` is a :class:`dce_session.asyncio.SessionManager`.
In http and websocket scopes, ``request.session`` (``websocket.session``) is a
mutable mapping of the session's values, as with Starlette's own middleware,
and ``request.state.dce_session`` is the :class:`dce_session.asyncio.Session`
itself (``login``, ``user``, ``regenerate``, ``try_renew``, ...). Run this with
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
        redis.asyncio.Redis.from_url("redis://localhost:6379/0"), ttl_minutes=60)

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

With FastAPI: ``app.add_middleware(SessionMiddleware, manager=manager)``.

What a request costs
--------------------
- **No session cookie** (or a malformed one): no Redis round trip at all
  before the app; ``request.session`` starts empty and
  ``request.state.dce_session`` is a newborn session. A handler that leaves
  the session alone costs nothing and gets no ``Set-Cookie``.
- **A well-formed session cookie**: ONE round trip before the app runs.
  Starlette's ``request.session`` is synchronous, so the session cannot be
  fetched on first access; the middleware reads the whole hash up front, and
  that same script refreshes the TTL (sliding expiry: a request presenting a
  live session is activity, as a ``get`` is). An unknown sid is not adopted:
  the session is newborn under a fresh sid. Stored fields that are not JSON
  (written by another program) are left out of the mapping and left alone.
- **At ``http.response.start``**: the mapping is compared with what was
  loaded; when it differs, ONE round trip writes the added and changed fields
  and deletes the removed ones, atomically. Untouched fields are never
  rewritten, so concurrent requests that edit different keys both survive.
  Values are compared as their JSON, so in-place edits
  (``request.session["cart"].append(...)``) are saved too. Changes made after
  the response started (in a streaming body, a background task) are not saved:
  use ``request.state.dce_session`` for those.

The cookie
----------
``HttpOnly``, ``Secure`` unless ``https_only=False``, ``SameSite=Lax`` unless
``same_site`` says otherwise, ``Path=/``; no ``Max-Age`` when ``max_age`` is
None (a browser-session cookie; Redis' TTL still ends the session). It is sent
exactly when the sid the client must use differs from the one it presented
(a new session's first write, ``login``, ``auto_login``, ``regenerate``, a
rotation by ``try_renew``), and expired when the session ends:
``request.session.clear()`` (destroys it; values set after ``clear()`` start a
new session under a new sid), ``request.state.dce_session.destroy()``, or a
presented sid that is no longer stored. The bookkeeping fields (``$user``,
``$newid``, ``$server``, ``$client``) never appear in the mapping; putting one
there raises ``ValueError`` at once (use ``login``/``logout``).

Websockets: the session is loaded the same way at the handshake; changes to
the mapping of a stored session are saved when the endpoint returns (no cookie
can be sent then, so a session that is still newborn is not written, and a
new sid reaches the browser only through a later http response).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dce_session._core import encode_value
from dce_session._flows import check_field, decode_value
from dce_session.asyncio import Session, SessionManager
from dce_session.errors import ConfigError, SerializationError, SessionDestroyed

__all__ = ["SessionMapping", "SessionMiddleware"]

_SAME_SITE = {"lax": "Lax", "strict": "Strict", "none": "None"}
_EXPIRED = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


class SessionMapping(dict[str, Any]):
    """``request.session``: the session's values, JSON-decoded.

    A plain ``dict`` of the user's values; ``clear()`` also ends the session
    (it is destroyed when the response starts, and the cookie expired).
    ``accessed`` (set by Starlette's ``request.session``) adds ``Vary: Cookie``.
    ``reserved`` are the names that cannot be keys (the manager's bookkeeping
    fields): assigning one raises ``ValueError`` at once.
    """

    accessed = False
    ended = False

    def __init__(self, reserved: Iterable[str] = (),
                 values: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /,
                 **kwargs: Any) -> None:
        super().__init__()
        self.reserved = frozenset(reserved)
        self.update(values, **kwargs)

    def _check(self, key: str) -> str:
        if key in self.reserved:
            raise ValueError(
                f"{key!r} is a dce-session bookkeeping field, not a session value; "
                "use request.state.dce_session (login, logout, ...)")
        return key

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(self._check(key), value)

    def update(  # type: ignore[override]  # same call shapes as dict.update
        self, values: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /, **kwargs: Any
    ) -> None:
        pairs = {**dict(values), **kwargs}
        for key in pairs:
            self._check(key)
        super().update(pairs)

    def __ior__(self, other: Any) -> SessionMapping:  # type: ignore[override, misc]  # as update
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None, /) -> Any:
        return super().setdefault(self._check(key), default)

    def mark_accessed(self) -> None:
        """Called by Starlette's ``request.session``."""
        self.accessed = True

    def clear(self) -> None:
        """Forget every value and end the session."""
        self.ended = True
        super().clear()


async def _load(session: Session) -> dict[str, str]:
    """Every stored field, the TTL refreshed: one round trip (the get loads and touches)."""
    await session.get(session.manager.user_field)
    return await session.raw()


class SessionMiddleware:
    """``request.session`` and ``request.state.dce_session`` from a session cookie.

    See the module docstring for the costs and the cookie rules.
    """

    def __init__(
        self,
        app: ASGIApp,
        manager: SessionManager,
        *,
        cookie_name: str = "dcesid",
        path: str = "/",
        domain: str | None = None,
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = True,
        max_age: int | None = None,
    ) -> None:
        if not isinstance(manager, SessionManager):
            raise ConfigError(
                f"SessionMiddleware needs a dce_session.asyncio.SessionManager, "
                f"not {type(manager).__name__}")
        if same_site not in _SAME_SITE:
            raise ConfigError(f"same_site must be 'lax', 'strict' or 'none', got {same_site!r}")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)
                                    or max_age < 0):
            raise ConfigError(f"max_age must be None or an int >= 0, got {max_age!r}")
        self.app, self.manager, self.cookie_name = app, manager, cookie_name
        flags = f"Path={path}"
        if domain is not None:
            flags += f"; Domain={domain}"
        flags += "; HttpOnly"
        if https_only:
            flags += "; Secure"
        self._flags = f"{flags}; SameSite={_SAME_SITE[same_site]}"
        self._lifetime = "" if max_age is None else f"; Max-Age={max_age}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        presented = HTTPConnection(scope).cookies.get(self.cookie_name) or None
        session = self.manager.open(presented)
        loaded: dict[str, str] = {}
        mapping = SessionMapping(self.manager.bookkeeping)
        if not session.newborn:  # a well-formed sid: look it up (a malformed one is newborn)
            for field, raw in (await _load(session)).items():
                if field in self.manager.bookkeeping:
                    continue
                try:
                    dict.__setitem__(mapping, field, decode_value(raw))
                except SerializationError:
                    continue  # not ours to read: neither shown nor written
                loaded[field] = raw
        scope["session"] = mapping
        scope.setdefault("state", {})["dce_session"] = session

        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            await self._save(scope, mapping, loaded, websocket=True)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                session = await self._save(scope, mapping, loaded, websocket=False)
                cookie = self._cookie(session, presented)
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if cookie is not None:
                    headers.append("set-cookie", cookie)
                if cookie is not None or mapping.accessed:
                    headers.add_vary_header("Cookie")
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def _save(self, scope: Scope, mapping: SessionMapping, loaded: dict[str, str],
                    *, websocket: bool) -> Session:
        """Write what the request changed; the session the client must now use."""
        session: Session = scope["state"]["dce_session"]
        if mapping.ended:
            if session.stored:
                await session.destroy()
            if mapping and not websocket:  # values set after clear(): a new session
                session = self.manager.new()
                scope["state"]["dce_session"] = session
                changed, _ = self._changes(mapping, {})
                await session.update(changed)
        elif not session.destroyed and (session.stored or not websocket):
            changed, deletions = self._changes(mapping, loaded)
            if changed or deletions:
                # Destroyed meanwhile (logout elsewhere): nothing written, cookie expired.
                with contextlib.suppress(SessionDestroyed):
                    await session.update(changed, delete=deletions)
        return session

    def _changes(self, mapping: Mapping[str, Any],
                 loaded: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
        """``(fields to set, fields to delete)``: what differs from ``loaded``."""
        changed: dict[str, Any] = {}
        for field, value in mapping.items():
            encoded = encode_value(value)
            before = loaded.get(check_field(field))
            if before is None or (encoded != before
                                  and encoded != encode_value(decode_value(before))):
                changed[field] = value
        return changed, [field for field in loaded if field not in mapping]

    def _cookie(self, session: Session, presented: str | None) -> str | None:
        """The ``Set-Cookie`` value the response needs, if any."""
        if session.stored:
            if session.id == presented:
                return None
            return f"{self.cookie_name}={session.id}; {self._flags}{self._lifetime}"
        if presented is None:
            return None
        return f"{self.cookie_name}=; {self._flags}; {_EXPIRED}"
