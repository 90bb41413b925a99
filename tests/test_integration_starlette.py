"""dce_session.integrations.starlette over a real uvicorn server and a real cookie jar.

Each test serves its app with uvicorn on a free loopback port (``tests/_servers.py``)
and talks to it with an httpx2 client, whose cookie jar keeps, sends and drops
cookies as a browser does (a ``Secure`` cookie only goes back over https, an
expired one is dropped). Requests "over https" come through a trusted proxy
(``X-Forwarded-Proto: https``), as in most deployments. Round trips are counted
on the manager's asyncio client (``trips``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import socket
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import dce_session.asyncio
import fastapi
import httpx2 as httpx
import pytest
import redis
import redis.asyncio
import websockets.sync.client
from _servers import Background, Gate, rotate_elsewhere, uvicorn_server
from conftest import CountingAsyncConnection, RoundTrips, cache_scripts
from dce_session import RenewPolicy
from dce_session.core import generate_sid, is_valid_sid, parse_sid
from dce_session.errors import ConfigError
from dce_session.integrations import _common
from dce_session.integrations import starlette as integration
from dce_session.integrations.fastapi import CurrentSession, SessionValues
from dce_session.integrations.starlette import (
    SessionMapping,
    SessionMiddleware,
    get_session_id,
    load_session,
    regenerate_session_id,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

COOKIE = "session"
HTTPS = {"x-forwarded-proto": "https"}
FOURTEEN_DAYS = 14 * 24 * 3600


def live_keys(store: redis.Redis) -> list[str]:
    """The session and user-index keys in Redis (replay records left aside)."""
    return sorted(store.keys("dcesid:*") + store.keys("dceusmap:*"))  # type: ignore[operator]



# -- the app -------------------------------------------------------------------------


def build_app(manager: dce_session.asyncio.SessionManager, gate: Gate | None = None,
              **options: Any) -> Starlette:
    async def nothing(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def values(request: Request) -> Response:
        return JSONResponse(dict(request.session))

    async def put(request: Request) -> Response:
        request.session.update(await request.json())
        return JSONResponse(dict(request.session))

    async def remove(request: Request) -> Response:
        for field in await request.json():
            del request.session[field]
        return JSONResponse(dict(request.session))

    async def append(request: Request) -> Response:
        request.session["items"].append(len(request.session["items"]))
        return JSONResponse(dict(request.session))

    async def login(request: Request) -> Response:
        sid = await request.state.dce_session.login(await request.json())
        return JSONResponse({"sid": sid, "values": dict(request.session)})

    async def user(request: Request) -> Response:
        return JSONResponse(await request.state.dce_session.user())

    async def clear(request: Request) -> Response:
        request.session.clear()
        return PlainTextResponse("bye")

    async def clear_then_flash(request: Request) -> Response:
        request.session.clear()
        request.session["flash"] = "logged out"
        return PlainTextResponse("bye")

    async def destroy(request: Request) -> Response:
        return JSONResponse(await request.state.dce_session.destroy())

    async def lazy(request: Request) -> Response:
        await load_session(request)
        request.session["n"] = request.session.get("n", 0) + 1
        return JSONResponse({"n": request.session["n"], "sid": get_session_id(request)})

    async def regenerate(request: Request) -> Response:
        request.session["pending"] = True
        return JSONResponse({"sid": await regenerate_session_id(request)})

    async def regenerate_later(request: Request) -> Response:
        """starsessions' way: no await. The warnings seen once the result is gone."""
        request.session["pending"] = True
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            regenerate_session_id(request)
            gc.collect()
        return JSONResponse({"during": get_session_id(request),
                             "warnings": [str(w.message) for w in seen]})

    async def regenerate_twice(request: Request) -> Response:
        first = await regenerate_session_id(request)
        regenerate_session_id(request)
        return JSONResponse([first, await regenerate_session_id(request)])

    async def regenerate_unloaded(request: Request) -> Response:
        regenerate_session_id(request)
        return PlainTextResponse("ok")

    async def regenerate_then_clear(request: Request) -> Response:
        regenerate_session_id(request)
        request.session.clear()
        return PlainTextResponse("bye")

    async def slow_regenerate(request: Request) -> Response:
        """As ``slow``, with a regeneration asked (no await) before waiting."""
        request.session["a"] = "from the slow tab"
        regenerate_session_id(request)
        assert gate is not None
        await anyio.to_thread.run_sync(gate.hold)
        return PlainTextResponse("slow done")

    async def slow(request: Request) -> Response:
        """Load the session, edit a key, then wait inside the view for the test."""
        request.session["a"] = "from the slow tab"
        assert gate is not None
        await anyio.to_thread.run_sync(gate.hold)
        return PlainTextResponse("slow done")

    async def slow_read(request: Request) -> Response:
        """Load the session, then wait inside the view; no change."""
        seen = dict(request.session)
        assert gate is not None
        await anyio.to_thread.run_sync(gate.hold)
        return JSONResponse(seen)

    async def peek(request: Request) -> Response:
        try:
            return JSONResponse(dict(request.session))
        except integration.SessionNotLoaded as error:
            return JSONResponse(type(error).__name__)

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(dict(websocket.session))
        websocket.session.update(await websocket.receive_json())
        await websocket.close()

    async def ws_regenerate(websocket: WebSocket) -> None:
        regenerate_session_id(websocket)
        await websocket.accept()
        await websocket.send_json(dict(websocket.session))
        await websocket.close()

    routes = [
        Route("/nothing", nothing), Route("/values", values),
        Route("/put", put, methods=["POST"]), Route("/remove", remove, methods=["POST"]),
        Route("/append", append, methods=["POST"]), Route("/login", login, methods=["POST"]),
        Route("/user", user), Route("/clear", clear, methods=["POST"]),
        Route("/clear-then-flash", clear_then_flash, methods=["POST"]),
        Route("/destroy", destroy, methods=["POST"]), Route("/lazy", lazy, methods=["POST"]),
        Route("/regenerate", regenerate, methods=["POST"]),
        Route("/regenerate-later", regenerate_later, methods=["POST"]),
        Route("/regenerate-twice", regenerate_twice, methods=["POST"]),
        Route("/regenerate-unloaded", regenerate_unloaded, methods=["POST"]),
        Route("/regenerate-then-clear", regenerate_then_clear, methods=["POST"]),
        Route("/slow-regenerate", slow_regenerate, methods=["POST"]),
        Route("/slow", slow, methods=["POST"]), Route("/slow-read", slow_read),
        Route("/peek", peek),
        WebSocketRoute("/ws", echo), WebSocketRoute("/ws-regenerate", ws_regenerate),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(SessionMiddleware, manager=manager, **options)
    return app


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def trips() -> RoundTrips:
    return RoundTrips()


@pytest.fixture
def make_manager(redis_url: str, trips: RoundTrips, store: redis.Redis
                 ) -> Iterator[Callable[..., dce_session.asyncio.SessionManager]]:
    """Asyncio managers over counted clients, their scripts in the server's cache
    (round trips count no NOSCRIPT retry); each client is closed by the server
    that used it (in its own event loop)."""
    made: list[dce_session.asyncio.SessionManager] = []

    def make(**kwargs: Any) -> dce_session.asyncio.SessionManager:
        pool = redis.asyncio.ConnectionPool.from_url(
            redis_url, connection_class=CountingAsyncConnection, round_trips=trips)
        manager = cache_scripts(store, dce_session.asyncio.SessionManager(
            redis.asyncio.Redis.from_pool(pool), **kwargs))
        made.append(manager)
        return manager

    return make


@pytest.fixture
def serve(trips: RoundTrips) -> Iterator[Callable[..., httpx.Client]]:
    """``serve(app, manager)``: a browser (httpx client + cookie jar) on ``app``
    served by uvicorn; the manager's client is closed in the server's loop."""
    with contextlib.ExitStack() as stack:

        def start(app: Any, manager: dce_session.asyncio.SessionManager) -> httpx.Client:
            url = stack.enter_context(uvicorn_server(app, [manager.client.aclose]))
            browser = stack.enter_context(httpx.Client(base_url=url, timeout=10))
            trips.reset()
            return browser

        yield start


@pytest.fixture
def manager(make_manager: Callable[..., dce_session.asyncio.SessionManager]
            ) -> dce_session.asyncio.SessionManager:
    return make_manager()


@pytest.fixture
def web(serve: Callable[..., httpx.Client],
        manager: dce_session.asyncio.SessionManager) -> httpx.Client:
    return serve(build_app(manager), manager)


# -- helpers -----------------------------------------------------------------------------


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def attributes(header: str) -> tuple[str, str, dict[str, str]]:
    """``(name, value, {attribute lower-case: value})`` of one Set-Cookie header."""
    pair, *rest = (part.strip() for part in header.split(";"))
    name, _, value = pair.partition("=")
    attrs = {}
    for item in rest:
        key, _, val = item.partition("=")
        attrs[key.lower()] = val
    return name, value, attrs


def new_sid(response: httpx.Response) -> str:
    """The sid a response hands out (exactly one Set-Cookie, a live one)."""
    [header] = set_cookies(response)
    name, value, attrs = attributes(header)
    assert name == COOKIE
    assert "expires" not in attrs
    assert is_valid_sid(value)
    return value


def assert_expired(response: httpx.Response) -> None:
    [header] = set_cookies(response)
    name, _, attrs = attributes(header)
    assert name == COOKIE
    assert "1970" in attrs["expires"]


def stored(store: redis.Redis, sid: str) -> dict[str, str]:
    return store.hgetall(f"dcesid:{sid}")  # type: ignore[return-value]


def jar(browser: httpx.Client) -> str | None:
    return browser.cookies.get(COOKIE)


def warned(caplog: pytest.LogCaptureFixture) -> bool:
    """Whether the race WARNING went out on the ``dce_session`` logger."""
    return any(r.name == "dce_session" and r.levelno == logging.WARNING
               and "ended by another request" in r.getMessage() for r in caplog.records)


# -- Starlette's settings ------------------------------------------------------------------


def test_defaults_are_starlettes_and_the_lifetime_is_the_redis_ttl(
        web: httpx.Client, trips: RoundTrips, store: redis.Redis) -> None:
    response = web.post("/put", json={"a": 1, "b": [1, "x"]})
    assert trips.count == 1  # the write only: nothing to load
    [header] = set_cookies(response)
    name, sid, attrs = attributes(header)
    assert name == "session"
    # Starlette's own: path=/, Max-Age 14 days, httponly, samesite=lax, no Secure on http
    assert attrs == {"path": "/", "max-age": str(FOURTEEN_DAYS), "httponly": "",
                     "samesite": "lax"}
    assert "Cookie" in response.headers["vary"]
    assert parse_sid(sid)[0] == FOURTEEN_DAYS // 60  # the sid carries the lifetime
    assert FOURTEEN_DAYS - 5 <= store.ttl(f"dcesid:{sid}") <= FOURTEEN_DAYS
    assert stored(store, sid) == {"a": "1", "b": '[1,"x"]'}
    # plain http: the jar sends the cookie back (a forced Secure would lose the session)
    trips.reset()
    response = web.get("/values")
    assert response.json() == {"a": 1, "b": [1, "x"]}
    assert set_cookies(response) == []  # same sid, nothing written: nothing to re-send
    assert trips.count == 1


def test_options_shape_the_cookie(serve: Callable[..., httpx.Client],
                                  manager: dce_session.asyncio.SessionManager,
                                  store: redis.Redis) -> None:
    app = build_app(manager, session_cookie="sid", path="/", domain="127.0.0.1",
                    same_site="strict", https_only=True, max_age=600, partitioned=True)
    browser = serve(app, manager)
    [header] = set_cookies(browser.post("/put", json={"a": 1}, headers=HTTPS))
    name, sid, attrs = attributes(header)
    assert name == "sid"
    assert attrs == {"path": "/", "max-age": "600", "httponly": "", "samesite": "strict",
                     "secure": "", "domain": "127.0.0.1", "partitioned": ""}
    assert parse_sid(sid)[0] == 10
    assert 595 <= store.ttl(f"dcesid:{sid}") <= 600


def test_cookie_name_is_an_alias_and_max_age_none_is_a_browser_session(
        serve: Callable[..., httpx.Client],
        make_manager: Callable[..., dce_session.asyncio.SessionManager],
        store: redis.Redis) -> None:
    manager = make_manager(ttl_minutes=7)
    browser = serve(build_app(manager, cookie_name="dce", max_age=None), manager)
    [header] = set_cookies(browser.post("/put", json={"a": 1}))
    name, sid, attrs = attributes(header)
    assert name == "dce"
    assert "max-age" not in attrs
    assert parse_sid(sid)[0] == 7  # the manager's ttl_minutes
    assert browser.get("/values").json() == {"a": 1}


def test_secure_when_the_request_came_over_https(web: httpx.Client) -> None:
    [header] = set_cookies(web.post("/put", json={"a": 1}, headers=HTTPS))
    assert "secure" in attributes(header)[2]


def test_bad_settings_are_config_errors(manager: dce_session.asyncio.SessionManager,
                                        store: redis.Redis,
                                        caplog: pytest.LogCaptureFixture) -> None:
    app = Starlette()
    with pytest.raises(ConfigError, match="same_site"):
        SessionMiddleware(app, manager, same_site="loose")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_age"):
        SessionMiddleware(app, manager, max_age=-1)
    with pytest.raises(ConfigError, match="at most 65535 minutes"):
        SessionMiddleware(app, manager, max_age=60 * 24 * 3600)
    with pytest.raises(ConfigError, match="asyncio"):
        SessionMiddleware(app, dce_session.SessionManager(store))  # type: ignore[arg-type]
    assert SessionMiddleware(app, manager, max_age=65535 * 60).ttl == 65535
    # Starlette builds middleware lazily (in its lifespan): the error is logged too
    logged = [r.getMessage() for r in caplog.records
              if r.name == "dce_session" and r.levelno == logging.ERROR]
    assert len(logged) == 4
    assert logged[0] == \
        "SessionMiddleware: same_site must be 'lax', 'strict' or 'none', got 'loose'"


# -- cost ------------------------------------------------------------------------------------


def test_no_cookie_costs_no_round_trip_and_sets_no_cookie(
        web: httpx.Client, trips: RoundTrips, store: redis.Redis) -> None:
    response = web.get("/nothing")
    assert response.text == "ok"
    assert set_cookies(response) == []
    assert web.get("/values").json() == {}
    assert trips.count == 0
    assert live_keys(store) == []


def test_autoload_false_costs_nothing_until_load_session(
        serve: Callable[..., httpx.Client], manager: dce_session.asyncio.SessionManager,
        trips: RoundTrips) -> None:
    browser = serve(build_app(manager, autoload=False), manager)
    response = browser.post("/lazy")
    sid = new_sid(response)
    assert response.json() == {"n": 1, "sid": None}  # starsessions': no id until stored
    assert browser.post("/lazy").json() == {"n": 2, "sid": sid}
    trips.reset()
    assert browser.get("/nothing").text == "ok"
    assert trips.count == 0


def test_autoload_false_routes_that_never_load_survive_a_redis_outage(
        serve: Callable[..., httpx.Client], manager: dce_session.asyncio.SessionManager,
        store: redis.Redis) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    down = dce_session.asyncio.SessionManager(
        redis.asyncio.Redis(host="127.0.0.1", port=dead, socket_connect_timeout=1))
    browser = serve(build_app(down, autoload=False), down)
    browser.cookies.set(COOKIE, generate_sid(60))
    assert browser.get("/nothing").status_code == 200
    assert browser.post("/lazy").status_code == 500  # the route that loads: StoreError


def test_the_unloaded_session_says_so(serve: Callable[..., httpx.Client],
                                      manager: dce_session.asyncio.SessionManager) -> None:
    browser = serve(build_app(manager, autoload=False), manager)
    assert browser.get("/peek").json() == "SessionNotLoaded"  # not a silent {}
    assert browser.get("/nothing").status_code == 200


def test_a_presented_session_is_loaded_once_and_its_ttl_refreshed(
        web: httpx.Client, trips: RoundTrips, store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"a": 1}))
    store.expire(f"dcesid:{sid}", 100)
    trips.reset()
    assert set_cookies(web.get("/nothing")) == []
    assert trips.count == 1
    assert store.ttl(f"dcesid:{sid}") > 100


# -- no adoption, the cookie left alone when unknown -------------------------------------


def test_a_forged_sid_is_never_adopted_nor_expired(web: httpx.Client, trips: RoundTrips,
                                                   store: redis.Redis) -> None:
    forged = generate_sid(60)
    web.cookies.set(COOKIE, forged)
    response = web.get("/values")
    assert response.json() == {}
    assert set_cookies(response) == []  # left alone: it might be another tab's old one
    assert trips.count == 1
    sid = new_sid(web.post("/put", json={"a": 1}))
    assert sid != forged
    assert parse_sid(sid)[0] == FOURTEEN_DAYS // 60  # a fresh session of our lifetime
    assert store.exists(f"dcesid:{forged}") == 0
    assert stored(store, sid) == {"a": "1"}


def test_a_malformed_cookie_is_never_looked_up(web: httpx.Client, trips: RoundTrips,
                                               store: redis.Redis) -> None:
    web.cookies.set(COOKIE, "dcesid:../../etc")
    assert set_cookies(web.get("/nothing")) == []
    assert trips.count == 0
    sid = new_sid(web.post("/put", json={"a": 1}))
    assert store.keys() == [f"dcesid:{sid}"]


# -- writes: only what changed -----------------------------------------------------------


def test_only_changed_fields_are_written_and_a_write_refreshes_the_cookie(
        web: httpx.Client, trips: RoundTrips, store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"a": 1, "b": 2, "c": 3}))
    store.hset(f"dcesid:{sid}", "b", "2 ")  # another dce service's spacing: the same value
    trips.reset()
    response = web.post("/put", json={"a": 10, "b": 2})
    [header] = set_cookies(response)  # Starlette re-sends a modified session's cookie
    assert attributes(header)[1] == sid
    assert trips.count == 2  # load + one write
    assert stored(store, sid) == {"a": "10", "b": "2 ", "c": "3"}
    trips.reset()
    web.get("/values")
    assert trips.count == 1
    trips.reset()
    assert web.post("/remove", json=["a", "c"]).json() == {"b": 2}
    assert trips.count == 2
    assert stored(store, sid) == {"b": "2 "}


def test_in_place_edits_are_saved(web: httpx.Client, store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"items": []}))
    web.post("/append")
    assert web.post("/append").json() == {"items": [0, 1]}
    assert stored(store, sid) == {"items": "[0,1]"}


def test_over_half_its_age_the_cookie_is_refreshed(
        serve: Callable[..., httpx.Client],
        make_manager: Callable[..., dce_session.asyncio.SessionManager]) -> None:
    now = [1_700_000_000.0]
    manager = make_manager(clock=lambda: now[0])
    browser = serve(build_app(manager, max_age=600), manager)
    sid = new_sid(browser.post("/put", json={"a": 1}))
    now[0] += 300
    assert set_cookies(browser.get("/values")) == []  # half its age: not yet
    now[0] += 1
    [header] = set_cookies(browser.get("/values"))
    assert attributes(header)[1:] == (sid, {"path": "/", "max-age": "600", "httponly": "",
                                            "samesite": "lax"})


# -- login, the end, rotation ---------------------------------------------------------


def test_login_resends_the_cookie_and_hides_the_user(web: httpx.Client,
                                                     store: redis.Redis) -> None:
    old = new_sid(web.post("/put", json={"a": 1}))
    response = web.post("/login", json={"id": 7, "name": "Ada"})
    sid = new_sid(response)
    assert sid != old
    assert response.json() == {"sid": sid, "values": {"a": 1}}
    assert store.exists(f"dcesid:{old}") == 0
    assert web.get("/values").json() == {"a": 1}
    assert web.get("/user").json() == {"id": 7, "name": "Ada"}
    assert store.smembers("dceusmap:7") == {sid}


def test_regenerate_session_id_moves_the_data_and_the_pending_changes(
        web: httpx.Client, store: redis.Redis) -> None:
    old = new_sid(web.post("/put", json={"a": 1}))
    response = web.post("/regenerate")
    sid = new_sid(response)
    assert response.json() == {"sid": sid}
    assert sid != old
    assert store.exists(f"dcesid:{old}") == 0
    assert stored(store, sid) == {"a": "1", "pending": "true"}


def test_regenerate_session_id_without_await_regenerates_when_the_response_starts(
        web: httpx.Client, trips: RoundTrips, store: redis.Redis) -> None:
    old = new_sid(web.post("/put", json={"a": 1}))
    trips.reset()
    response = web.post("/regenerate-later")
    sid = new_sid(response)
    assert sid != old
    assert response.json()["during"] == old  # the current sid until the response starts
    assert trips.count == 2  # load + the regeneration (no separate write of "pending")
    assert store.exists(f"dcesid:{old}") == 0
    assert stored(store, sid) == {"a": "1", "pending": "true"}  # the pending change moved
    assert jar(web) == sid
    assert web.get("/values").json() == {"a": 1, "pending": True}


def test_regenerate_session_id_without_await_raises_no_never_awaited_warning(
        web: httpx.Client) -> None:
    new_sid(web.post("/put", json={"a": 1}))
    assert web.post("/regenerate-later").json()["warnings"] == []


def test_regenerate_session_id_awaited_is_done_once_per_request(
        web: httpx.Client, store: redis.Redis) -> None:
    old = new_sid(web.post("/put", json={"a": 1}))
    response = web.post("/regenerate-twice")
    sid = new_sid(response)
    assert response.json() == [sid, sid]  # the later calls give the current sid
    assert sid != old
    assert live_keys(store) == [f"dcesid:{sid}"]  # one regeneration: no sid in between
    assert stored(store, sid) == {"a": "1"}


def test_regenerate_session_id_without_await_loads_an_unloaded_session(
        serve: Callable[..., httpx.Client],
        manager: dce_session.asyncio.SessionManager, store: redis.Redis) -> None:
    browser = serve(build_app(manager, autoload=False), manager)
    old = new_sid(browser.post("/lazy"))
    sid = new_sid(browser.post("/regenerate-unloaded"))  # the view never loads
    assert sid != old
    assert store.exists(f"dcesid:{old}") == 0
    assert stored(store, sid) == {"n": "1"}


def test_clear_after_regenerate_session_id_ends_the_session(
        web: httpx.Client, store: redis.Redis) -> None:
    new_sid(web.post("/put", json={"a": 1}))
    assert_expired(web.post("/regenerate-then-clear"))
    assert live_keys(store) == []


def test_regenerate_session_id_without_await_on_a_websocket_is_done_at_accept(
        web: httpx.Client, store: redis.Redis) -> None:
    old = new_sid(web.post("/put", json={"a": 1}))
    with _ws(web, "/ws-regenerate") as ws:
        [header] = ws.response.headers.get_all("set-cookie")
        name, sid, _ = attributes(header)
        assert name == COOKIE
        assert sid != old
        assert json.loads(ws.recv(timeout=10)) == {"a": 1}
    assert store.exists(f"dcesid:{old}") == 0
    assert stored(store, sid) == {"a": "1"}


def test_clear_destroys_the_session_and_expires_the_cookie(
        web: httpx.Client, trips: RoundTrips, store: redis.Redis) -> None:
    sid = new_sid(web.post("/login", json={"id": 9}))
    assert_expired(web.post("/clear"))
    assert store.exists(f"dcesid:{sid}") == 0
    assert store.smembers("dceusmap:9") == set()
    assert jar(web) is None  # the jar dropped it...
    trips.reset()
    assert set_cookies(web.get("/nothing")) == []
    assert trips.count == 0  # ...so the next request is free again


def test_values_set_after_clear_start_a_new_session(web: httpx.Client,
                                                    store: redis.Redis) -> None:
    old = new_sid(web.post("/put", json={"a": 1}))
    sid = new_sid(web.post("/clear-then-flash"))
    assert sid != old
    assert store.exists(f"dcesid:{old}") == 0
    assert stored(store, sid) == {"flash": '"logged out"'}


def test_destroy_through_the_session_expires_the_cookie(web: httpx.Client,
                                                        store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"a": 1}))
    response = web.post("/destroy")
    assert response.json() is True
    assert_expired(response)
    assert store.exists(f"dcesid:{sid}") == 0


@pytest.fixture
def renewing(serve: Callable[..., httpx.Client],
             make_manager: Callable[..., dce_session.asyncio.SessionManager],
             ) -> tuple[list[float], httpx.Client, str]:
    """A browser on an app whose manager rotates every 600 s (clock ``now``),
    holding a session with a=1: (now, browser, its sid)."""
    now = [1_700_000_000.0]
    manager = make_manager(renew=RenewPolicy(interval_seconds=600), clock=lambda: now[0])
    browser = serve(build_app(manager), manager)
    return now, browser, new_sid(browser.post("/put", json={"a": 1}))


def test_rotation_runs_in_the_middleware_when_the_manager_has_renew(
        renewing: tuple[list[float], httpx.Client, str], store: redis.Redis) -> None:
    now, browser, old = renewing
    assert set_cookies(browser.get("/values")) == []
    now[0] += 601
    response = browser.get("/values")  # the view never calls try_renew
    sid = new_sid(response)
    assert sid != old
    assert response.json() == {"a": 1}
    assert stored(store, old)["$newid"] == sid
    assert jar(browser) == sid
    assert browser.get("/values").json() == {"a": 1}


def test_bookkeeping_fields_are_not_session_values(web: httpx.Client,
                                                   store: redis.Redis) -> None:
    sid = new_sid(web.post("/login", json={"id": 5}))
    store.hset(f"dcesid:{sid}", mapping={"$server": "ws1", "$client": "c1"})
    assert web.get("/values").json() == {}
    assert web.post("/put", json={"$user": {"id": 1}}).status_code == 500
    assert json.loads(stored(store, sid)["$user"]) == {"id": 5}


def test_a_field_that_is_not_json_is_left_alone(web: httpx.Client, store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"a": 1}))
    store.hset(f"dcesid:{sid}", "foreign", "not json")
    assert web.post("/put", json={"b": 2}).json() == {"a": 1, "b": 2}
    assert stored(store, sid) == {"a": "1", "b": "2", "foreign": "not json"}


# -- races: two tabs, one browser ---------------------------------------------------------


def _two_tabs(serve: Callable[..., httpx.Client], manager: dce_session.asyncio.SessionManager,
              slow_path: str, other: Callable[[httpx.Client], httpx.Response]
              ) -> tuple[httpx.Client, str, httpx.Response, httpx.Response]:
    """Tab 1 loads the session and waits in its view; tab 2 runs ``other`` to the
    end; then tab 1 finishes. ``(browser, first sid, tab 1's response, tab 2's)``."""
    gate = Gate()
    browser = serve(build_app(manager, gate), manager)
    first = new_sid(browser.post("/put", json={"a": "before", "b": "before"}))
    method = browser.get if slow_path == "/slow-read" else browser.post
    slow = Background(lambda: method(slow_path))
    gate.wait_entered()
    second = other(browser)
    gate.release()
    return browser, first, slow.result(), second


@pytest.mark.parametrize("slow_path", ["/slow", "/slow-read"])
def test_a_login_in_another_tab_is_never_undone(
        serve: Callable[..., httpx.Client],
        make_manager: Callable[..., dce_session.asyncio.SessionManager],
        store: redis.Redis, caplog: pytest.LogCaptureFixture, slow_path: str) -> None:
    for _ in range(3):  # the same interleaving, several times: a race may not hide
        store.flushdb()
        caplog.clear()
        manager = make_manager()
        with caplog.at_level(logging.WARNING, logger="dce_session"):
            browser, first, slow, login = _two_tabs(
                serve, manager, slow_path, lambda b: b.post("/login", json={"id": 3}))
        fresh = new_sid(login)
        assert slow.status_code == 200  # answered as the view did
        assert set_cookies(slow) == []  # neither expired nor replaced the new login
        assert jar(browser) == fresh
        assert browser.get("/user").json() == {"id": 3}
        assert store.exists(f"dcesid:{first}") == 0
        if slow_path == "/slow":  # it had changes: dropped, with a warning
            assert stored(store, fresh)["a"] == '"before"'
            assert warned(caplog)


@pytest.mark.parametrize("slow_path", ["/slow", "/slow-read"])
def test_a_logout_in_another_tab_is_never_undone(
        serve: Callable[..., httpx.Client],
        make_manager: Callable[..., dce_session.asyncio.SessionManager],
        store: redis.Redis, caplog: pytest.LogCaptureFixture, slow_path: str) -> None:
    for _ in range(3):  # the same interleaving, several times
        store.flushdb()
        caplog.clear()
        manager = make_manager()
        with caplog.at_level(logging.WARNING, logger="dce_session"):
            browser, first, slow, logout = _two_tabs(serve, manager, slow_path,
                                                     lambda b: b.post("/clear"))
        assert_expired(logout)
        assert slow.status_code == 200
        assert set_cookies(slow) == []  # no cookie that would bring a session back
        assert jar(browser) is None  # logged out, and stays so
        assert live_keys(store) == []  # the slow tab's changes did not revive it
        assert store.exists(f"dcesid:{first}") == 0
        assert warned(caplog) == (slow_path == "/slow")  # only a change is worth a warning


@pytest.mark.parametrize("late", ["read", "write"])
@pytest.mark.parametrize("replaced", [True, False])
def test_a_request_arriving_after_another_tabs_login_never_undoes_it(
        serve: Callable[..., httpx.Client], manager: dce_session.asyncio.SessionManager,
        store: redis.Redis, caplog: pytest.LogCaptureFixture, late: str,
        replaced: bool) -> None:
    """A request sent with the old cookie before the login's reply arrived, run
    after the login: nothing written, no cookie. Negative control
    (``replaced=False``): a sid that simply expired gets a new session."""
    browser = serve(build_app(manager), manager)
    old = new_sid(browser.post("/put", json={"a": 1}))
    if replaced:
        new_sid(browser.post("/login", json={"id": 3}))
    else:
        store.delete(f"dcesid:{old}")
    before = live_keys(store)
    with caplog.at_level(logging.WARNING, logger="dce_session"), \
            httpx.Client(base_url=browser.base_url, cookies={COOKIE: old}) as stale:
        response = stale.get("/values") if late == "read" else stale.post("/put", json={"b": 2})
    assert response.status_code == 200
    assert response.json() == ({} if late == "read" else {"b": 2})  # as for any unknown sid
    assert warned(caplog) == (replaced and late == "write")  # only a change is dropped
    if replaced or late == "read":
        assert set_cookies(response) == []
        assert live_keys(store) == before
        if replaced:
            assert browser.get("/user").json() == {"id": 3}  # the login stands
    else:
        assert new_sid(response) != old


def test_an_awaited_regeneration_of_a_session_a_login_ended_raises(
        serve: Callable[..., httpx.Client], manager: dce_session.asyncio.SessionManager,
        store: redis.Redis) -> None:
    """A request still carrying the sid another tab's login replaced: awaiting
    regenerate_session_id raises SessionDestroyed (the view's 500), writes
    nothing and sends no cookie; the login stands."""
    browser = serve(build_app(manager), manager)
    old = new_sid(browser.post("/put", json={"a": 1}))
    new_sid(browser.post("/login", json={"id": 3}))
    before = live_keys(store)
    with httpx.Client(base_url=browser.base_url, cookies={COOKIE: old}) as stale:
        response = stale.post("/regenerate")
    assert response.status_code == 500
    assert set_cookies(response) == []
    assert live_keys(store) == before
    assert browser.get("/user").json() == {"id": 3}


@pytest.mark.parametrize("other", ["login", "logout"])
def test_a_regeneration_asked_without_await_never_undoes_another_tabs_end(
        serve: Callable[..., httpx.Client],
        make_manager: Callable[..., dce_session.asyncio.SessionManager],
        store: redis.Redis, caplog: pytest.LogCaptureFixture, other: str) -> None:
    """Tab 1 asks a regeneration (no await) and waits; tab 2 logs in or out; tab 1's
    regeneration finds the session gone: its changes dropped, a WARNING, no cookie."""
    for _ in range(3):  # the same interleaving, several times
        store.flushdb()
        caplog.clear()
        manager = make_manager()
        end = (lambda b: b.post("/login", json={"id": 3})) if other == "login" \
            else (lambda b: b.post("/clear"))
        with caplog.at_level(logging.WARNING, logger="dce_session"):
            browser, first, slow, second = _two_tabs(serve, manager, "/slow-regenerate", end)
        assert slow.status_code == 200
        assert set_cookies(slow) == []  # the browser keeps tab 2's cookie (or none)
        assert warned(caplog)
        assert store.exists(f"dcesid:{first}") == 0
        if other == "login":
            fresh = new_sid(second)
            assert jar(browser) == fresh
            assert live_keys(store) == sorted([f"dcesid:{fresh}", "dceusmap:3"])
            assert stored(store, fresh)["a"] == '"before"'  # the slow tab's change dropped
        else:
            assert_expired(second)
            assert jar(browser) is None
            assert live_keys(store) == []  # no regenerated copy revived it


def test_the_race_test_catches_a_naive_cookie_rule(
        serve: Callable[..., httpx.Client], manager: dce_session.asyncio.SessionManager,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: expiring the cookie of a session found gone (the old rule)
    wipes the login the other tab just received -- the check above would fail."""
    real = _common.cookie

    def naive(**kwargs: Any) -> _common.Cookie:
        if not kwargs["stored"] and kwargs["presented"] is not None:
            return _common.Cookie.EXPIRE
        return real(**kwargs)

    monkeypatch.setattr(integration, "cookie", naive)
    browser, _, slow, login = _two_tabs(serve, manager, "/slow",
                                        lambda b: b.post("/login", json={"id": 3}))
    new_sid(login)
    assert_expired(slow)
    assert jar(browser) is None  # the user is logged out: what the real rule prevents


def test_concurrent_requests_editing_different_keys_both_survive(
        serve: Callable[..., httpx.Client], manager: dce_session.asyncio.SessionManager,
        store: redis.Redis) -> None:
    _browser, first, slow, put = _two_tabs(serve, manager, "/slow",
                                          lambda b: b.post("/put", json={"b": "from B"}))
    assert slow.status_code == put.status_code == 200
    assert stored(store, first) == {"a": '"from the slow tab"', "b": '"from B"'}


# -- websockets and FastAPI ----------------------------------------------------------------


def _ws(browser: httpx.Client, path: str) -> Any:
    url = str(browser.base_url).replace("http://", "ws://").rstrip("/") + path
    cookie = jar(browser)
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    return websockets.sync.client.connect(url, additional_headers=headers, open_timeout=10)


def test_a_websocket_reads_and_writes_the_session(web: httpx.Client, store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"a": 1}))
    with _ws(web, "/ws") as ws:
        assert json.loads(ws.recv(timeout=10)) == {"a": 1}
        ws.send(json.dumps({"b": 2}))
        with pytest.raises(websockets.ConnectionClosed):
            ws.recv(timeout=10)
    assert web.get("/values").json() == {"a": 1, "b": 2}
    assert stored(store, sid) == {"a": "1", "b": "2"}


def test_rotation_runs_at_the_websocket_handshake_and_its_reply_carries_the_cookie(
        renewing: tuple[list[float], httpx.Client, str], store: redis.Redis) -> None:
    now, browser, old = renewing
    with _ws(browser, "/ws") as ws:  # before the interval: same sid, no cookie
        assert ws.response.headers.get_all("set-cookie") == []
        assert json.loads(ws.recv(timeout=10)) == {"a": 1}
        ws.send(json.dumps({}))
    now[0] += 601
    with _ws(browser, "/ws") as ws:
        [header] = ws.response.headers.get_all("set-cookie")
        name, sid, attrs = attributes(header)
        assert (name, attrs["max-age"]) == (COOKIE, str(FOURTEEN_DAYS))
        assert sid != old
        assert json.loads(ws.recv(timeout=10)) == {"a": 1}  # the data moved with it
        ws.send(json.dumps({"b": 2}))
        with pytest.raises(websockets.ConnectionClosed):
            ws.recv(timeout=10)
    assert stored(store, old)["$newid"] == sid  # rotated, not a fresh session
    assert stored(store, sid) == {"a": "1", "b": "2"}  # the socket wrote to the new sid
    browser.cookies.set(COOKIE, sid)  # what the browser does with the handshake's cookie
    assert browser.get("/values").json() == {"a": 1, "b": 2}


def test_without_renew_the_websocket_handshake_sends_no_cookie(
        serve: Callable[..., httpx.Client],
        make_manager: Callable[..., dce_session.asyncio.SessionManager],
        store: redis.Redis) -> None:
    """Negative control of the test above: the cookie is the rotation's, not a habit."""
    now = [1_700_000_000.0]
    manager = make_manager(clock=lambda: now[0])
    browser = serve(build_app(manager), manager)
    old = new_sid(browser.post("/put", json={"a": 1}))
    now[0] += 601
    with _ws(browser, "/ws") as ws:
        assert ws.response.headers.get_all("set-cookie") == []
        assert json.loads(ws.recv(timeout=10)) == {"a": 1}
        ws.send(json.dumps({}))
    assert "$newid" not in stored(store, old)


def test_a_websocket_without_a_session_writes_nothing(web: httpx.Client, trips: RoundTrips,
                                                      store: redis.Redis) -> None:
    with _ws(web, "/ws") as ws:
        assert json.loads(ws.recv(timeout=10)) == {}
        ws.send(json.dumps({"b": 2}))
        with pytest.raises(websockets.ConnectionClosed):
            ws.recv(timeout=10)
    assert trips.count == 0
    assert live_keys(store) == []


def test_the_fastapi_dependency_types_the_session_on_http_and_websocket_routes(
        serve: Callable[..., httpx.Client], manager: dce_session.asyncio.SessionManager,
        trips: RoundTrips, store: redis.Redis) -> None:
    app = fastapi.FastAPI()
    app.add_middleware(SessionMiddleware, manager=manager, autoload=False)

    @app.post("/login")  # type: ignore[untyped-decorator]  # fastapi's decorators are untyped
    async def login(session: CurrentSession, values: SessionValues) -> dict[str, Any]:
        assert isinstance(session, dce_session.asyncio.Session)
        values["cart"] = ["apple"]
        await session.login({"id": 11})
        return {"user": await session.user()}

    @app.get("/free")  # type: ignore[untyped-decorator]
    async def free() -> str:
        return "free"

    @app.websocket("/ws")  # type: ignore[untyped-decorator]
    async def socket(websocket: fastapi.WebSocket, session: CurrentSession,
                     values: SessionValues) -> None:
        await websocket.accept()
        await websocket.send_json({"user": await session.user(), "values": dict(values)})
        await websocket.close()

    browser = serve(app, manager)
    response = browser.post("/login")
    assert response.json() == {"user": {"id": 11}}
    sid = new_sid(response)
    assert stored(store, sid)["cart"] == '["apple"]'
    trips.reset()
    assert browser.get("/free").json() == "free"
    assert trips.count == 0  # routes without the dependency never touch Redis
    with _ws(browser, "/ws") as ws:
        assert json.loads(ws.recv(timeout=10)) == {"user": {"id": 11},
                                                   "values": {"cart": ["apple"]}}


# -- the mapping and the docs --------------------------------------------------------------


def test_the_mapping_is_starlettes_session_whose_clear_ends_it() -> None:
    assert SessionMapping({"$me"}, [("a", 1)], b=2) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="bookkeeping"):
        SessionMapping({"$me"}, {"$me": 1})
    mapping = SessionMapping((), a=1)
    assert (mapping.accessed, mapping.modified, mapping.ended) == (False, False, False)
    reserved = SessionMapping({"$me"})
    attempts: list[Callable[[], object]] = [
        lambda: reserved.__setitem__("$me", 1), lambda: reserved.setdefault("$me"),
        lambda: reserved.update({"ok": 1, "$me": 1}), lambda: reserved.__ior__({"$me": 1})]
    for attempt in attempts:
        with pytest.raises(ValueError, match="bookkeeping"):
            attempt()
    assert reserved == {}
    mapping.clear()
    assert (mapping, mapping.modified, mapping.ended) == ({}, True, True)


def test_the_docstring_example_runs(redis_url: str, serve: Callable[..., httpx.Client],
                                    store: redis.Redis) -> None:
    doc = integration.__doc__
    assert doc is not None
    block = doc.split("::\n\n", 1)[1].split("\n\nWith FastAPI", 1)[0]
    code = "\n".join(line.removeprefix("    ") for line in block.splitlines())
    namespace: dict[str, Any] = {"__name__": "example"}
    exec(compile(code.replace("redis://localhost:6379/0", redis_url), "example", "exec"),
         namespace)
    browser = serve(namespace["app"], namespace["manager"])
    assert browser.get("/").json() == {"visits": 1}
    assert browser.get("/").json() == {"visits": 2}
    response = browser.post("/login")
    assert response.json() == {"user": {"id": 42, "name": "Ada"}}
    sid = new_sid(response)
    assert stored(store, sid)["visits"] == "2"
    assert_expired(browser.post("/logout"))
    assert live_keys(store) == []


def test_a_rotated_sid_in_its_grace_period_is_forwarded_and_the_cookie_resent(
        serve: Callable[..., httpx.Client],
        make_manager: Callable[..., dce_session.asyncio.SessionManager],
        redis_url: str, store: redis.Redis) -> None:
    now = [1_700_000_000.0]
    manager = make_manager(clock=lambda: now[0])  # no renew=: the app never rotates
    browser = serve(build_app(manager), manager)
    old = new_sid(browser.post("/put", json={"a": 1}))
    now[0] += 601
    successor = rotate_elsewhere(redis_url, old, lambda: now[0])  # another service
    response = browser.post("/put", json={"b": 2})  # still presents the old sid
    assert new_sid(response) == successor  # forwarded: the browser is sent the successor
    assert jar(browser) == successor
    assert stored(store, successor) == {"a": "1", "b": "2"}


def test_a_judged_sid_is_no_session_and_its_cookie_is_left_alone(
        renewing: tuple[list[float], httpx.Client, str], store: redis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    now, browser, old = renewing
    now[0] += 601
    successor = new_sid(browser.get("/values"))  # rotated by the middleware
    now[0] += 121  # past the grace period; the browser moved on, an old tab did not
    store.expire(f"dcesid:{successor}", FOURTEEN_DAYS - 10)
    store.expire(f"dcesid:{old}", FOURTEEN_DAYS - 100)
    with httpx.Client(base_url=browser.base_url, timeout=10) as stale_tab, \
            caplog.at_level(logging.WARNING, logger="dce_session"):
        stale_tab.cookies.set(COOKIE, old)
        response = stale_tab.post("/put", json={"b": 2})
    assert response.status_code == 200
    assert response.json() == {"b": 2}  # the view saw no session
    assert set_cookies(response) == []  # nothing that could replace the browser's sid
    assert warned(caplog)
    assert browser.get("/values").json() == {"a": 1}  # the change was dropped
