"""Redis bytes of one typical session, ours and each peer's (issue 10 item 6).

Run as ``python -m benches.memory_peers REDIS_URL`` (``bench_memory.py``
does, in a process of its own, since Django's settings are process-wide);
prints JSON: per store, the keys one session left in Redis with their
``MEMORY USAGE ... SAMPLES 0`` bytes, and for ours the user index' bytes per
session (the index of 1,000 sessions of one user, divided).

Every store gets the same data - a logged-in user and five small values -
through its own front door (the peer's request cycle or session API, its
default serializer and settings), and reads it back the same way before it
is measured: what is measured is what was checked.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import redis

USER = {"id": 42, "name": "Zoë"}
VALUES: dict[str, Any] = {
    "locale": "de-AT",
    "theme": "dark",
    "visits": 3,
    "csrf": "4f9c1e0b7a2d4c6e8f1a3b5d7c9e0f2a",
    "flash": ["saved"],
}
DATA = {**VALUES, "user": USER}  # what the peers store (they have no user slot)


def usage(client: redis.Redis, keys: list[bytes]) -> dict[str, int]:
    return {key.decode(errors="replace"): int(client.memory_usage(key, samples=0) or 0)
            for key in sorted(keys)}


def new_keys(client: redis.Redis, action: Any) -> dict[str, int]:
    """The keys ``action()`` left in Redis, with their bytes."""
    before = set(client.keys("*"))
    action()
    return usage(client, sorted(set(client.keys("*")) - before))


def ours(client: redis.Redis) -> dict[str, Any]:
    import dce_session

    manager = dce_session.SessionManager(client)
    sid = ""

    def store() -> None:
        nonlocal sid
        session = manager.new()
        session.update(VALUES)
        sid = session.login(USER)

    keys = new_keys(client, store)
    again = manager.open(sid)
    assert again.data() == VALUES
    assert again.user() == USER
    session_keys = {k: v for k, v in keys.items() if k.startswith("dcesid:")}
    index_one = sum(v for k, v in keys.items() if k.startswith("dceusmap:"))
    for _ in range(999):  # the index of 1,000 sessions of one user, per session
        more = manager.new()
        more.set("locale", "de-AT")
        more.login(USER)
    assert len(manager.sessions_of(42)) == 1000
    index_bytes = int(client.memory_usage("dceusmap:42", samples=0) or 0)
    return {"keys": session_keys, "index_of_one": index_one,
            "index_per_session": index_bytes / 1000,
            "encoding": client.object("encoding", next(iter(session_keys))).decode()}


def flask_session(client: redis.Redis) -> dict[str, Any]:
    import flask
    import flask_session

    app = flask.Flask("memory")
    app.config.update(SESSION_TYPE="redis", SESSION_REDIS=client, SECRET_KEY="x")
    flask_session.Session(app)

    @app.post("/store")
    def store_view() -> str:
        flask.session.update(DATA)
        return "ok"

    @app.get("/read")
    def read_view() -> Any:
        return flask.jsonify(dict(flask.session))

    web = app.test_client()
    keys = new_keys(client, lambda: web.post("/store"))
    read = web.get("/read").get_json()
    assert {k: read[k] for k in DATA} == DATA, read
    return {"keys": keys, "encoding": client.object("encoding", next(iter(keys))).decode()}


def starsessions_store(url: str, client: redis.Redis) -> dict[str, Any]:
    import starsessions
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starsessions.stores.redis import RedisStore

    async def store_view(request: Request) -> JSONResponse:
        request.session.update(DATA)
        return JSONResponse(True)

    async def read_view(request: Request) -> JSONResponse:
        return JSONResponse({k: request.session.get(k) for k in DATA})

    loop = asyncio.new_event_loop()
    store = RedisStore(url)
    app = Starlette(routes=[Route("/store", store_view, methods=["POST"]),
                            Route("/read", read_view)],
                    middleware=[Middleware(starsessions.SessionMiddleware, store=store,
                                           lifetime=14 * 24 * 3600, cookie_https_only=False),
                                Middleware(starsessions.SessionAutoloadMiddleware)])

    def call(method: str, path: str, cookie: str | None) -> tuple[list[Any], bytes]:
        headers = [(b"host", b"memory")] + ([(b"cookie", cookie.encode())] if cookie else [])
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "headers": headers,
                 "client": ("127.0.0.1", 1), "server": ("memory", 80), "state": {}}
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        loop.run_until_complete(app(scope, receive, send))
        return sent[0]["headers"], b"".join(m.get("body", b"") for m in sent[1:])

    cookie: list[str] = []

    def store_one() -> None:
        headers, _ = call("POST", "/store", None)
        cookie.extend(v.decode().split(";", 1)[0] for k, v in headers if k == b"set-cookie")

    keys = new_keys(client, store_one)
    _, body = call("GET", "/read", cookie[0])
    assert json.loads(body) == DATA
    loop.close()
    return {"keys": keys, "encoding": client.object("encoding", next(iter(keys))).decode()}


def django_cache(url: str, client: redis.Redis) -> dict[str, Any]:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="memory", INSTALLED_APPS=["django.contrib.sessions"],
        CACHES={"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}},
        SESSION_ENGINE="django.contrib.sessions.backends.cache")
    django.setup()
    from django.contrib.sessions.backends.cache import SessionStore

    session = SessionStore()

    def store() -> None:
        session.update(DATA)
        session.save()

    keys = new_keys(client, store)
    again = SessionStore(session_key=session.session_key)
    assert {k: again[k] for k in DATA} == DATA
    return {"keys": keys, "encoding": client.object("encoding", next(iter(keys))).decode()}


def main(url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    client.flushdb()
    import importlib.metadata as md

    found = {
        "ours": ours(client),
        "Flask-Session": flask_session(client),
        "starsessions": starsessions_store(url, client),
        "Django cache engine (django-redis)": django_cache(url, client),
    }
    versions = {"Flask-Session": md.version("flask-session"),
                "starsessions": md.version("starsessions"),
                "Django cache engine (django-redis)":
                    f"Django {md.version('django')}, django-redis {md.version('django-redis')}"}
    for name, entry in found.items():
        entry["session_bytes"] = sum(entry["keys"].values())
        entry["version"] = versions.get(name, "")
    client.flushdb()
    client.close()
    return {"data": {"user": USER, "values": VALUES}, "stores": found}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
