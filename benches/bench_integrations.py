"""The integrations against their peers, one framework per benchmark, same Redis.

Peers: **starsessions** (``RedisStore``) for Starlette, **Flask-Session**
(``SESSION_TYPE="redis"``) for Flask, and Django's **cache engine** over
**django-redis**; each framework with **no session** at all is the baseline.
Every contender serves the same views in-process (ASGI or WSGI calls, no
sockets but Redis'), with its own defaults:

- *read*: a request presenting a stored session (a cart of five lines) reads it;
- *write*: the same, then sets one key;
- *login*: a stored anonymous session logs a user in (ours ``login()`` /
  ``cycle_key()``; starsessions ``regenerate_session_id``; Flask-Session
  ``regenerate``; Django's ``cycle_key``), a fresh session each request.

Rounds are **interleaved**: each round runs ``REQUESTS`` requests of every
contender in turn, so a slow spell of the shared machine hits them alike.
Per contender the **median** of its rounds (seconds per request) is kept;
``ratio`` = peer / ours (ours' throughput over the peer's, above 1: ours is
faster), and ``session ratio`` the same on the session's own cost (each time
minus the no-session baseline's). Redis' own cost per request is read from
``INFO commandstats`` over the timed requests: commands, and microseconds
spent in them. Before timing, every contender's answers are checked (the read
sees the cart, the write is stored, the login holds the user).

With ``--benchmark-disable`` (the normal test run) each benchmark runs one
short round as a smoke test of that checking; ``make bench`` times it.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import redis.asyncio

ROUNDS = 9
REQUESTS = 150
WORKLOADS = ("read", "write", "login")
CART = [{"sku": f"SKU-{i}", "qty": i + 1, "price": 4.5} for i in range(5)]
TARGETS = {  # ours / peer throughput, issue 8
    "starlette": {"read": 1.5, "write": 1.2, "login": 1.2},
    "flask": {"read": 1.5, "write": 1.2, "login": 1.2},
    "django": {"read": 1.1, "write": 1.2, "login": 2.0},
}


# -- measuring ------------------------------------------------------------------------


@dataclass
class Contender:
    """One way of serving the views: ``request(workload, cookie)`` -> a checked answer.

    ``prepare(workload)`` returns the cookie each request presents (None: none).
    """

    name: str
    request: Callable[[str, str | None], None]
    prepare: Callable[[str], str | None]


@dataclass
class Result:
    seconds: list[float] = field(default_factory=list)  # per request, one per round
    commands: float = 0.0  # Redis commands per request
    usec: float = 0.0  # Redis microseconds per request


def _commandstats(client: redis.Redis) -> tuple[int, float]:
    calls, usec = 0, 0.0
    for name, stats in client.info("commandstats").items():
        if name.removeprefix("cmdstat_").split("|")[0] in ("info", "ping", "flushdb",
                                                           "script", "config", "client"):
            continue
        calls += int(stats["calls"])
        usec += float(stats["usec"])
    return calls, usec


def measure(contenders: list[Contender], store: redis.Redis, rounds: int,
            requests: int) -> dict[str, dict[str, Result]]:
    """Interleaved rounds of every workload and contender; per workload, per name."""
    results: dict[str, dict[str, Result]] = {w: {c.name: Result() for c in contenders}
                                            for w in WORKLOADS}
    for _ in range(rounds):
        for workload in WORKLOADS:
            for contender in contenders:
                cookies = [contender.prepare(workload) for _ in range(requests)]
                before = _commandstats(store)
                start = time.perf_counter()
                for cookie in cookies:
                    contender.request(workload, cookie)
                elapsed = time.perf_counter() - start
                after = _commandstats(store)
                result = results[workload][contender.name]
                result.seconds.append(elapsed / requests)
                result.commands += (after[0] - before[0]) / requests / rounds
                result.usec += (after[1] - before[1]) / requests / rounds
    return results


def summary(framework: str, peer: str, results: dict[str, dict[str, Result]]
            ) -> list[dict[str, Any]]:
    rows = []
    for workload, by_name in results.items():
        none, ours, other = (statistics.median(by_name[n].seconds)
                             for n in ("none", "ours", peer))
        rows.append({
            "framework": framework, "workload": workload, "peer": peer,
            "none_us": none * 1e6, "ours_us": ours * 1e6, "peer_us": other * 1e6,
            "ratio": other / ours,
            "session_ratio": (other - none) / (ours - none) if ours > none else None,
            "target": TARGETS[framework][workload],
            "ours_commands": by_name["ours"].commands, "peer_commands": by_name[peer].commands,
            "ours_redis_us": by_name["ours"].usec, "peer_redis_us": by_name[peer].usec,
        })
    return rows


def run(benchmark: Any, framework: str, peer: str, contenders: list[Contender],
        store: redis.Redis) -> None:
    rounds, requests = (1, 3) if benchmark.disabled else (ROUNDS, REQUESTS)
    for workload in WORKLOADS:  # warm up: connections, script caches, imports
        for contender in contenders:
            contender.request(workload, contender.prepare(workload))
    results: dict[str, Any] = {}

    def timed() -> None:
        results.update(measure(contenders, store, rounds, requests))

    benchmark.group = f"integrations: {framework}"
    benchmark.pedantic(timed, rounds=1, iterations=1)
    benchmark.extra_info.update(role="peer-table", label=f"{framework} vs {peer}",
                                peer_rows=summary(framework, peer, results))


# -- Starlette: ours vs starsessions -------------------------------------------------------


class Asgi:
    """Calls an ASGI app in one event loop; answers ``(status, headers, body)``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def call(self, app: Any, path: str, cookie: str | None) -> tuple[int, list[Any], bytes]:
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
        return start["status"], start["headers"], b"".join(m.get("body", b"") for m in sent[1:])


def _set_cookie(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == b"set-cookie" and value.startswith(name.encode() + b"="):
            return value.split(b";", 1)[0].decode()
    return None


def starlette_contenders(url: str) -> tuple[list[Contender], Callable[[], None]]:
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
    ours_client = redis.asyncio.Redis.from_url(url)
    peer_client = redis.asyncio.Redis.from_url(url)
    manager = dce_session.asyncio.SessionManager(ours_client)

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
                await request.state.dce_session.login({"id": 42, "name": "Ada"})
            elif kind == "peer":
                starsessions.regenerate_session_id(request)
                request.session["user"] = {"id": 42, "name": "Ada"}
            return JSONResponse(True)

        routes = [Route(f"/{name}", view, methods=["POST"]) for name, view in
                  (("seed", seed), ("read", read), ("write", write), ("login", login))]
        middleware = []
        if kind == "ours":
            middleware = [Middleware(SessionMiddleware, manager=manager)]
        elif kind == "peer":
            store = starsessions.stores.redis.RedisStore(connection=peer_client)
            middleware = [Middleware(starsessions.SessionMiddleware, store=store,
                                     lifetime=14 * 24 * 3600, cookie_name="session",
                                     cookie_https_only=False),
                          Middleware(starsessions.SessionAutoloadMiddleware)]
        return Starlette(routes=routes, middleware=middleware)

    apps = {kind: app(kind) for kind in ("none", "ours", "peer")}

    def contender(kind: str, name: str) -> Contender:
        shared: dict[str, str | None] = {}

        def prepare(workload: str) -> str | None:
            if kind == "none":
                return None
            if workload != "login" and workload in shared:
                return shared[workload]
            status, headers, _ = asgi.call(apps[kind], "/seed", None)
            assert status == 200
            cookie = _set_cookie(headers, "session")
            assert cookie is not None
            if workload != "login":
                shared[workload] = cookie
            return cookie

        def request(workload: str, cookie: str | None) -> None:
            status, headers, _ = asgi.call(apps[kind], f"/{workload}", cookie)
            assert status == 200, (name, workload, status)
            if workload == "login" and kind != "none":
                assert _set_cookie(headers, "session") not in (None, cookie)

        return Contender(name, request, prepare)

    def close() -> None:
        asgi.loop.run_until_complete(ours_client.aclose())
        asgi.loop.run_until_complete(peer_client.aclose())
        asgi.loop.close()

    return [contender("none", "none"), contender("ours", "ours"),
            contender("peer", "starsessions")], close


# -- Flask: ours vs Flask-Session ------------------------------------------------------------


def _wsgi_call(app: Any, path: str, cookie: str | None) -> tuple[int, list[Any]]:
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
    return answer[0], answer[1]


def _wsgi_cookie(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        value = value.strip()
        if key.lower() == "set-cookie" and value.startswith(name + "="):
            pair = value.split(";", 1)[0]
            return pair if pair != f"{name}=" else None
    return None


def _wsgi_contender(name: str, app: Any, cookie_name: str, sessions: bool) -> Contender:
    shared: dict[str, str | None] = {}

    def prepare(workload: str) -> str | None:
        if not sessions:
            return None
        if workload != "login" and workload in shared:
            return shared[workload]
        status, headers = _wsgi_call(app, "/seed", None)
        assert status == 200
        cookie = _wsgi_cookie(headers, cookie_name)
        assert cookie is not None
        if workload != "login":
            shared[workload] = cookie
        return cookie

    def request(workload: str, cookie: str | None) -> None:
        status, headers = _wsgi_call(app, f"/{workload}", cookie)
        assert status == 200, (name, workload, status)
        if workload == "login" and sessions:
            assert _wsgi_cookie(headers, cookie_name) not in (None, cookie)

    return Contender(name, request, prepare)


def flask_contenders(url: str) -> tuple[list[Contender], Callable[[], None]]:
    import dce_session
    import flask
    import flask_session
    from dce_session.integrations.flask import SessionInterface

    ours_client, peer_client = redis.Redis.from_url(url), redis.Redis.from_url(url)

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
                session.dce.login({"id": 42, "name": "Ada"})  # type: ignore[attr-defined]
            elif kind == "peer":
                app.session_interface.regenerate(session)  # type: ignore[attr-defined]
                session["user"] = {"id": 42, "name": "Ada"}
            return "ok"

        return app

    contenders = [_wsgi_contender("none", app("none"), "session", False),
                  _wsgi_contender("ours", app("ours"), "session", True),
                  _wsgi_contender("Flask-Session", app("peer"), "session", True)]

    def close() -> None:
        ours_client.close()
        peer_client.close()

    return contenders, close


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
    values = {
        "SECRET_KEY": "bench-only", "USE_TZ": True, "DEBUG": False, "ALLOWED_HOSTS": ["*"],
        "ROOT_URLCONF": __name__,
        "CACHES": {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}},
        "DCE_SESSION": {"url": url}, "MIDDLEWARE": [],
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


def django_contenders() -> tuple[list[Contender], Callable[[], None]]:
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
    plain = _wsgi_contender("none", none, "sessionid", False)

    def none_request(workload: str, cookie: str | None) -> None:
        status, _ = _wsgi_call(none, f"/none/{workload}", cookie)
        assert status == 200

    contenders = [Contender("none", none_request, plain.prepare),
                  _wsgi_contender("ours", ours, "sessionid", True),
                  _wsgi_contender("cache engine (django-redis)", peer, "sessionid", True)]
    return contenders, lambda: None


# -- the benchmarks ----------------------------------------------------------------------------


@pytest.fixture
def store(url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        client.flushdb()
        yield client


def test_starlette_vs_starsessions(benchmark: Any, url: str, store: redis.Redis) -> None:
    contenders, close = starlette_contenders(url)
    try:
        run(benchmark, "starlette", "starsessions", contenders, store)
    finally:
        close()


def test_flask_vs_flask_session(benchmark: Any, url: str, store: redis.Redis) -> None:
    contenders, close = flask_contenders(url)
    try:
        run(benchmark, "flask", "Flask-Session", contenders, store)
    finally:
        close()


def test_django_vs_cache_engine(benchmark: Any, url: str, store: redis.Redis,
                                django_project: None) -> None:
    contenders, close = django_contenders()
    try:
        run(benchmark, "django", "cache engine (django-redis)", contenders, store)
    finally:
        close()
