"""dce_session.integrations.starlette: request.session in Redis, over a real server.

The app runs under Starlette's TestClient (its own event loop in a portal
thread), so each test's asyncio redis client is made by ``make_client`` (the
``door`` is pinned to async here) and closed inside that portal. The
concurrency test drives the app with httpx2's ASGITransport in the test's loop
to interleave two requests by hand.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import dce_session
import dce_session.asyncio
import fastapi
import httpx2 as httpx
import pytest
import redis
from dce_session import RenewPolicy, _scripts
from dce_session.core import generate_sid, is_valid_sid
from dce_session.errors import ConfigError
from dce_session.integrations import starlette as integration
from dce_session.integrations.starlette import SessionMapping, SessionMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

HTTPS = "https://testserver"
WSS = "wss://testserver/ws"  # TestClient joins a bare path to ws://: no Secure cookie


@pytest.fixture
def door() -> str:
    """The integration takes the asyncio manager only."""
    return "async"


@pytest.fixture(autouse=True)
def scripts_cached(store: redis.Redis) -> None:
    """The scripts are in the server's cache: round trips count no NOSCRIPT retry."""
    for script in vars(_scripts).values():
        if isinstance(script, _scripts.Script):
            assert store.script_load(script.source) == script.sha


# -- the app -------------------------------------------------------------------


def build_app(manager: dce_session.asyncio.SessionManager, **options: Any) -> Starlette:
    gate: dict[str, asyncio.Event] = {}

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

    async def vanish(request: Request) -> Response:
        """Write a value while another request destroys the session."""
        request.session["late"] = True
        client: Any = manager.client
        await client.delete(request.state.dce_session.key)
        return PlainTextResponse("ok")

    async def renew(request: Request) -> Response:
        return JSONResponse(await request.state.dce_session.try_renew())

    async def slow(request: Request) -> Response:
        """Edit one key, then wait until the test lets the response start."""
        request.session["a"] = "from A"
        gate["entered"].set()
        await gate["release"].wait()
        return PlainTextResponse("ok")

    async def reserved(request: Request) -> Response:
        """Every way of putting a bookkeeping field in the mapping fails at once."""
        session = request.session
        attempts: list[Callable[[], object]] = [
            lambda: session.__setitem__("$user", {"id": 1}),
            lambda: session.update({"ok": 1, "$newid": "x"}),
            lambda: session.update(ok=1, **{"$server": "x"}),
            lambda: session.setdefault("$client", "x"),
            lambda: session.__ior__({"$user": {"id": 1}}),
        ]
        refused = []
        for attempt in attempts:
            with pytest.raises(ValueError, match="bookkeeping") as error:
                attempt()
            refused.append(str(error.value).split("'")[1])
        return JSONResponse({"refused": refused, "session": dict(session)})

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(dict(websocket.session))
        websocket.session.update(await websocket.receive_json())
        await websocket.close()

    routes = [
        Route("/nothing", nothing),
        Route("/values", values),
        Route("/put", put, methods=["POST"]),
        Route("/remove", remove, methods=["POST"]),
        Route("/append", append, methods=["POST"]),
        Route("/login", login, methods=["POST"]),
        Route("/user", user),
        Route("/clear", clear, methods=["POST"]),
        Route("/clear-then-flash", clear_then_flash, methods=["POST"]),
        Route("/destroy", destroy, methods=["POST"]),
        Route("/vanish", vanish, methods=["POST"]),
        Route("/renew", renew, methods=["POST"]),
        Route("/slow", slow, methods=["POST"]),
        Route("/reserved", reserved, methods=["POST"]),
        WebSocketRoute("/ws", socket),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(SessionMiddleware, manager=manager, **options)
    app.state.gate = gate
    return app


MakeManager = Callable[..., dce_session.asyncio.SessionManager]


@pytest.fixture
def manager_of(make_client: Callable[..., Any]) -> MakeManager:
    def make(**kwargs: Any) -> dce_session.asyncio.SessionManager:
        return dce_session.asyncio.SessionManager(make_client(), **kwargs)

    return make


@pytest.fixture
def manager(manager_of: MakeManager) -> dce_session.asyncio.SessionManager:
    return manager_of()


@pytest.fixture
def serve(round_trips: Any, make_client: Any) -> Iterator[Callable[..., TestClient]]:
    """``serve(app, base_url=HTTPS)``: a started TestClient; the clients of
    ``app.state.managers`` are closed in the app's event loop at teardown
    (before ``make_client``'s own teardown, which would use the test's loop)."""
    stack: list[tuple[TestClient, Starlette]] = []

    def start(app: Starlette, base_url: str = HTTPS, **kwargs: Any) -> TestClient:
        client = TestClient(app, base_url=base_url, **kwargs)
        client.__enter__()
        stack.append((client, app))
        round_trips.reset()
        return client

    yield start
    for client, app in reversed(stack):
        try:
            for manager in app.state.managers:
                assert client.portal is not None
                client.portal.call(manager.client.aclose)
        finally:
            client.__exit__(None, None, None)


@pytest.fixture
def web(serve: Callable[..., TestClient],
        manager: dce_session.asyncio.SessionManager) -> TestClient:
    app = build_app(manager)
    app.state.managers = [manager]
    return serve(app)


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


def new_sid(response: httpx.Response, name: str = "dcesid") -> str:
    """The sid a response hands out (exactly one Set-Cookie, a live one)."""
    [header] = set_cookies(response)
    cookie, value, attrs = attributes(header)
    assert cookie == name
    assert "max-age" not in attrs or attrs["max-age"] != "0"
    assert is_valid_sid(value)
    return value


def assert_expired(response: httpx.Response) -> None:
    [header] = set_cookies(response)
    name, value, attrs = attributes(header)
    assert (name, value) == ("dcesid", "")
    assert attrs["max-age"] == "0"
    assert "1970" in attrs["expires"]


def stored(store: redis.Redis, sid: str) -> dict[str, str]:
    return store.hgetall(f"dcesid:{sid}")  # type: ignore[return-value]


# -- no cookie: free -------------------------------------------------------------


def test_no_cookie_costs_no_round_trip_and_sets_no_cookie(web: TestClient, round_trips: Any,
                                                          store: redis.Redis) -> None:
    response = web.get("/nothing")
    assert response.text == "ok"
    assert set_cookies(response) == []
    # Reading the (empty) session is free too, and still sets nothing.
    response = web.get("/values")
    assert response.json() == {}
    assert set_cookies(response) == []
    assert round_trips.count == 0
    assert store.dbsize() == 0


def test_first_write_sets_a_secure_http_only_lax_cookie(web: TestClient, round_trips: Any,
                                                        store: redis.Redis) -> None:
    response = web.post("/put", json={"a": 1, "b": [1, "x"]})
    assert round_trips.count == 1  # the write only: nothing to load
    [header] = set_cookies(response)
    name, sid, attrs = attributes(header)
    assert name == "dcesid"
    assert is_valid_sid(sid)
    assert attrs.keys() == {"path", "httponly", "secure", "samesite"}  # no Max-Age, no Domain
    assert attrs["path"] == "/"
    assert attrs["samesite"].lower() == "lax"
    assert "Cookie" in response.headers["vary"]
    assert stored(store, sid) == {"a": "1", "b": '[1,"x"]'}
    assert 0 < store.ttl(f"dcesid:{sid}") <= 3600

    round_trips.reset()
    response = web.get("/values")  # the TestClient's jar sends the cookie back
    assert response.json() == {"a": 1, "b": [1, "x"]}
    assert set_cookies(response) == []  # same sid: nothing to re-send
    assert round_trips.count == 1  # the load; nothing changed, nothing written


def test_a_presented_session_is_loaded_once_and_its_ttl_refreshed(
        web: TestClient, round_trips: Any, store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"a": 1}))
    store.expire(f"dcesid:{sid}", 100)
    round_trips.reset()
    response = web.get("/nothing")
    assert set_cookies(response) == []
    assert round_trips.count == 1
    assert store.ttl(f"dcesid:{sid}") > 100  # the load touched it (sliding expiry)


def test_options_shape_the_cookie(serve: Callable[..., TestClient],
                                  manager: dce_session.asyncio.SessionManager) -> None:
    app = build_app(manager, cookie_name="sid", path="/app", domain="example.com",
                    same_site="strict", https_only=False, max_age=600)
    app.state.managers = [manager]
    client = serve(app, base_url="http://example.com")
    [header] = set_cookies(client.post("/put", json={"a": 1}))
    name, sid, attrs = attributes(header)
    assert name == "sid"
    assert is_valid_sid(sid)
    assert attrs == {"path": "/app", "domain": "example.com", "httponly": "",
                     "samesite": "Strict", "max-age": "600"}


def test_bad_settings_are_config_errors(manager: dce_session.asyncio.SessionManager,
                                        store: redis.Redis) -> None:
    app = Starlette()
    with pytest.raises(ConfigError, match="same_site"):
        SessionMiddleware(app, manager, same_site="loose")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_age"):
        SessionMiddleware(app, manager, max_age=-1)
    with pytest.raises(ConfigError, match="asyncio"):
        SessionMiddleware(app, dce_session.SessionManager(store))  # type: ignore[arg-type]


# -- no adoption -----------------------------------------------------------------


def test_a_forged_sid_is_never_adopted(web: TestClient, store: redis.Redis) -> None:
    forged = generate_sid(60)
    web.cookies.set("dcesid", forged)
    response = web.post("/put", json={"a": 1})
    sid = new_sid(response)
    assert sid != forged
    assert store.exists(f"dcesid:{forged}") == 0
    assert stored(store, sid) == {"a": "1"}


def test_an_unknown_sid_that_writes_nothing_expires_the_cookie(
        web: TestClient, round_trips: Any, store: redis.Redis) -> None:
    web.cookies.set("dcesid", generate_sid(60))
    response = web.get("/values")
    assert response.json() == {}
    assert round_trips.count == 1  # the lookup
    assert_expired(response)
    assert store.dbsize() == 0


def test_a_malformed_cookie_is_never_looked_up(web: TestClient, round_trips: Any,
                                               store: redis.Redis) -> None:
    web.cookies.set("dcesid", "dcesid:../../etc")
    assert_expired(web.get("/nothing"))
    assert round_trips.count == 0
    web.cookies.set("dcesid", "not-a-sid")
    sid = new_sid(web.post("/put", json={"a": 1}))
    assert store.keys() == [f"dcesid:{sid}"]


# -- writes: only what changed ---------------------------------------------------


def test_only_changed_fields_are_written(web: TestClient, round_trips: Any,
                                         store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"a": 1, "b": 2, "c": 3}))
    # Another dce service wrote "b" with other JSON spacing: the same value.
    store.hset(f"dcesid:{sid}", "b", "2 ")
    round_trips.reset()
    response = web.post("/put", json={"a": 10, "b": 2})
    assert set_cookies(response) == []
    assert round_trips.count == 2  # load + one write
    assert stored(store, sid) == {"a": "10", "b": "2 ", "c": "3"}  # "b" not rewritten

    round_trips.reset()
    web.get("/values")
    assert round_trips.count == 1  # equal values: nothing to write

    round_trips.reset()
    response = web.post("/remove", json=["a", "c"])
    assert response.json() == {"b": 2}
    assert round_trips.count == 2  # load + one write holding both deletions
    assert stored(store, sid) == {"b": "2 "}


def test_in_place_edits_are_saved(web: TestClient, store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"items": []}))
    web.post("/append")
    assert web.post("/append").json() == {"items": [0, 1]}
    assert stored(store, sid) == {"items": "[0,1]"}


async def test_concurrent_requests_editing_different_keys_both_survive(
        manager: dce_session.asyncio.SessionManager, store: redis.Redis) -> None:
    seed = manager.new()
    await seed.update({"a": "old", "b": "old", "c": "old"})
    app = build_app(manager)
    gate = app.state.gate
    gate["entered"], gate["release"] = asyncio.Event(), asyncio.Event()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=HTTPS,
                                 headers={"cookie": f"dcesid={seed.id}"}) as client:
        # A loads the session, edits "a" and waits before its response starts.
        first = asyncio.create_task(client.post("/slow"))
        await gate["entered"].wait()
        # B, meanwhile, changes "b" and removes "c" and finishes.
        second = await client.post("/put", json={"b": "from B"})
        assert second.status_code == 200
        assert (await client.post("/remove", json=["c"])).status_code == 200
        gate["release"].set()
        assert (await first).status_code == 200
    # A wrote only "a": it neither restored B's old "b" nor the deleted "c".
    assert stored(store, seed.id) == {"a": '"from A"', "b": '"from B"'}


# -- the user, login and the end ---------------------------------------------------


def test_login_resends_the_cookie_and_hides_the_user(web: TestClient,
                                                     store: redis.Redis) -> None:
    old = new_sid(web.post("/put", json={"a": 1}))
    response = web.post("/login", json={"id": 7, "name": "Ada"})
    sid = new_sid(response)
    assert sid != old
    assert response.json() == {"sid": sid, "values": {"a": 1}}
    assert store.exists(f"dcesid:{old}") == 0  # the fixation defence destroyed it
    assert json.loads(stored(store, sid)["$user"]) == {"id": 7, "name": "Ada"}
    # The jar now holds the new sid: the values are there, the user is not.
    assert web.get("/values").json() == {"a": 1}
    assert web.get("/user").json() == {"id": 7, "name": "Ada"}
    assert store.smembers("dceusmap:7") == {sid}


def test_login_on_a_fresh_session_sends_its_cookie(web: TestClient, store: redis.Redis) -> None:
    sid = new_sid(web.post("/login", json={"id": 8}))
    assert json.loads(stored(store, sid)["$user"]) == {"id": 8}


def test_clear_destroys_the_session_and_expires_the_cookie(
        web: TestClient, round_trips: Any, store: redis.Redis) -> None:
    sid = new_sid(web.post("/login", json={"id": 9}))
    assert store.smembers("dceusmap:9") == {sid}
    response = web.post("/clear")
    assert_expired(response)
    assert store.exists(f"dcesid:{sid}") == 0
    assert store.smembers("dceusmap:9") == set()
    assert "dcesid" not in web.cookies  # the jar dropped it...
    round_trips.reset()
    assert set_cookies(web.get("/nothing")) == []
    assert round_trips.count == 0  # ...so the next request is free again


def test_values_set_after_clear_start_a_new_session(web: TestClient, store: redis.Redis) -> None:
    old = new_sid(web.post("/put", json={"a": 1}))
    sid = new_sid(web.post("/clear-then-flash"))
    assert sid != old
    assert store.exists(f"dcesid:{old}") == 0
    assert stored(store, sid) == {"flash": '"logged out"'}


def test_destroy_through_the_session_expires_the_cookie(web: TestClient,
                                                        store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"a": 1}))
    response = web.post("/destroy")
    assert response.json() is True
    assert_expired(response)
    assert store.exists(f"dcesid:{sid}") == 0


def test_a_session_destroyed_meanwhile_is_not_recreated(web: TestClient,
                                                        store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"a": 1}))
    response = web.post("/vanish")
    assert response.status_code == 200
    assert_expired(response)
    assert store.exists(f"dcesid:{sid}") == 0


def test_bookkeeping_fields_are_not_session_values(web: TestClient, store: redis.Redis) -> None:
    sid = new_sid(web.post("/login", json={"id": 5}))
    store.hset(f"dcesid:{sid}", mapping={"$newid": "x", "$server": "ws1", "$client": "c1"})
    assert web.get("/values").json() == {}
    response = web.post("/reserved")
    assert response.json() == {
        "refused": ["$user", "$newid", "$server", "$client", "$user"], "session": {}}
    assert json.loads(stored(store, sid)["$user"]) == {"id": 5}
    assert stored(store, sid)["$newid"] == "x"


def test_a_field_that_is_not_json_is_left_alone(web: TestClient, store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"a": 1}))
    store.hset(f"dcesid:{sid}", "foreign", "not json")
    assert web.post("/put", json={"b": 2}).json() == {"a": 1, "b": 2}
    assert stored(store, sid) == {"a": "1", "b": "2", "foreign": "not json"}


def test_a_rotation_by_try_renew_resends_the_cookie(
        serve: Callable[..., TestClient], manager_of: MakeManager,
        store: redis.Redis) -> None:
    now = [1_700_000_000.0]
    manager = manager_of(renew=RenewPolicy(interval_seconds=600), clock=lambda: now[0])
    app = build_app(manager)
    app.state.managers = [manager]
    client = serve(app)
    old = new_sid(client.post("/put", json={"a": 1}))
    response = client.post("/renew")
    assert response.json() is False
    assert set_cookies(response) == []
    now[0] += 601
    response = client.post("/renew")
    assert response.json() is True
    sid = new_sid(response)
    assert sid != old
    assert client.get("/values").json() == {"a": 1}
    assert stored(store, old)["$newid"] == sid


# -- websockets ------------------------------------------------------------------


def test_a_websocket_reads_and_writes_the_session(web: TestClient, store: redis.Redis) -> None:
    sid = new_sid(web.post("/put", json={"a": 1}))
    with web.websocket_connect(WSS) as socket:
        assert socket.receive_json() == {"a": 1}
        socket.send_json({"b": 2})
    assert stored(store, sid) == {"a": "1", "b": "2"}
    assert web.get("/values").json() == {"a": 1, "b": 2}


def test_a_websocket_without_a_session_writes_nothing(web: TestClient, round_trips: Any,
                                                      store: redis.Redis) -> None:
    with web.websocket_connect(WSS) as socket:
        assert socket.receive_json() == {}
        socket.send_json({"b": 2})
    assert round_trips.count == 0  # no sid could reach the browser: no orphan session
    assert store.dbsize() == 0


# -- the mapping and the docs ----------------------------------------------------


def test_the_mapping_is_a_dict_whose_clear_ends_the_session() -> None:
    assert SessionMapping({"$me"}, [("a", 1)], b=2) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="bookkeeping"):
        SessionMapping({"$me"}, {"$me": 1})
    mapping = SessionMapping((), a=1)
    assert isinstance(mapping, dict)
    assert (mapping.accessed, mapping.ended) == (False, False)
    mapping.mark_accessed()
    mapping.clear()
    assert (mapping, mapping.accessed, mapping.ended) == ({}, True, True)


def test_the_docstring_example_runs(redis_url: str, serve: Callable[..., TestClient],
                                    store: redis.Redis) -> None:
    doc = integration.__doc__
    assert doc is not None
    block = doc.split("::\n\n", 1)[1].split("\n\nWith FastAPI", 1)[0]
    code = "\n".join(line.removeprefix("    ") for line in block.splitlines())
    namespace: dict[str, Any] = {"__name__": "example"}
    exec(compile(code.replace("redis://localhost:6379/0", redis_url), "example", "exec"),
         namespace)
    app: Starlette = namespace["app"]
    app.state.managers = [namespace["manager"]]
    client = serve(app)
    assert client.get("/").json() == {"visits": 1}
    assert client.get("/").json() == {"visits": 2}
    response = client.post("/login")
    assert response.json() == {"user": {"id": 42, "name": "Ada"}}
    sid = new_sid(response)
    assert stored(store, sid)["visits"] == "2"
    assert_expired(client.post("/logout"))
    assert store.keys("dcesid:*") + store.keys("dceusmap:*") == []


def test_fastapi_smoke(serve: Callable[..., TestClient],
                       manager: dce_session.asyncio.SessionManager, store: redis.Redis) -> None:
    app = fastapi.FastAPI()
    app.add_middleware(SessionMiddleware, manager=manager)
    app.state.managers = [manager]

    @app.post("/cart/{item}")  # type: ignore[untyped-decorator]  # fastapi is imported as Any
    async def add(item: str, request: Request) -> dict[str, Any]:
        request.session.setdefault("cart", []).append(item)
        return dict(request.session)

    client = serve(app)
    response = client.post("/cart/apple")
    sid = new_sid(response)
    assert client.post("/cart/pear").json() == {"cart": ["apple", "pear"]}
    assert stored(store, sid) == {"cart": '["apple","pear"]'}
