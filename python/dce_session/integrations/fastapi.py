"""FastAPI dependencies over :mod:`dce_session.integrations.starlette`'s middleware.

``CurrentSession`` gives the :class:`dce_session.asyncio.Session` and
``SessionValues`` the ``request.session`` mapping, typed, on http AND websocket
routes (they take Starlette's ``HTTPConnection``, which both scopes are). Each
loads the session first, so they work with ``autoload=False`` too: only the
routes that depend on them touch Redis::

    from fastapi import FastAPI, WebSocket
    from dce_session.integrations.fastapi import CurrentSession, SessionValues
    from dce_session.integrations.starlette import SessionMiddleware

    app = FastAPI()
    app.add_middleware(SessionMiddleware, manager=manager, autoload=False)

    @app.post("/login")
    async def login(session: CurrentSession) -> dict[str, object]:
        await session.login({"id": 42})          # the new sid goes out as the cookie
        return {"user": await session.user()}

    @app.websocket("/ws")
    async def socket(websocket: WebSocket, values: SessionValues) -> None:
        await websocket.accept()
        await websocket.send_json(dict(values))

On a websocket route the session is read once, at the handshake, and written
back when the socket closes: changes the connection makes later are based on
that copy (and overwrite the keys they change). A long-lived socket that reads
and writes the session as it goes should use
:class:`dce_session.integrations.websocket.SocketHub` and a request session per
message (``socket.request()``), which also follows logins and logouts made
elsewhere.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from dce_session.asyncio import Session
from dce_session.integrations.starlette import SessionMapping, load_session

__all__ = ["CurrentSession", "SessionValues", "current_session", "session_values"]


async def current_session(connection: HTTPConnection) -> Session:
    """The request's (or websocket's) dce session, loaded."""
    await load_session(connection)
    session: Session = connection.scope["state"]["dce_session"]
    return session


async def session_values(connection: HTTPConnection) -> SessionMapping:
    """The request's (or websocket's) ``session`` mapping, loaded."""
    await load_session(connection)
    values: SessionMapping = connection.scope["session"]
    return values


CurrentSession = Annotated[Session, Depends(current_session)]
SessionValues = Annotated[SessionMapping, Depends(session_values)]
