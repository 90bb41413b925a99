"""The fleet example's app: one FastAPI server of several sharing one Redis.

Each uvicorn process runs this module (``examples/fleet/run.py`` starts two);
they share the store through ``REDIS_URL`` and each one names itself with
``FLEET_SERVER`` (default ``<hostname>:<pid>``); ``FLEET_CLUSTER=1`` makes
``REDIS_URL`` a Redis Cluster node. Endpoints:

- ``POST /login`` ``{"uid": 42, "name": "Ada"}``: a logged-in session; the
  ``session`` cookie carries its sid (what Starlette's session cookie is called).
- ``GET /ws`` (websocket, needs the cookie): the notification/chat socket. It
  says ``{"hello": <server>, "uid": ...}`` first; a text message
  ``{"to": 7, "text": "hi"}`` is sent to every socket of user 7, wherever it is.
- ``POST /send/{uid}`` ``{"text": ...}``: the same over http ("send to user 42").
- ``POST /logout-everywhere``: ends every session of the cookie's user; every
  one of their sockets, on every server, is closed (code 4401) within
  moments, by the ``logout_everywhere`` event each server's hub receives.
- ``GET /connections/{uid}``: ``manager.connections_of(uid)`` as JSON.
- ``GET /``: a tiny page to try it in a browser.

Routing: ``SocketHub.send_to_user`` delivers to this server's sockets and
PUBLISHes once per other server that holds a socket of the user, on that
server's channel ``dcesid~socket~<server>``; each hub listens on its own.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import dce_session.asyncio
import redis.asyncio
import redis.asyncio.cluster
from dce_session import SessionEvent
from dce_session.integrations.websocket import SocketHub, SocketSession
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse

COOKIE = "session"
SERVER = os.environ.get("FLEET_SERVER") or None
BEAT_EVERY = float(os.environ.get("FLEET_BEAT_EVERY", "5"))

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
client: Any = (redis.asyncio.cluster.RedisCluster.from_url(URL)  # FLEET_CLUSTER=1: a cluster node
               if os.environ.get("FLEET_CLUSTER") == "1" else redis.asyncio.Redis.from_url(URL))
manager = dce_session.asyncio.SessionManager(client, ttl_minutes=60)


async def tell(socket: SocketSession, event: SessionEvent) -> None:
    """Every event about a socket's session is told to its client first."""
    await socket.send_json({"event": event.kind})


hub = SocketHub(manager, server=SERVER, session_cookie=COOKIE, require_user=True,
                watch_events=True, on_event=tell, beat_every=BEAT_EVERY, poll=0.1)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with hub:  # presence, routing channel, session events
        yield
    await client.aclose()


app = FastAPI(lifespan=lifespan)


async def current_uid(request: Request) -> int | None:
    uid: int | None = await manager.open(request.cookies.get(COOKIE)).uid()
    return uid


@app.post("/login")
async def login(request: Request) -> JSONResponse:
    body = await request.json()
    session = manager.open(request.cookies.get(COOKIE))
    sid = await session.login({"id": int(body["uid"]), "name": body.get("name", "")})
    response = JSONResponse({"server": hub.server, "uid": int(body["uid"])})
    response.set_cookie(COOKIE, sid, httponly=True, samesite="lax")
    return response


@app.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    socket = await hub.accept(websocket)
    if socket is None:
        return  # no live logged-in session: refused (HTTP 403)
    async with socket:  # the binding goes when the socket does, however it ends
        await socket.send_json({"hello": hub.server, "uid": socket.uid})
        async for text in socket.iter_text():
            message = json.loads(text)
            delivery = await hub.send_to_user(int(message["to"]), {
                "from": socket.uid, "text": message.get("text", "")})
            await socket.send_json({"sent": delivery.reached})


@app.post("/send/{uid}")
async def send(uid: int, request: Request) -> dict[str, Any]:
    body = await request.json()
    delivery = await hub.send_to_user(uid, {"from": await current_uid(request),
                                            "text": body.get("text", "")})
    return {"local": delivery.local, "forwarded": list(delivery.forwarded),
            "unreachable": list(delivery.unreachable)}


@app.post("/logout-everywhere")
async def logout_everywhere(request: Request) -> JSONResponse:
    uid = await current_uid(request)
    if uid is None:
        return JSONResponse({"error": "not logged in"}, status_code=401)
    ended = await manager.logout_everywhere(uid)
    response = JSONResponse({"ended": ended})
    response.delete_cookie(COOKIE)
    return response


@app.get("/connections/{uid}")
async def connections(uid: int) -> list[list[Any]]:
    return [list(row) for row in await manager.connections_of(uid)]


@app.get("/health")
async def health() -> dict[str, Any]:
    return {"server": hub.server, "sockets": len(hub.sockets())}


PAGE = """<!doctype html><meta charset=utf-8><title>dce-session fleet</title>
<p>Server <b>%s</b>. <input id=uid value=42 size=4> <button onclick=login()>log in</button>
<button onclick=connect()>open socket</button>
<button onclick="fetch('/logout-everywhere',{method:'POST'})">log out everywhere</button></p>
<p>to <input id=to value=42 size=4> <input id=text value=hello>
<button onclick="sock.send(JSON.stringify({to:+to.value,text:text.value}))">send</button></p>
<pre id=log></pre><script>
let sock; const say = m => log.textContent += m + "\\n";
async function login() { await fetch('/login', {method: 'POST',
  headers: {'content-type': 'application/json'}, body: JSON.stringify({uid: +uid.value})});
  say('logged in as ' + uid.value); }
function connect() { sock = new WebSocket(location.origin.replace('http', 'ws') + '/ws');
  sock.onmessage = e => say(e.data); sock.onclose = e => say('closed ' + e.code + ' ' + e.reason); }
</script>"""


@app.get("/")
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE % hub.server)
