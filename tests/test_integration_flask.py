"""The Flask integration, through Flask's test client, against a real Redis."""

from __future__ import annotations

import contextlib
import doctest
import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import dce_session.integrations.flask as dce_flask
import flask
import httpx2 as httpx
import pytest
import redis
from _servers import Background, Gate, rotate_elsewhere, wsgi_server
from dce_session import ConfigError, RenewPolicy, SerializationError, SessionManager
from dce_session.core import generate_sid, parse_sid
from dce_session.integrations.flask import FlaskSession, SessionInterface
from markupsafe import Markup
from werkzeug.test import TestResponse

FORGED = generate_sid(60)  # well formed, never stored


def live_keys(store: redis.Redis) -> list[str]:
    """The session and user-index keys in Redis (replay records left aside)."""
    return sorted(store.keys("dcesid:*") + store.keys("dceusmap:*"))  # type: ignore[operator]



@pytest.fixture
def door() -> str:
    """Flask is blocking: only the sync front door (overrides conftest's parametrisation)."""
    return "sync"


def dce_of(session: Any) -> Any:
    """``flask.session.dce``: the blocking dce ``Session`` behind the mapping."""
    assert isinstance(session, FlaskSession)
    return session.dce


def build_app(manager: SessionManager, gate: Gate | None = None,
              **options: Any) -> flask.Flask:
    """An app whose routes each do one thing to ``flask.session``."""
    config = options.pop("config", {})
    app = flask.Flask(__name__)
    app.config.update(config)
    SessionInterface(manager, **options).init_app(app)
    session = flask.session

    @app.get("/nothing")
    def nothing() -> str:
        return "no session here"

    @app.get("/read/<key>")
    def read(key: str) -> Any:
        return {"value": session.get(key)}

    @app.get("/keys")
    def keys() -> Any:
        return sorted(session)

    @app.post("/set/<key>")
    def set_(key: str) -> str:
        session[key] = flask.request.json
        return ""

    @app.post("/reassign/<key>")
    def reassign(key: str) -> str:
        session[key] = session[key]
        return ""

    @app.post("/del/<key>")
    def delete(key: str) -> str:
        del session[key]
        return ""

    @app.post("/bump/<key>")
    def bump(key: str) -> str:
        session[key] = session.get(key, 0) + 1
        return ""

    @app.post("/append/<key>/<item>")
    def append(key: str, item: str) -> str:
        session[key].append(item)  # nested change: Flask would need modified = True
        return ""

    @app.post("/login")
    def login() -> Any:
        dce_of(session).login(flask.request.json)
        return {"keys": sorted(session), "user": dce_of(session).user()}

    @app.post("/reserved")
    def reserved() -> str:
        with pytest.raises(ValueError, match=r"\$user"):
            session["$user"] = {"id": 1}
        with pytest.raises(SerializationError):
            session["when"] = {1, 2}
        return "refused"

    @app.post("/clear")
    def clear() -> str:
        session.clear()
        return ""

    @app.post("/clear-then-set")
    def clear_then_set() -> str:
        session.clear()
        session["fresh"] = True
        return ""

    @app.post("/destroy")
    def destroy() -> str:
        dce_of(session).destroy()
        return ""

    @app.post("/regenerate")
    def regenerate() -> str:
        dce_of(session).regenerate()
        return ""

    @app.post("/slow")
    def slow() -> str:
        # read first (loaded before the other tab acts): a blind write to a sid
        # that is gone cannot be told from one to an expired sid (a fresh session)
        assert "a" in session
        session["a"] = "from the slow tab"
        assert gate is not None
        gate.hold()
        return "slow done"

    @app.get("/slow-read")
    def slow_read() -> Any:
        seen = dict(session)
        assert gate is not None
        gate.hold()
        return seen

    @app.post("/permanent")
    def permanent() -> str:
        session.permanent = True
        session["a"] = 1
        return ""

    @app.post("/permanence/<int:on>")
    def permanence(on: int) -> str:
        session.get("a")  # loaded: an unchanged value is then not rewritten
        session.permanent = bool(on)
        return ""

    return app


@pytest.fixture
def manager(make_manager: Callable[..., SessionManager]) -> SessionManager:
    return make_manager()


@pytest.fixture
def app(manager: SessionManager) -> flask.Flask:
    return build_app(manager)


def set_cookie(response: TestResponse) -> dict[str, str] | None:
    """The one Set-Cookie of ``response`` as {name: value, attribute: value}, or None."""
    headers = response.headers.getlist("Set-Cookie")
    if not headers:
        return None
    assert len(headers) == 1, headers
    name_value, *attributes = headers[0].split("; ")
    name, _, value = name_value.partition("=")
    parsed = {"name": name, "value": value}
    for attribute in attributes:
        key, _, val = attribute.partition("=")
        parsed[key.lower()] = val
    return parsed


def start(browser: Any, **values: Any) -> str:
    """Write ``values`` through the app; the sid the browser now holds."""
    for key, value in values.items():
        assert browser.post(f"/set/{key}", json=value).status_code == 200
    return held(browser)


def held(browser: Any, name: str = "session") -> str:
    """The sid in the browser's cookie jar."""
    cookie = browser.get_cookie(name)
    assert cookie is not None
    sid: str = cookie.value
    return sid


def warned(caplog: pytest.LogCaptureFixture) -> bool:
    """Whether the race WARNING went out on the ``dce_session`` logger."""
    return any(r.name == "dce_session" and r.levelno == logging.WARNING
               and "ended by another request" in r.getMessage() for r in caplog.records)


def test_module_example_runs() -> None:
    failed, attempted = doctest.testmod(dce_flask, optionflags=doctest.ELLIPSIS)
    assert attempted > 0
    assert failed == 0


def test_untouched_session_costs_nothing(app: flask.Flask, round_trips: Any) -> None:
    browser = app.test_client()
    round_trips.reset()
    response = browser.get("/nothing")
    assert round_trips.count == 0
    assert set_cookie(response) is None
    sid = start(browser, a=1)
    round_trips.reset()
    response = browser.get("/nothing")
    assert round_trips.count == 0
    assert set_cookie(response) is None
    assert held(browser) == sid


def test_routes_that_never_read_survive_a_redis_outage(redis_url: str) -> None:
    import socket

    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    with redis.Redis(host="127.0.0.1", port=dead, socket_connect_timeout=1) as down:
        app = build_app(SessionManager(down))
        browser = app.test_client()
        browser.set_cookie("session", FORGED)
        response = browser.get("/nothing")
        assert response.status_code == 200  # no Redis call, so no StoreError
        assert set_cookie(response) is None
        assert browser.get("/read/a").status_code == 500  # the route that reads: StoreError


def test_first_write_sets_flasks_default_cookie(
    app: flask.Flask, round_trips: Any, store: redis.Redis
) -> None:
    browser = app.test_client()
    round_trips.reset()
    response = browser.post("/set/cart", json=["apple"])
    assert round_trips.count == 1  # the write creates the key: nothing to load first
    cookie = set_cookie(response)
    assert cookie is not None
    assert cookie["name"] == "session"
    # Flask's defaults: HttpOnly, path /, no Secure over http, no SameSite
    assert cookie.keys() == {"name", "value", "httponly", "path"}
    assert cookie["path"] == "/"
    assert "expires" not in cookie  # not permanent: a browser-session cookie
    assert "Cookie" in response.headers["Vary"]
    sid = cookie["value"]
    assert store.hgetall(f"dcesid:{sid}") == {"cart": '["apple"]'}
    assert 0 < store.ttl(f"dcesid:{sid}") <= 3600
    # more writes to the same sid: no cookie
    response = browser.post("/set/count", json=1)
    assert set_cookie(response) is None
    assert store.hgetall(f"dcesid:{sid}") == {"cart": '["apple"]', "count": "1"}


def test_a_read_loads_once_and_refreshes_the_ttl(
    app: flask.Flask, round_trips: Any, store: redis.Redis
) -> None:
    browser = app.test_client()
    sid = start(browser, a=1, b="two")
    store.expire(f"dcesid:{sid}", 100)
    round_trips.reset()
    response = browser.get("/read/b")
    assert response.json == {"value": "two"}
    assert round_trips.count == 1  # load + touch in one script, nothing written
    assert set_cookie(response) is None
    assert store.ttl(f"dcesid:{sid}") > 100


def test_only_changed_keys_are_written(
    app: flask.Flask, store: redis.Redis, round_trips: Any
) -> None:
    browser = app.test_client()
    sid = start(browser, cart=["apple"], name="Ada")
    key = f"dcesid:{sid}"
    # a foreign writer's formatting of an untouched key is left as it is
    store.hset(key, "name", '  "Ada"  ')
    round_trips.reset()
    assert browser.post("/reassign/name").status_code == 200  # same value again
    assert round_trips.count == 1  # the load; nothing written
    assert store.hget(key, "name") == '  "Ada"  '
    # a blind assignment (no read) is one write, of that key alone, and no load
    round_trips.reset()
    assert browser.post("/set/count", json=2).status_code == 200
    assert round_trips.count == 1
    assert store.hget(key, "name") == '  "Ada"  '
    # a nested change is found without session.modified
    assert browser.post("/append/cart/pear").status_code == 200
    assert store.hgetall(key) == {"cart": '["apple","pear"]', "name": '  "Ada"  ', "count": "2"}


def test_deleting_a_key_removes_only_that_field(app: flask.Flask, store: redis.Redis) -> None:
    browser = app.test_client()
    sid = start(browser, a=1, b=2)
    response = browser.post("/del/a")
    assert set_cookie(response) is None
    assert store.hgetall(f"dcesid:{sid}") == {"b": "2"}
    assert browser.get("/keys").json == ["b"]


def test_overlapping_requests_keep_each_others_keys(
    manager: SessionManager, store: redis.Redis
) -> None:
    app = build_app(manager)
    loaded, other_done = threading.Event(), threading.Event()

    @app.post("/slow/<key>")
    def slow_key(key: str) -> str:
        assert flask.session["shared"] == 0  # loads the whole hash now
        loaded.set()
        assert other_done.wait(20)
        flask.session[key] = "slow"
        return ""

    first = app.test_client()
    sid = start(first, shared=0)
    second = app.test_client()
    second.set_cookie("session", sid)
    outcome: list[int] = []
    worker = threading.Thread(target=lambda: outcome.append(first.post("/slow/a").status_code))
    worker.start()
    try:
        assert loaded.wait(20)
        assert second.post("/set/b", json="fast").status_code == 200
        assert second.post("/set/shared", json=1).status_code == 200
    finally:
        other_done.set()
        worker.join(20)
    assert outcome == [200]
    # the slow request loaded b absent and shared=0, yet rewrote neither
    assert store.hgetall(f"dcesid:{sid}") == {"shared": "1", "b": '"fast"', "a": '"slow"'}


@pytest.mark.parametrize("presented", [FORGED, "not-a-sid", FORGED.lower() + "zz"])
def test_a_forged_cookie_is_never_adopted(
    app: flask.Flask, store: redis.Redis, presented: str
) -> None:
    browser = app.test_client()
    browser.set_cookie("session", presented)
    response = browser.get("/read/a")
    assert response.json == {"value": None}
    # left alone: it may be the old cookie of a tab whose browser has a newer one
    assert set_cookie(response) is None
    assert live_keys(store) == []
    response = browser.post("/set/a", json=1)
    cookie = set_cookie(response)
    assert cookie is not None
    assert cookie["value"] != presented
    assert live_keys(store) == [f"dcesid:{cookie['value']}"]


def test_login_resends_the_cookie_and_keeps_the_user_out_of_the_mapping(
    app: flask.Flask, store: redis.Redis
) -> None:
    browser = app.test_client()
    old = start(browser, a=1)
    response = browser.post("/login", json={"id": 7, "name": "Ada"})
    assert response.json == {"keys": ["a"], "user": {"id": 7, "name": "Ada"}}
    cookie = set_cookie(response)
    assert cookie is not None
    new = cookie["value"]
    assert new != old
    assert store.exists(f"dcesid:{old}") == 0
    assert store.hget(f"dcesid:{new}", "$user") == '{"id":7,"name":"Ada"}'
    assert store.smembers("dceusmap:7") == {new}
    assert browser.get("/keys").json == ["a"]
    assert browser.get("/read/$user").json == {"value": None}
    assert browser.post("/reserved").text == "refused"
    assert store.hget(f"dcesid:{new}", "$user") == '{"id":7,"name":"Ada"}'


def test_regenerate_resends_the_cookie(app: flask.Flask, store: redis.Redis) -> None:
    browser = app.test_client()
    old = start(browser, a=1)
    cookie = set_cookie(browser.post("/regenerate"))
    assert cookie is not None
    assert cookie["value"] != old
    assert store.hgetall(f"dcesid:{cookie['value']}") == {"a": "1"}
    assert browser.get("/read/a").json == {"value": 1}


@pytest.mark.parametrize("route", ["/clear", "/destroy"])
def test_ending_the_session_expires_the_cookie(
    app: flask.Flask, store: redis.Redis, route: str
) -> None:
    browser = app.test_client()
    start(browser, a=1)
    assert browser.post("/login", json={"id": 3}).status_code == 200
    assert store.smembers("dceusmap:3") == {held(browser)}
    response = browser.post(route)
    cookie = set_cookie(response)
    assert cookie is not None
    assert cookie["value"] == ""
    assert cookie.get("max-age") == "0" or "1970" in cookie.get("expires", "")
    assert live_keys(store) == []  # the session and its user index entry are gone
    assert browser.get_cookie("session") is None
    assert browser.get("/read/a").json == {"value": None}


def test_clear_without_a_cookie_sends_nothing(app: flask.Flask, store: redis.Redis) -> None:
    response = app.test_client().post("/clear")
    assert set_cookie(response) is None
    assert live_keys(store) == []


def test_keys_set_after_clear_start_a_fresh_session(
    app: flask.Flask, store: redis.Redis
) -> None:
    browser = app.test_client()
    old = start(browser, a=1)
    cookie = set_cookie(browser.post("/clear-then-set"))
    assert cookie is not None
    assert cookie["value"] not in ("", old)
    assert live_keys(store) == [f"dcesid:{cookie['value']}"]
    assert store.hgetall(f"dcesid:{cookie['value']}") == {"fresh": "true"}


def test_cookie_settings_come_from_flask_config(
    manager: SessionManager, store: redis.Redis
) -> None:
    app = build_app(manager, config={
        "SESSION_COOKIE_NAME": "sid", "SESSION_COOKIE_PATH": "/shop",
        "SESSION_COOKIE_DOMAIN": "example.org", "SESSION_COOKIE_HTTPONLY": False,
        "SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_SAMESITE": "Strict",
        "PERMANENT_SESSION_LIFETIME": timedelta(days=3)})
    browser = app.test_client()
    cookie = set_cookie(browser.post("/permanent", base_url="http://example.org/shop"))
    assert cookie is not None
    assert cookie["name"] == "sid"
    assert cookie["path"] == "/shop"
    assert cookie["domain"] == "example.org"
    assert "httponly" not in cookie
    assert "secure" in cookie
    assert cookie["samesite"] == "Strict"
    assert "expires" in cookie  # permanent: lasts PERMANENT_SESSION_LIFETIME
    sid = cookie["value"]
    assert parse_sid(sid)[0] == 3 * 24 * 60  # ... and so does the session in Redis
    assert 3 * 86400 - 5 <= store.ttl(f"dcesid:{sid}") <= 3 * 86400
    assert store.hgetall(f"dcesid:{sid}") == {"_permanent": "true", "a": "1"}
    other = app.test_client()
    other.set_cookie("session", sid, domain="example.org")  # Flask's default name: not ours
    assert other.get("/read/a", base_url="http://example.org/shop").json == {"value": None}
    other.set_cookie("sid", sid, domain="example.org")
    assert other.get("/read/a", base_url="http://example.org/shop").json == {"value": 1}


def test_secure_when_the_request_came_over_https(app: flask.Flask) -> None:
    cookie = set_cookie(app.test_client().post("/set/a", json=1, base_url="https://localhost"))
    assert cookie is not None
    assert "secure" in cookie
    cookie = set_cookie(app.test_client().post("/set/a", json=1))
    assert cookie is not None
    assert "secure" not in cookie  # plain http, SESSION_COOKIE_SECURE=False: Flask's way


def test_a_lifetime_over_65535_minutes_is_refused_at_start_up(manager: SessionManager) -> None:
    app = flask.Flask(__name__)
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=46)
    with pytest.raises(ConfigError, match="PERMANENT_SESSION_LIFETIME"):
        SessionInterface(manager).init_app(app)
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(minutes=65535)
    SessionInterface(manager).init_app(app)


async def test_bad_settings_are_refused(redis_url: str) -> None:
    import dce_session.asyncio
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        with pytest.raises(ConfigError, match="blocking"):
            SessionInterface(dce_session.asyncio.SessionManager(client))  # type: ignore[arg-type]
    finally:
        await client.aclose()


def test_the_mapping_behaves_like_a_dict(app: flask.Flask, manager: SessionManager) -> None:
    browser = app.test_client()
    sid = start(browser, a=1, b=[1, 2])
    with app.test_request_context(headers={"Cookie": f"session={sid}"}):
        session = app.session_interface.open_session(app, flask.request)
        assert isinstance(session, FlaskSession)
        assert "unloaded" in repr(session)
        assert not session.modified
        assert session == {"a": 1, "b": [1, 2]}
        assert len(session) == 2
        assert dict(session) == {"a": 1, "b": [1, 2]}
        assert session | {"c": 3} == {"a": 1, "b": [1, 2], "c": 3}
        assert session.setdefault("a", 5) == 1
        assert not session.modified
        assert session.pop("a") == 1
        assert session.pop("missing", None) is None
        session.update({"c": 3}, d=4)
        assert session.modified
        changes = session.snapshot.changes(dict(dict.items(session)))
        assert (changes.set, changes.delete) == ({"c": 3, "d": 4}, ["a"])
        assert session.sid == sid
        with pytest.raises(TypeError):
            session[1] = 2


def test_session_transaction_of_the_test_client(app: flask.Flask, store: redis.Redis) -> None:
    browser = app.test_client()
    with browser.session_transaction() as session:
        session["a"] = 1
    assert browser.get("/read/a").json == {"value": 1}
    sid = held(browser)
    assert store.hgetall(f"dcesid:{sid}") == {"a": "1"}
    with browser.session_transaction() as session:
        assert session["a"] == 1
        session.clear()
    assert browser.get_cookie("session") is None
    assert live_keys(store) == []


def test_an_expired_session_reads_empty_and_its_cookie_is_left_alone(
    app: flask.Flask, store: redis.Redis
) -> None:
    browser = app.test_client()
    sid = start(browser, a=1)
    store.delete(f"dcesid:{sid}")  # Redis' TTL ended it
    response = browser.get("/read/a")
    assert response.json == {"value": None}
    assert set_cookie(response) is None
    assert live_keys(store) == []
    new = set_cookie(browser.post("/set/a", json=2))  # a write starts a fresh session
    assert new is not None
    assert new["value"] != sid


def test_changing_permanence_moves_the_session_to_a_sid_of_the_other_lifetime(
    manager: SessionManager, store: redis.Redis
) -> None:
    app = build_app(manager, config={"PERMANENT_SESSION_LIFETIME": timedelta(days=3),
                                     "SESSION_REFRESH_EACH_REQUEST": False})
    browser = app.test_client()
    sid = start(browser, a=1)
    assert parse_sid(sid)[0] == 60  # the manager's ttl_minutes
    cookie = set_cookie(browser.post("/permanence/1"))
    assert cookie is not None
    permanent = cookie["value"]
    assert permanent != sid
    assert parse_sid(permanent)[0] == 3 * 24 * 60
    assert "expires" in cookie
    assert "1970" not in cookie["expires"]
    assert store.exists(f"dcesid:{sid}") == 0  # moved in one step, the old sid gone
    assert store.hgetall(f"dcesid:{permanent}") == {"a": "1", "_permanent": "true"}
    assert set_cookie(browser.post("/permanence/1")) is None  # unchanged: nothing sent
    cookie = set_cookie(browser.post("/permanence/0"))
    assert cookie is not None
    assert parse_sid(cookie["value"])[0] == 60
    assert "expires" not in cookie  # a browser-session cookie again
    assert store.hgetall(f"dcesid:{cookie['value']}") == {"a": "1", "_permanent": "false"}


def test_a_permanent_login_with_its_lifetime_is_one_new_sid(
    manager: SessionManager, store: redis.Redis
) -> None:
    """The documented way (docs/switching-from-flask.md): the sid the login
    returns is the one the cookie carries; without the lifetime, the save moves
    the session once more (the returned sid is then dead)."""
    app = build_app(manager, config={"PERMANENT_SESSION_LIFETIME": timedelta(days=3)})

    @app.post("/permanent-login/<int:with_lifetime>")
    def permanent_login(with_lifetime: int) -> Any:
        session = flask.session
        session.permanent = True
        ttl = app.session_interface.permanent_ttl(app) if with_lifetime else None  # type: ignore[attr-defined]
        returned = dce_of(session).login({"id": 5}, ttl_minutes=ttl)
        return {"returned": returned, "sid": session.sid}  # type: ignore[attr-defined]

    for with_lifetime in (1, 0):
        browser = app.test_client()
        sid = start(browser, a=1)
        response = browser.post(f"/permanent-login/{with_lifetime}")
        cookie = set_cookie(response)
        assert cookie is not None
        assert response.json["returned"] == response.json["sid"]
        assert parse_sid(cookie["value"])[0] == 3 * 24 * 60
        assert store.exists(f"dcesid:{sid}") == 0
        assert (cookie["value"] == response.json["returned"]) is bool(with_lifetime)
        assert store.exists(f"dcesid:{response.json['returned']}") == with_lifetime


def test_a_permanent_session_is_refreshed_on_each_request_that_uses_it(
    manager: SessionManager, store: redis.Redis, round_trips: Any
) -> None:
    app = build_app(manager, config={"PERMANENT_SESSION_LIFETIME": timedelta(days=3)})
    browser = app.test_client()
    sid = set_cookie(browser.post("/permanent"))["value"]  # type: ignore[index]
    round_trips.reset()
    cookie = set_cookie(browser.get("/read/a"))
    assert cookie is not None
    assert cookie["value"] == sid
    assert "expires" in cookie
    assert round_trips.count == 2  # the load, and the check that it is still stored
    round_trips.reset()
    assert set_cookie(browser.get("/nothing")) is None  # never read: no call, no cookie
    assert round_trips.count == 0
    # SESSION_REFRESH_EACH_REQUEST = False: only when the session changes
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    assert set_cookie(browser.get("/read/a")) is None
    cookie = set_cookie(browser.post("/set/b", json=2))
    assert cookie is not None
    assert cookie["value"] == sid


def test_values_as_flasks_serializer_takes_them(
    manager: SessionManager, store: redis.Redis
) -> None:
    app = build_app(manager)
    when = datetime(2026, 5, 4, 3, 2, 1, tzinfo=timezone.utc)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    values = {"t": (1, "two"), "b": b"\x00\xffbytes", "m": Markup("<b>bold</b>"), "u": ident,
              "d": when, "nested": {"inner": [(1,), {" t": "not a tag"}]}}

    @app.post("/typed")
    def typed() -> str:
        flask.session.update(values)
        flask.flash(Markup("<i>saved</i>"))
        return ""

    @app.get("/typed")
    def typed_back() -> Any:
        got = {key: flask.session[key] for key in values}
        assert got == values
        assert isinstance(got["m"], Markup)
        messages = flask.get_flashed_messages()
        assert messages == [Markup("<i>saved</i>")]
        assert isinstance(messages[0], Markup)
        return "same"

    browser = app.test_client()
    assert browser.post("/typed").status_code == 200
    stored = store.hgetall(f"dcesid:{held(browser)}")
    assert json.loads(stored["t"]) == {" t": [1, "two"]}  # Flask's tags, as JSON
    assert json.loads(stored["u"]) == {" u": ident.hex}
    assert browser.get("/typed").text == "same"


def test_session_sid_and_regenerate_are_flask_sessions(
    app: flask.Flask, store: redis.Redis
) -> None:
    @app.post("/flask-session-login")
    def flask_session_login() -> Any:
        before = flask.session.sid
        flask.session["user"] = "ada"
        app.session_interface.regenerate(flask.session)  # type: ignore[attr-defined]
        return {"before": before, "after": flask.session.sid}

    browser = app.test_client()
    old = start(browser, a=1)
    response = browser.post("/flask-session-login")
    assert response.json["before"] == old  # type: ignore[index]
    new = set_cookie(response)["value"]  # type: ignore[index]
    assert response.json["after"] == new != old  # type: ignore[index]
    assert store.exists(f"dcesid:{old}") == 0
    assert store.hgetall(f"dcesid:{new}") == {"a": "1", "user": '"ada"'}


def test_rotation_runs_when_the_session_is_used(
    make_manager: Callable[..., SessionManager], store: redis.Redis
) -> None:
    now = [1_700_000_000.0]
    manager = make_manager(renew=RenewPolicy(interval_seconds=600), clock=lambda: now[0])
    app = build_app(manager)
    browser = app.test_client()
    old = start(browser, a=1)
    assert set_cookie(browser.get("/read/a")) is None
    now[0] += 601
    response = browser.get("/read/a")  # the view never calls try_renew
    assert response.json == {"value": 1}
    cookie = set_cookie(response)
    assert cookie is not None
    assert cookie["value"] != old
    assert store.hget(f"dcesid:{old}", "$newid") == cookie["value"]
    assert browser.get("/read/a").json == {"value": 1}


def test_stored_fields_that_are_not_json_are_left_alone(
    app: flask.Flask, store: redis.Redis
) -> None:
    browser = app.test_client()
    sid = start(browser, a=1)
    key = f"dcesid:{sid}"
    store.hset(key, "legacy", "{not json")
    assert browser.get("/keys").json == ["a"]
    assert browser.get("/read/legacy").json == {"value": None}
    assert browser.post("/del/a").status_code == 200
    assert browser.post("/set/b", json=2).status_code == 200
    assert store.hgetall(key) == {"legacy": "{not json", "b": "2"}


# -- races: two tabs of one browser, over a real WSGI server -------------------------------


def _two_tabs(manager: SessionManager, slow_path: str,
              other: Callable[[httpx.Client], httpx.Response]
              ) -> tuple[httpx.Client, str, httpx.Response, httpx.Response, Any]:
    """Tab 1 loads the session and waits in its view; tab 2 runs ``other`` to the
    end; then tab 1 finishes. ``(browser, first sid, tab 1's, tab 2's, exit)``."""
    gate = Gate()
    app = build_app(manager, gate)
    stack = contextlib.ExitStack()
    url = stack.enter_context(wsgi_server(app))
    browser = stack.enter_context(httpx.Client(base_url=url, timeout=10))
    assert browser.post("/set/a", json="before").status_code == 200
    first = browser.cookies["session"]
    method = browser.post if slow_path == "/slow" else browser.get
    slow = Background(lambda: method(slow_path))
    gate.wait_entered()
    second = other(browser)
    gate.release()
    return browser, first, slow.result(), second, stack


@pytest.mark.parametrize("slow_path", ["/slow", "/slow-read"])
@pytest.mark.parametrize("other", ["login", "logout"])
def test_another_tabs_login_or_logout_is_never_undone(
    manager: SessionManager, store: redis.Redis, caplog: pytest.LogCaptureFixture,
    slow_path: str, other: str
) -> None:
    for _ in range(3):  # the same interleaving, several times
        store.flushdb()
        caplog.clear()
        action = {"login": lambda b: b.post("/login", json={"id": 3}),
                  "logout": lambda b: b.post("/clear")}[other]
        with caplog.at_level(logging.WARNING, logger="dce_session"):
            browser, first, slow, second, stack = _two_tabs(manager, slow_path, action)
        with stack:
            assert second.status_code == 200
            assert slow.status_code == 200  # answered as the view did: no 500
            assert slow.headers.get_list("set-cookie") == []  # nor a cookie of its own
            assert store.exists(f"dcesid:{first}") == 0
            if other == "login":
                assert browser.cookies["session"] != first  # the new login stays
                assert browser.get("/read/a").json() == {"value": "before"}
            else:
                assert "session" not in browser.cookies  # logged out, and stays so
                assert live_keys(store) == []  # the slow tab did not bring it back
            assert warned(caplog) == (slow_path == "/slow")  # a change was dropped


@pytest.mark.parametrize("late", ["write", "read-then-write", "read"])
@pytest.mark.parametrize("replaced", [True, False])
def test_a_request_arriving_after_another_tabs_login_never_undoes_it(
    app: flask.Flask, store: redis.Redis, caplog: pytest.LogCaptureFixture,
    late: str, replaced: bool
) -> None:
    """A request sent with the old cookie before the login's reply arrived, run
    after the login: nothing written, no cookie (the browser keeps the login).
    Negative control (``replaced=False``): a sid that simply expired gets a new
    session and its cookie, so the test can tell the two apart."""
    browser = app.test_client()
    old = start(browser, a=1)
    if replaced:
        assert browser.post("/login", json={"id": 3}).status_code == 200
    else:
        store.delete(f"dcesid:{old}")
    before = live_keys(store)
    stale = app.test_client()
    stale.set_cookie("session", old)
    with caplog.at_level(logging.WARNING, logger="dce_session"):
        if late == "read":
            response = stale.get("/read/a")
        elif late == "write":
            response = stale.post("/set/b", json=2)
        else:
            response = stale.post("/bump/a")  # reads a, then writes
    assert response.status_code == 200
    assert warned(caplog) == replaced
    if replaced or late == "read":
        assert set_cookie(response) is None
        assert live_keys(store) == before
        if replaced:
            assert browser.get("/read/a").json == {"value": 1}  # still the login's
    else:
        cookie = set_cookie(response)
        assert cookie is not None
        assert cookie["value"] != old


def test_the_race_test_catches_a_naive_cookie_rule(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control: expiring the cookie of a session found gone (the old
    rule) wipes the other tab's new login -- what the test above checks."""
    real = dce_flask.cookie

    def naive(**kwargs: Any) -> Any:
        if not kwargs["stored"] and kwargs["presented"] is not None:
            return dce_flask.Cookie.EXPIRE
        return real(**kwargs)

    monkeypatch.setattr(dce_flask, "cookie", naive)
    browser, _, slow, _, stack = _two_tabs(
        manager, "/slow", lambda b: b.post("/login", json={"id": 3}))
    with stack:
        assert len(slow.headers.get_list("set-cookie")) == 1
        assert "session" not in browser.cookies  # the login is gone: the bug


def test_a_rotated_sid_in_its_grace_period_is_forwarded_and_the_cookie_resent(
    make_manager: Callable[..., SessionManager], redis_url: str, store: redis.Redis
) -> None:
    now = [1_700_000_000.0]
    app = build_app(make_manager(clock=lambda: now[0]))  # no renew=: the app never rotates
    browser = app.test_client()
    old = start(browser, a=1)
    now[0] += 601
    successor = rotate_elsewhere(redis_url, old, lambda: now[0])  # another service
    cookie = set_cookie(browser.get("/read/a"))  # still presents the old sid
    assert cookie is not None
    assert cookie["value"] == successor
    assert browser.get("/read/a").json == {"value": 1}
    assert held(browser) == successor


def test_a_judged_sid_is_no_session_and_its_cookie_is_left_alone(
    make_manager: Callable[..., SessionManager], store: redis.Redis,
    caplog: pytest.LogCaptureFixture
) -> None:
    now = [1_700_000_000.0]
    manager = make_manager(renew=RenewPolicy(interval_seconds=600), clock=lambda: now[0])
    app = build_app(manager)
    browser = app.test_client()
    old = start(browser, a=1)
    now[0] += 601
    successor = set_cookie(browser.get("/read/a"))["value"]  # type: ignore[index]
    now[0] += 121  # past the grace period; the browser moved on, an old tab did not
    store.expire(f"dcesid:{successor}", 3600 - 10)
    store.expire(f"dcesid:{old}", 3600 - 100)
    stale_tab = app.test_client()
    stale_tab.set_cookie("session", old)
    with caplog.at_level(logging.WARNING, logger="dce_session"):
        response = stale_tab.post("/set/b", json=2)
    assert response.status_code == 200
    assert set_cookie(response) is None
    assert warned(caplog)
    assert browser.get("/keys").json == ["a"]  # the change was dropped
