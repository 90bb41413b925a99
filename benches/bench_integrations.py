"""The integrations against their peers, one framework and workload per benchmark.

Peers: **starsessions** (``RedisStore``) for Starlette, **Flask-Session**
(``SESSION_TYPE="redis"``) for Flask, and Django's **cache engine** over
**django-redis**; each framework with **no session** at all is the baseline.
Every contender serves the same views in-process (ASGI or WSGI calls, no
sockets but Redis'), with its own defaults, on the same Redis:

- *read*: a request presenting a stored session (a cart of five lines) reads it;
- *write*: the same, then sets one key;
- *login*: a stored anonymous session logs a user in (ours ``login()`` /
  ``cycle_key()``; starsessions ``regenerate_session_id``; Flask-Session
  ``regenerate``; Django's ``cycle_key``), a fresh session each request.

The method is ``paired.py``'s, as for every benchmark here: interleaved rounds
(the order of the sides alternates), each side's cookies prepared untimed
(fresh seeded sessions for a login), its answers checked untimed (the status,
and a login's new cookie). The **ratio** is ours' throughput over the peer's,
each relative to the framework with no session -- which is the peer's time
over ours in the same round; the verdict is the **median of the per-round
paired ratios** (min and max shown). *Session only* is the same on the
session's own cost (each time minus the no-session baseline's, per round).
Round trips are counted on every contender's client (one counter: the sides
run one at a time); Redis' commands and microseconds come from
``INFO commandstats`` around each timed block.

With ``--benchmark-disable`` (the normal test run) each benchmark runs one
short round: a smoke test of the views and checks, no timing kept.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio

from benches.conftest import Counter, CountingAsyncConnection, CountingConnection
from benches.paired import Rig, Side, record

ROUNDS = 15
REQUESTS = 120
WORKLOADS = ("read", "write", "login")
CART = [{"sku": f"SKU-{i}", "qty": i + 1, "price": 4.5} for i in range(5)]
USER = {"id": 42, "name": "Ada"}
TARGETS = {  # ours / peer throughput, issue 8
    "starlette": {"read": 1.5, "write": 1.2, "login": 1.2},
    "flask": {"read": 1.5, "write": 1.2, "login": 1.2},
    "django": {"read": 1.1, "write": 1.2, "login": 2.0},
}
PEERS = {"starlette": "starsessions", "flask": "Flask-Session",
         "django": "cache engine (django-redis)"}
#: one counter for every contender's client (django-redis keeps its pool per process)
COUNTER = Counter()


@dataclass
class App:
    """One contender's app: ``call(path, cookie)`` -> ``(status, set-cookie pair or None)``."""

    kind: str  # "none" | "ours" | "peer"
    call: Callable[[str, str | None], tuple[int, str | None]]

    def seeded(self) -> str:
        """A cookie presenting a stored session that holds the cart."""
        status, cookie = self.call("/seed", None)
        assert status == 200, (self.kind, status)
        assert cookie is not None, self.kind
        return cookie


def sides(framework: str, apps: dict[str, App], workload: str) -> list[Side]:
    """The three sides of one workload: ours, the peer, and no session."""
    path = f"/{workload}"
    labels = {"ours": "dce-session", "peer": PEERS[framework], "none": "no session"}
    roles = {"ours": "ours", "peer": "peer", "none": "baseline"}
    made = []
    for kind in ("ours", "peer", "none"):
        app = apps[kind]
        shared: list[str] = []

        def prepare(n: int, app: App = app, shared: list[str] = shared) -> Sequence[Any]:
            if app.kind == "none":
                return [None] * n
            if workload == "login":  # a fresh anonymous session per request
                return [app.seeded() for _ in range(n)]
            if not shared:
                shared.append(app.seeded())
            return shared * n

        def check(cookie: str | None, answer: tuple[int, str | None], app: App = app) -> None:
            status, sent = answer
            assert status == 200, (app.kind, workload, status)
            if workload == "login" and app.kind != "none":
                assert sent is not None, app.kind
                assert sent != cookie, app.kind  # a new sid

        made.append(Side(name=kind, role=roles[kind], label=labels[kind],
                         run=lambda cookie, call=app.call: call(path, cookie),
                         prepare=prepare, check=check))
    return made


# -- Starlette: ours vs starsessions -------------------------------------------------------


class Asgi:
    """Calls an ASGI app in one event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def call(self, app: Any, path: str, cookie: str | None) -> tuple[int, str | None]:
        headers = [(b"host", b"bench")]
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "headers": headers,
                 "client": ("127.0.0.1", 1), "server": ("bench", 80), "state": {}}
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        self.loop.run_until_complete(app(scope, receive, send))
        start = sent[0]
        return start["status"], _set_cookie(start["headers"], "session")


def _set_cookie(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == b"set-cookie" and value.startswith(name.encode() + b"="):
            return value.split(b";", 1)[0].decode()
    return None


def starlette_apps(url: str) -> tuple[dict[str, App], Callable[[], None]]:
    import dce_session.asyncio
    import starsessions
    import starsessions.stores.redis
    from dce_session.integrations.starlette import SessionMiddleware
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    asgi = Asgi()
    clients = [redis.asyncio.Redis.from_pool(redis.asyncio.ConnectionPool.from_url(
        url, connection_class=CountingAsyncConnection, counter=COUNTER)) for _ in range(2)]
    manager = dce_session.asyncio.SessionManager(clients[0])

    def app(kind: str) -> Starlette:
        async def seed(request: Request) -> JSONResponse:
            if kind != "none":
                request.session["cart"] = CART
            return JSONResponse(True)

        async def read(request: Request) -> JSONResponse:
            cart = request.session.get("cart") if kind != "none" else CART
            assert cart == CART
            return JSONResponse(len(cart))

        async def write(request: Request) -> JSONResponse:
            if kind != "none":
                request.session["seen"] = request.session.get("seen", 0) + 1
            return JSONResponse(True)

        async def login(request: Request) -> JSONResponse:
            if kind == "ours":
                await request.state.dce_session.login(USER)
            elif kind == "peer":
                starsessions.regenerate_session_id(request)
                request.session["user"] = USER
            return JSONResponse(True)

        routes = [Route(f"/{name}", view, methods=["POST"]) for name, view in
                  (("seed", seed), ("read", read), ("write", write), ("login", login))]
        middleware = []
        if kind == "ours":
            middleware = [Middleware(SessionMiddleware, manager=manager)]
        elif kind == "peer":
            store = starsessions.stores.redis.RedisStore(connection=clients[1])
            middleware = [Middleware(starsessions.SessionMiddleware, store=store,
                                     lifetime=14 * 24 * 3600, cookie_name="session",
                                     cookie_https_only=False),
                          Middleware(starsessions.SessionAutoloadMiddleware)]
        return Starlette(routes=routes, middleware=middleware)

    def made(kind: str) -> App:
        served = app(kind)
        return App(kind, lambda path, cookie: asgi.call(served, path, cookie))

    def close() -> None:
        for client in clients:
            asgi.loop.run_until_complete(client.aclose())
            asgi.loop.run_until_complete(client.connection_pool.aclose())
        asgi.loop.close()

    return {kind: made(kind) for kind in ("none", "ours", "peer")}, close


# -- Flask: ours vs Flask-Session ------------------------------------------------------------


def _wsgi_call(app: Any, path: str, cookie: str | None, name: str) -> tuple[int, str | None]:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "",
               "QUERY_STRING": "", "SERVER_NAME": "bench", "SERVER_PORT": "80",
               "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "bench", "wsgi.version": (1, 0),
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
               "wsgi.errors": sys.stderr, "wsgi.multithread": False,
               "wsgi.multiprocess": False, "wsgi.run_once": False, "CONTENT_LENGTH": "0",
               "REMOTE_ADDR": "127.0.0.1"}
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    answer: list[Any] = []

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        answer[:] = [int(status.split()[0]), headers]
        return lambda data: None

    body = app(environ, start_response)
    try:
        b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return answer[0], _wsgi_cookie(answer[1], name)


def _wsgi_cookie(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        value = value.strip()
        if key.lower() == "set-cookie" and value.startswith(name + "="):
            pair = value.split(";", 1)[0]
            return pair if pair != f"{name}=" else None
    return None


def _wsgi_app(kind: str, app: Any, name: str) -> App:
    return App(kind, lambda path, cookie: _wsgi_call(app, path, cookie, name))


def _counting_client(url: str) -> redis.Redis:
    return redis.Redis.from_pool(redis.ConnectionPool.from_url(
        url, connection_class=CountingConnection, counter=COUNTER))


def flask_apps(url: str) -> tuple[dict[str, App], Callable[[], None]]:
    import dce_session
    import flask
    import flask_session
    from dce_session.integrations.flask import SessionInterface

    ours_client, peer_client = _counting_client(url), _counting_client(url)

    def app(kind: str) -> flask.Flask:
        app = flask.Flask(f"bench-{kind}")
        if kind == "ours":
            SessionInterface(dce_session.SessionManager(ours_client)).init_app(app)
        elif kind == "peer":
            app.config.update(SESSION_TYPE="redis", SESSION_REDIS=peer_client)
            flask_session.Session(app)
        session = flask.session

        @app.post("/seed")
        def seed() -> Any:
            if kind != "none":
                session["cart"] = CART
            return "ok"

        @app.post("/read")
        def read() -> Any:
            cart = session.get("cart") if kind != "none" else CART
            assert cart == CART
            return "ok"

        @app.post("/write")
        def write() -> Any:
            if kind != "none":
                session["seen"] = session.get("seen", 0) + 1
            return "ok"

        @app.post("/login")
        def login() -> Any:
            if kind == "ours":
                session.dce.login(USER)  # type: ignore[attr-defined]
            elif kind == "peer":
                app.session_interface.regenerate(session)  # type: ignore[attr-defined]
                session["user"] = USER
            return "ok"

        return app

    def close() -> None:
        ours_client.close()
        peer_client.close()

    return {kind: _wsgi_app(kind, app(kind), "session") for kind in ("none", "ours", "peer")}, \
        close


# -- Django: ours vs the cache engine over django-redis --------------------------------------


def _django_views() -> list[Any]:
    from django.http import HttpRequest, HttpResponse
    from django.urls import path

    def seed(request: HttpRequest) -> HttpResponse:
        request.session["cart"] = CART
        return HttpResponse("ok")

    def read(request: HttpRequest) -> HttpResponse:
        assert request.session.get("cart") == CART
        return HttpResponse("ok")

    def write(request: HttpRequest) -> HttpResponse:
        request.session["seen"] = request.session.get("seen", 0) + 1
        return HttpResponse("ok")

    def login(request: HttpRequest) -> HttpResponse:
        request.session.cycle_key()  # what django.contrib.auth.login does
        request.session["_auth_user_id"] = "42"
        return HttpResponse("ok")

    def plain(request: HttpRequest, name: str) -> HttpResponse:
        return HttpResponse("ok")

    return [path("seed", seed), path("read", read), path("write", write),
            path("login", login), path("none/<str:name>", plain)]


urlpatterns: list[Any] = []


@pytest.fixture
def django_project(url: str) -> Iterator[None]:
    import django
    from django.conf import settings
    from django.test import override_settings

    urlpatterns[:] = _django_views()
    ours_client = _counting_client(url)
    values = {
        "SECRET_KEY": "bench-only", "USE_TZ": True, "DEBUG": False, "ALLOWED_HOSTS": ["*"],
        "ROOT_URLCONF": __name__,
        "CACHES": {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url,
                               "OPTIONS": {"CONNECTION_POOL_KWARGS": {
                                   "connection_class": CountingConnection,
                                   "counter": COUNTER}}}},
        "DCE_SESSION": {"client": lambda: ours_client}, "MIDDLEWARE": [],
    }
    if not settings.configured:
        settings.configure(INSTALLED_APPS=[], DATABASES={}, **values)
        django.setup()
    from dce_session.integrations.django import reset_manager

    with override_settings(**values):
        try:
            yield
        finally:
            reset_manager()
            ours_client.close()


def django_apps() -> tuple[dict[str, App], Callable[[], None]]:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    def handler(engine: str | None, middleware: str) -> WSGIHandler:
        options: dict[str, Any] = {"MIDDLEWARE": [middleware] if engine else []}
        if engine:
            options["SESSION_ENGINE"] = engine
        with override_settings(**options):
            return WSGIHandler()

    ours = handler("dce_session.integrations.django",
                   "dce_session.integrations.django.SessionMiddleware")
    peer = handler("django.contrib.sessions.backends.cache",
                   "django.contrib.sessions.middleware.SessionMiddleware")
    none = handler(None, "")
    apps = {"ours": _wsgi_app("ours", ours, "sessionid"),
            "peer": _wsgi_app("peer", peer, "sessionid"),
            "none": App("none", lambda path, cookie: _wsgi_call(none, f"/none{path}", cookie,
                                                                "sessionid"))}
    return apps, lambda: None


# -- the benchmarks ----------------------------------------------------------------------------


@pytest.fixture
def store(url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        client.flushdb()
        yield client


def _run(benchmark: Any, framework: str, workload: str, apps: dict[str, App],
         stats: redis.Redis) -> None:
    record(benchmark, "integrations", f"integrations: {framework} {workload}",
           Rig(stats, COUNTER), sides(framework, apps, workload), rounds=ROUNDS, n=REQUESTS,
           target=TARGETS[framework][workload], framework=framework, workload=workload,
           peer=PEERS[framework])


@pytest.mark.parametrize("workload", WORKLOADS)
def test_starlette_vs_starsessions(benchmark: Any, url: str, store: redis.Redis,
                                   stats: redis.Redis, workload: str) -> None:
    apps, close = starlette_apps(url)
    try:
        _run(benchmark, "starlette", workload, apps, stats)
    finally:
        close()


@pytest.mark.parametrize("workload", WORKLOADS)
def test_flask_vs_flask_session(benchmark: Any, url: str, store: redis.Redis,
                                stats: redis.Redis, workload: str) -> None:
    apps, close = flask_apps(url)
    try:
        _run(benchmark, "flask", workload, apps, stats)
    finally:
        close()


@pytest.mark.parametrize("workload", WORKLOADS)
def test_django_vs_cache_engine(benchmark: Any, url: str, store: redis.Redis,
                                stats: redis.Redis, django_project: None,
                                workload: str) -> None:
    apps, close = django_apps()
    try:
        _run(benchmark, "django", workload, apps, stats)
    finally:
        close()
