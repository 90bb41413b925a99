"""A FastAPI shop whose sessions live in Redis, through dce-session.

One command (uses ``REDIS_URL`` when set, else starts a throwaway redis-server)::

    python examples/fastapi_app.py            # serves http://127.0.0.1:8000
    python examples/fastapi_app.py --selftest # drives the app once and exits

Then: ``curl -c jar -b jar -X POST localhost:8000/cart/apple``,
``curl -c jar -b jar -X POST localhost:8000/login``, ``curl -b jar localhost:8000/me``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import fastapi
import redis.asyncio
import uvicorn
from dce_session.asyncio import SessionManager
from dce_session.integrations.fastapi import CurrentSession, SessionValues
from dce_session.integrations.starlette import SessionMiddleware
from dce_session.testing import redis_url


def build(url: str) -> tuple[fastapi.FastAPI, SessionManager]:
    manager = SessionManager(redis.asyncio.Redis.from_url(url))

    @contextlib.asynccontextmanager
    async def lifespan(app: fastapi.FastAPI) -> AsyncIterator[None]:
        yield
        await manager.client.aclose()  # the client lives in the server's event loop

    app = fastapi.FastAPI(title="dce-session shop", lifespan=lifespan)
    # Starlette's own settings: 14-day cookie (and Redis TTL); autoload=False: only
    # the routes that take the session dependency talk to Redis.
    app.add_middleware(SessionMiddleware, manager=manager, autoload=False)

    @app.get("/")
    async def index() -> dict[str, str]:
        return {"hello": "no session needed here: no Redis call"}

    @app.post("/cart/{item}")
    async def add(item: str, values: SessionValues) -> dict[str, Any]:
        values["cart"] = [*values.get("cart", []), item]
        return {"cart": values["cart"]}

    @app.post("/login")
    async def login(session: CurrentSession) -> dict[str, Any]:
        await session.login({"id": 42, "name": "Ada"})  # new sid: the cookie follows
        return {"user": await session.user()}

    @app.get("/me")
    async def me(session: CurrentSession, values: SessionValues) -> dict[str, Any]:
        return {"user": await session.user(), "cart": values.get("cart", [])}

    @app.post("/logout")
    async def logout(values: SessionValues) -> dict[str, bool]:
        values.clear()  # destroys the session, expires the cookie
        return {"bye": True}

    @app.websocket("/ws")
    async def socket(websocket: fastapi.WebSocket, session: CurrentSession) -> None:
        await websocket.accept()
        await websocket.send_json({"user": await session.user()})
        await websocket.close()

    return app, manager


def selftest(app: fastapi.FastAPI) -> None:
    from starlette.testclient import TestClient

    with TestClient(app) as browser:
        assert browser.post("/cart/apple").json() == {"cart": ["apple"]}
        assert browser.post("/login").json() == {"user": {"id": 42, "name": "Ada"}}
        assert browser.get("/me").json() == {"user": {"id": 42, "name": "Ada"},
                                             "cart": ["apple"]}
        with browser.websocket_connect("/ws") as ws:
            assert ws.receive_json() == {"user": {"id": 42, "name": "Ada"}}
        assert browser.post("/logout").json() == {"bye": True}
        assert browser.get("/me").json() == {"user": None, "cart": []}
    print("fastapi example: ok")


def main() -> None:
    # Ctrl-C or SIGTERM: leave through the `with` blocks, so the throwaway Redis stops too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with redis_url() as url:
        app, _ = build(url)
        if "--selftest" in sys.argv:
            selftest(app)
        else:
            uvicorn.run(app, host="127.0.0.1", port=8000)


if __name__ == "__main__":
    main()
