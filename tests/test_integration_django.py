"""Django: ``SESSION_ENGINE = "dce_session.integrations.django"`` against a real Redis.

Django's settings are process-wide: this module configures them once (a
minimal project: SessionMiddleware and a few views, URLconf below) and
overrides what it needs for the rest of the module. Round trips are counted
on a client handed to the store through ``DCE_SESSION["client"]`` (``trips``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import django
import httpx2 as httpx
import pytest
import redis
from _servers import Background, Gate, rotate_elsewhere, wsgi_server
from dce_session import RenewPolicy
from dce_session.core import generate_sid, is_valid_sid, parse_sid
from dce_session.errors import ConfigError, SerializationError
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client, override_settings
from django.urls import path

TTL_MINUTES = 30  # SESSION_COOKIE_AGE of the project, in minutes
BROWSER_TTL = 5  # the manager's ttl_minutes: sessions with a browser-session cookie
COOKIE = "sessionid"
GATE: dict[str, Gate] = {}  # the race tests' gate, reached by the views
OURS = "dce_session.integrations.django.SessionMiddleware"
DJANGOS = "django.contrib.sessions.middleware.SessionMiddleware"
MIDDLEWARES = pytest.mark.parametrize("middleware", [OURS, DJANGOS], ids=["ours", "djangos"])


def live_keys(store: redis.Redis) -> list[str]:
    """The session and user-index keys in Redis (replay records left aside)."""
    return sorted(store.keys("dcesid:*") + store.keys("dceusmap:*"))  # type: ignore[operator]



# -- the project: views and URLconf --------------------------------------------------


def set_view(request: HttpRequest, key: str, value: str) -> HttpResponse:
    request.session[key] = value
    return HttpResponse("ok")


def get_view(request: HttpRequest, key: str) -> JsonResponse:
    return JsonResponse({"value": request.session.get(key)})


def dump_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(dict(request.session.items()))


def untouched_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no session here")


def cycle_view(request: HttpRequest) -> HttpResponse:
    request.session.cycle_key()  # what django.contrib.auth.login() does
    request.session["_auth_user_id"] = "7"
    return HttpResponse("cycled")


def clear_view(request: HttpRequest) -> HttpResponse:
    request.session.clear()  # without reading it first
    return HttpResponse("cleared")


def flush_view(request: HttpRequest) -> HttpResponse:
    request.session.flush()  # what django.contrib.auth.logout() does
    return HttpResponse("flushed")


def create_view(request: HttpRequest) -> JsonResponse:
    request.session.create()
    return JsonResponse({"key": request.session.session_key})


def key_view(request: HttpRequest) -> JsonResponse:
    """An anonymous visitor's key, as apps read it (e.g. to tie a cart to it)."""
    if request.session.session_key is None:
        request.session.save()
    return JsonResponse({"key": request.session.session_key})


def int_keys_view(request: HttpRequest) -> JsonResponse:
    request.session["votes"] = {1: "up", 2: "down"}
    return JsonResponse({"ok": True})


def expiry_view(request: HttpRequest, seconds: int) -> HttpResponse:
    request.session.set_expiry(seconds)
    request.session["a"] = "kept"
    return HttpResponse("ok")


def expire_now_view(request: HttpRequest, kind: str) -> HttpResponse:
    request.session["foo"] = "bar"
    request.session.set_expiry(-10 if kind == "seconds" else -timedelta(seconds=10))
    return HttpResponse("expired")


def slow_view(request: HttpRequest) -> HttpResponse:
    """Read the session, change it, then wait in the view for the test."""
    request.session["seen"] = request.session.get("a")
    GATE["gate"].hold()
    return HttpResponse("slow done")


def slow_read_view(request: HttpRequest) -> JsonResponse:
    seen = dict(request.session.items())
    GATE["gate"].hold()
    return JsonResponse(seen)


def dce_login_view(request: HttpRequest) -> HttpResponse:
    request.session.dce.login({"id": 7, "name": "ann"})  # type: ignore[attr-defined]
    return HttpResponse("logged in")


def dce_user_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"user": request.session.dce.user()})  # type: ignore[attr-defined]


urlpatterns = [
    path("set/<str:key>/<str:value>", set_view),
    path("get/<str:key>", get_view),
    path("dump", dump_view),
    path("untouched", untouched_view),
    path("cycle", cycle_view),
    path("flush", flush_view),
    path("clear", clear_view),
    path("dce-login", dce_login_view),
    path("create", create_view),
    path("key", key_view),
    path("int-keys", int_keys_view),
    path("expiry/<int:seconds>", expiry_view),
    path("expire-now/<str:kind>", expire_now_view),
    path("slow", slow_view),
    path("slow-read", slow_read_view),
    path("dce-user", dce_user_view),
]


def project_settings(redis_url: str) -> dict[str, Any]:
    return {
        "SECRET_KEY": "test-only",
        "USE_TZ": True,
        "DEBUG": False,
        "ALLOWED_HOSTS": ["testserver", "127.0.0.1"],
        "ROOT_URLCONF": __name__,
        "INSTALLED_APPS": [],
        "DATABASES": {},
        "MIDDLEWARE": ["dce_session.integrations.django.SessionMiddleware"],
        "SESSION_ENGINE": "dce_session.integrations.django",
        "SESSION_COOKIE_AGE": TTL_MINUTES * 60,
        "DCE_SESSION": {"url": redis_url, "ttl_minutes": BROWSER_TTL},
    }


@pytest.fixture(scope="module", autouse=True)
def django_project(redis_url: str) -> Iterator[None]:
    values = project_settings(redis_url)
    if not settings.configured:
        settings.configure(**values)
        django.setup()
    from dce_session.integrations.django import reset_manager

    # Overriding DATABASES/INSTALLED_APPS warns or reloads apps; the rest is ours.
    overrides = {k: v for k, v in values.items() if k not in ("DATABASES", "INSTALLED_APPS")}
    with override_settings(**overrides):
        try:
            yield
        finally:
            reset_manager()


@pytest.fixture
def store_cls() -> type[Any]:
    from dce_session.integrations.django import SessionStore

    return SessionStore


@pytest.fixture
def client() -> Client:
    return Client()


class RoundTrips:
    """What the store's client sent: the first word of each write (a round trip)."""

    def __init__(self) -> None:
        self.commands: list[bytes] = []

    @property
    def count(self) -> int:
        return len(self.commands)

    def reset(self) -> None:
        self.commands.clear()


class CountingConnection(redis.Connection):
    """Records each write outside the connection handshake (HELLO, CLIENT SETINFO)."""

    def __init__(self, *args: Any, round_trips: RoundTrips, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # redis-py: untyped
        self.round_trips, self._handshaking = round_trips, 0

    def on_connect_check_health(self, check_health: bool = True) -> None:
        self._handshaking += 1
        try:
            super().on_connect_check_health(check_health)
        finally:
            self._handshaking -= 1

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._handshaking:
            first = b"".join(bytes(part) for part in command) if isinstance(command, list) \
                else bytes(command)
            self.round_trips.commands.append(first.split(b"\r\n", 3)[2].upper())
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


@pytest.fixture
def trips(redis_url: str) -> Iterator[RoundTrips]:
    """Round trips of the store's client (``.commands``: what each one sent first)."""
    counter = RoundTrips()
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection,
                                         round_trips=counter)
    counted = redis.Redis.from_pool(pool)
    try:
        with override_settings(DCE_SESSION={"client": lambda: counted,
                                            "ttl_minutes": BROWSER_TTL}):
            from dce_session.integrations.django import get_manager
            for script in get_manager().scripts:
                counted.script_load(script.source)  # no NOSCRIPT retry in the counts
            counter.reset()
            yield counter
    finally:
        counted.close()


def key_of(sid: str) -> str:
    return f"dcesid:{sid}"


def stored_session(store_cls: type[Any], **values: Any) -> str:
    """A stored session holding ``values``; its sid."""
    session = store_cls()
    for key, value in values.items():
        session[key] = value
    session.save()
    sid: str = session.session_key
    return sid


# -- lazy: nothing read, nothing written -------------------------------------------


def test_untouched_request_costs_nothing(client: Client, store: redis.Redis,
                                         commandstats: Any, store_cls: type[Any]) -> None:
    commandstats.snapshot()
    response = client.get("/untouched")
    assert COOKIE not in response.cookies
    client.cookies[COOKIE] = stored_session(store_cls, a=1)
    commandstats.snapshot()
    response = client.get("/untouched")
    assert response.status_code == 200
    assert COOKIE not in response.cookies
    assert commandstats.delta() == {}



def test_constructing_a_store_does_no_io(store_cls: type[Any], commandstats: Any) -> None:
    commandstats.snapshot()
    session = store_cls(generate_sid(TTL_MINUTES))
    assert session.modified is False
    assert session.accessed is False
    assert commandstats.delta() == {}



def test_bookkeeping_never_appears(client: Client, store: redis.Redis) -> None:
    first = client.get("/set/a/1").cookies[COOKIE].value
    response = client.get("/dce-login")
    sid = response.cookies[COOKIE].value  # the sid moved: re-sent
    assert sid != first
    assert store.exists(key_of(first)) == 0
    assert set(store.hkeys(key_of(sid))) == {"a", "$user"}
    assert client.get("/dump").json() == {"a": "1"}
    assert client.get("/dce-user").json() == {"user": {"id": 7, "name": "ann"}}
    assert store.smembers("dceusmap:7") == {sid}



@pytest.mark.parametrize("foreign", ["not json", "[" * 10_000 + "]" * 10_000],
                         ids=["not-json", "nested-too-deep"])
def test_foreign_non_json_field_is_neither_shown_nor_touched(
        store_cls: type[Any], store: redis.Redis, foreign: str) -> None:
    sid = stored_session(store_cls, a=1)
    store.hset(key_of(sid), "legacy", foreign)
    session = store_cls(sid)
    assert dict(session.items()) == {"a": 1}
    session["a"] = 2
    session.save()
    assert store.hgetall(key_of(sid)) == {"a": "2", "legacy": foreign}



def test_concurrent_edits_of_different_keys_both_survive(store_cls: type[Any],
                                                         store: redis.Redis) -> None:
    sid = stored_session(store_cls, a=1, b=1, cart=[], gone="x")
    first, second = store_cls(sid), store_cls(sid)
    assert first["a"] == second["b"] == 1  # both read the same state
    first["a"] = 2
    first["cart"].append("apple")  # an in-place edit, as Django's docs show
    first.modified = True
    second["b"] = 2
    del second["gone"]
    first.save()
    second.save()
    assert store.hgetall(key_of(sid)) == {"a": "2", "b": "2", "cart": '["apple"]'}



def test_save_after_a_concurrent_destroy_raises_update_error(store_cls: type[Any],
                                                             store: redis.Redis) -> None:
    from django.contrib.sessions.backends.base import UpdateError

    sid = stored_session(store_cls, a=1)
    session = store_cls(sid)
    assert session["a"] == 1
    store_cls(sid).delete()
    session["b"] = 2
    with pytest.raises(UpdateError):
        session.save()
    assert store.exists(key_of(sid)) == 0  # never resurrected



def test_cycle_key_keeps_the_logged_in_user(store_cls: type[Any], store: redis.Redis) -> None:
    session = store_cls()
    session["a"] = 1
    session.save()
    session.dce.login({"id": 9})
    logged = session.session_key
    session.cycle_key()
    assert store.smembers("dceusmap:9") == {session.session_key} != {logged}
    assert "$user" not in session



def test_clear_expired_is_a_no_op(store_cls: type[Any], store: redis.Redis) -> None:
    sid = stored_session(store_cls, a=1)
    store_cls.clear_expired()
    assert store.exists(key_of(sid)) == 1




# -- Django's settings and cookie ------------------------------------------------------------


def test_first_write_sends_djangos_cookie_and_the_age_is_the_redis_ttl(
        client: Client, store: redis.Redis) -> None:
    response = client.get("/set/a/1")
    morsel = response.cookies[COOKIE]
    sid = morsel.value
    assert is_valid_sid(sid)
    assert parse_sid(sid)[0] == TTL_MINUTES  # SESSION_COOKIE_AGE, carried by the sid
    assert int(morsel["max-age"]) == TTL_MINUTES * 60
    assert morsel["httponly"] is True  # SESSION_COOKIE_HTTPONLY
    assert not morsel["secure"]  # SESSION_COOKIE_SECURE=False over http: Django's default
    assert morsel["samesite"] == "Lax"  # SESSION_COOKIE_SAMESITE
    assert store.hgetall(key_of(sid)) == {"a": '"1"'}  # one JSON field per key
    assert TTL_MINUTES * 60 - 5 <= store.ttl(key_of(sid)) <= TTL_MINUTES * 60


def test_cookie_settings_and_secure_over_https(client: Client) -> None:
    with override_settings(SESSION_COOKIE_NAME="sid", SESSION_COOKIE_HTTPONLY=False,
                           SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_PATH="/app",
                           SESSION_COOKIE_DOMAIN="example.org"):
        morsel = client.get("/set/a/1").cookies["sid"]
        assert not morsel["httponly"]
        assert morsel["samesite"] == "Strict"
        assert (morsel["path"], morsel["domain"]) == ("/app", "example.org")
        assert not morsel["secure"]
        assert Client().get("/set/a/1", secure=True).cookies["sid"]["secure"] is True
    with override_settings(SESSION_COOKIE_SECURE=True):
        assert Client().get("/set/a/1").cookies[COOKIE]["secure"] is True


def test_expire_at_browser_close_uses_the_managers_ttl(client: Client,
                                                        store: redis.Redis) -> None:
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
        morsel = client.get("/set/a/1").cookies[COOKIE]
    assert morsel["max-age"] == ""
    assert morsel["expires"] == ""
    assert parse_sid(morsel.value)[0] == BROWSER_TTL


def test_a_cookie_age_over_65535_minutes_is_refused_at_start_up() -> None:
    from dce_session.integrations.django import SessionMiddleware, get_manager

    with override_settings(SESSION_COOKIE_AGE=46 * 86400):
        with pytest.raises(ConfigError, match="SESSION_COOKIE_AGE"):
            SessionMiddleware(lambda request: HttpResponse())
        with pytest.raises(ConfigError, match="SESSION_COOKIE_AGE"):
            get_manager()
    with override_settings(SESSION_COOKIE_AGE=65535 * 60):
        SessionMiddleware(lambda request: HttpResponse())


def test_a_modified_session_is_saved_and_its_cookie_refreshed(
        client: Client, trips: RoundTrips, store: redis.Redis) -> None:
    sid = client.get("/set/a/1").cookies[COOKIE].value
    trips.reset()
    response = client.get("/set/b/2")
    assert response.cookies[COOKIE].value == sid  # Django re-sends on every save
    assert trips.commands == [b"EVALSHA", b"EVALSHA"]  # load, then one write
    assert store.hgetall(key_of(sid)) == {"a": '"1"', "b": '"2"'}
    trips.reset()
    response = client.get("/get/a")
    assert COOKIE not in response.cookies  # not modified: not saved, nothing sent
    assert trips.commands == [b"EVALSHA"]


def test_save_every_request_refreshes_the_ttl_and_the_cookie(
        client: Client, store: redis.Redis, trips: RoundTrips) -> None:
    sid = client.get("/set/a/1").cookies[COOKIE].value
    store.expire(key_of(sid), 100)
    with override_settings(SESSION_SAVE_EVERY_REQUEST=True):
        trips.reset()
        response = client.get("/untouched")
    assert response.cookies[COOKIE].value == sid
    assert store.ttl(key_of(sid)) > 100
    assert trips.commands == [b"EVALSHA"]  # the touch (checks it is still stored)


def test_djangos_own_middleware_works_too(client: Client, store: redis.Redis) -> None:
    with override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"]):
        sid = client.get("/set/a/1").cookies[COOKIE].value
        assert client.get("/get/a").json() == {"value": "1"}
        cycled = client.get("/cycle").cookies[COOKIE].value
        assert cycled != sid
        assert store.exists(key_of(sid)) == 0
        assert client.get("/dump").json() == {"a": "1", "_auth_user_id": "7"}


# -- lazy, and never adopted ----------------------------------------------------------------


def test_reading_costs_one_round_trip_and_sends_no_cookie(client: Client,
                                                          trips: RoundTrips) -> None:
    client.get("/set/a/hello")
    trips.reset()
    response = client.get("/get/a")
    assert response.json() == {"value": "hello"}
    assert COOKIE not in response.cookies
    assert trips.commands == [b"EVALSHA"]


@pytest.mark.parametrize("presented", [generate_sid(30), "junk", "dcesid:../../x"])
def test_an_unknown_or_malformed_key_is_never_adopted_and_its_cookie_left_alone(
        client: Client, store: redis.Redis, presented: str) -> None:
    client.cookies[COOKIE] = presented
    response = client.get("/get/a")
    assert response.json() == {"value": None}
    assert COOKIE not in response.cookies  # it may be an old tab's: never expired by us
    sid = client.get("/set/a/1").cookies[COOKIE].value
    assert sid != presented
    assert live_keys(store) == [key_of(sid)]


def test_the_negative_control_djangos_middleware_would_expire_it(client: Client) -> None:
    """Django's own middleware deletes the cookie of a key found unknown: the
    expiry our middleware withholds (what the test above checks) is real."""
    with override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"]):
        client.cookies[COOKIE] = generate_sid(30)
        assert client.get("/get/a").cookies[COOKIE].value == ""


# -- the SessionBase contract ------------------------------------------------------------------


def test_create_stores_even_an_empty_session(store_cls: type[Any], client: Client,
                                             store: redis.Redis) -> None:
    session = store_cls()
    session.create()
    sid = session.session_key
    assert session.exists(sid) is True
    assert store_cls(sid).load() == {}  # the marker field is not a value
    assert dict(store_cls(sid).items()) == {}
    key = client.get("/create").json()["key"]
    assert store.exists(key_of(key)) == 1


def test_an_anonymous_session_key_is_stable_across_requests(client: Client) -> None:
    first = client.get("/key").json()["key"]
    assert is_valid_sid(first)
    assert client.get("/key").json()["key"] == first
    assert client.get("/key").json()["key"] == first


def test_save_on_a_new_session_stores_it(store_cls: type[Any]) -> None:
    session = store_cls()
    session.save()
    assert session.exists(session.session_key) is True


def test_save_must_create_raises_create_error_on_an_existing_key(
        store_cls: type[Any], store: redis.Redis) -> None:
    from django.contrib.sessions.backends.base import CreateError

    sid = stored_session(store_cls, a=1)
    session = store_cls(sid)
    session["a"] = 2
    with pytest.raises(CreateError):
        session.save(must_create=True)
    assert store.hgetall(key_of(sid)) == {"a": "1"}  # nothing moved
    fresh = store_cls()
    fresh["b"] = 1
    fresh.save(must_create=True)
    assert store.hgetall(key_of(fresh.session_key)) == {"b": "1"}


def test_djangos_contract_checks(store_cls: type[Any]) -> None:
    """A few of Django's own SessionTestsMixin checks, as Django writes them."""
    session = store_cls()
    assert (session.modified, session.accessed) == (False, False)
    session["a"], session["b"] = "c", "d"
    session.save()
    prev_key, prev_data = session.session_key, list(session.items())
    session.cycle_key()
    assert session.exists(prev_key) is False
    assert session.session_key != prev_key
    assert list(session.items()) == prev_data
    again = store_cls(session.session_key)
    assert not hasattr(again, "_session_cache")
    again.cycle_key()
    assert sorted(again.items()) == sorted(prev_data)
    # save doesn't clear data; flush
    again["x"] = "y"
    again.save()
    assert again["x"] == "y"
    key = again.session_key
    again.flush()
    assert again.exists(key) is False
    assert again.session_key is None
    assert (again.modified, again.accessed) == (True, True)
    # load does not create a record
    unknown = store_cls(generate_sid(30))
    unknown.load()
    assert unknown.session_key is None
    assert unknown.exists(unknown.session_key) is False
    # the default expiry is SESSION_COOKIE_AGE, also with set_expiry(0)
    fresh = store_cls()
    assert fresh.get_expiry_age() == TTL_MINUTES * 60
    fresh.set_expiry(0)
    assert fresh.get_expiry_age() == TTL_MINUTES * 60


def test_an_expiry_in_the_past_ends_the_session(store_cls: type[Any]) -> None:
    session = store_cls()
    session["foo"] = "bar"
    session.save()
    session.set_expiry(-timedelta(seconds=10))
    session.save()
    assert "foo" not in store_cls(session.session_key)


@pytest.mark.parametrize("expiry", [-10, -timedelta(seconds=10)], ids=["seconds", "timedelta"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_actual_expiry(store_cls: type[Any], store: redis.Redis, expiry: Any,
                       existing: bool) -> None:
    """Django's own ``test_actual_expiry``: with an expiry in the past the
    session expires at once. A new session is not even written; an existing
    one is destroyed, and the store keeps no key pointing at it."""
    session = store_cls()
    if existing:
        session["foo"] = "old"
        session.save()
        stored = session.session_key
        assert live_keys(store) == [key_of(stored)]
    session["foo"] = "bar"
    session.set_expiry(expiry)
    session.save()
    assert session.session_key is None  # no key for a dead session
    assert "foo" not in store_cls(session.session_key)
    assert live_keys(store) == []
    if existing:
        assert "foo" not in store_cls(stored)
    else:
        assert store.dbsize() == 0  # nothing written at all
    session.save()  # saved again: still past its expiry, still nothing
    assert live_keys(store) == []


def test_a_new_session_already_expired_is_never_written(store_cls: type[Any],
                                                         store: redis.Redis) -> None:
    for write in ("create", "must_create"):
        session = store_cls()
        session["foo"] = "bar"
        session.set_expiry(-10)
        if write == "create":
            session.create()
        else:
            session.save(must_create=True)
        assert session.session_key is None
        assert store.dbsize() == 0
    session = store_cls()  # negative control: a future expiry is stored
    session["foo"] = "bar"
    session.set_expiry(60)
    session.save()
    assert live_keys(store) == [key_of(session.session_key)]


@MIDDLEWARES
def test_a_past_expiry_sends_no_cookie_for_the_dead_key(client: Client, store: redis.Redis,
                                                         middleware: str) -> None:
    with override_settings(MIDDLEWARE=[middleware]):
        response = client.get("/expire-now/seconds")  # a new visitor
        assert response.status_code == 200
        assert store.dbsize() == 0  # nothing written
        if middleware == OURS:
            assert COOKIE not in response.cookies  # nothing to send
        else:  # Django's sends its cookie already expired, as with its own engines
            assert int(response.cookies[COOKIE]["max-age"]) <= 0
        sid = client.get("/set/a/1").cookies[COOKIE].value
        response = client.get("/expire-now/timedelta")
        assert live_keys(store) == []
        morsel = response.cookies[COOKIE]
        assert morsel.value != sid  # never the dead key
        assert int(morsel["max-age"]) <= 0  # this request ended it: the cookie expires
        if middleware == OURS:
            assert (morsel.value, morsel["max-age"]) == ("", 0)  # as for flush
        assert client.get("/dump").json() == {}


def test_set_expiry_moves_the_session_to_a_sid_of_that_ttl(
        client: Client, store: redis.Redis) -> None:
    sid = client.get("/set/a/1").cookies[COOKIE].value
    morsel = client.get("/expiry/600").cookies[COOKIE]
    assert morsel.value != sid
    assert int(morsel["max-age"]) == 600
    assert parse_sid(morsel.value)[0] == 10
    assert store.exists(key_of(sid)) == 0
    assert store.hget(key_of(morsel.value), "a") == '"kept"'
    assert 595 <= store.ttl(key_of(morsel.value)) <= 600
    morsel = client.get("/expiry/0").cookies[COOKIE]  # browser close: the manager's ttl
    assert parse_sid(morsel.value)[0] == BROWSER_TTL
    assert morsel["max-age"] == ""


def test_a_set_expiry_past_65535_minutes_raises_in_the_call(store_cls: type[Any],
                                                            store: redis.Redis) -> None:
    session = store_cls()
    session["a"] = 1
    with pytest.raises(ConfigError, match="set_expiry"):
        session.set_expiry(timedelta(days=60))
    assert session.get_expiry_age() == TTL_MINUTES * 60  # left as it was: SESSION_COOKIE_AGE
    session.set_expiry(timedelta(days=45))  # 64800 minutes: fine
    session.save()
    assert 45 * 86400 - 10 <= store.ttl(key_of(session.session_key)) <= 45 * 86400


def test_int_dict_keys_as_the_json_serializer_takes_them(client: Client,
                                                         store: redis.Redis) -> None:
    sid = client.get("/int-keys").cookies[COOKIE].value
    assert json.loads(store.hget(key_of(sid), "votes")) == {"1": "up", "2": "down"}
    assert client.get("/dump").json() == {"votes": {"1": "up", "2": "down"}}


def test_values_are_json_fields_and_never_pickled(store_cls: type[Any],
                                                  store: redis.Redis) -> None:
    sid = stored_session(store_cls, cart=["apple", 2], n=1.5, deep={"x": None}, t=(1, 2))
    assert store.hgetall(key_of(sid)) == {"cart": '["apple",2]', "n": "1.5",
                                          "deep": '{"x":null}', "t": "[1,2]"}
    again = store_cls(sid)
    assert dict(again.items()) == {"cart": ["apple", 2], "n": 1.5, "deep": {"x": None},
                                   "t": [1, 2]}
    bad = store_cls()
    bad["x"] = object()
    with pytest.raises(SerializationError):
        bad.save()


def test_bookkeeping_cannot_be_assigned(store_cls: type[Any]) -> None:
    session = store_cls()
    for attempt in (lambda: session.__setitem__("$user", {"id": 1}),
                    lambda: session.update({"ok": 1, "$newid": "x"}),
                    lambda: session.setdefault("$server", "x"),
                    lambda: session.__setitem__("_dce_session", 1)):
        with pytest.raises(KeyError, match="dce-session"):
            attempt()


def test_only_changed_keys_are_written(store_cls: type[Any], store: redis.Redis,
                                       trips: RoundTrips) -> None:
    sid = stored_session(store_cls, a=1, b=2)
    store.hset(key_of(sid), "b", "2 ")  # another writer's spacing of an unchanged value
    session = store_cls(sid)
    session["a"] = 10
    session["b"] = 2
    trips.reset()
    session.save()
    assert trips.commands == [b"EVALSHA"]
    assert store.hgetall(key_of(sid)) == {"a": "10", "b": "2 "}


def test_cycle_key_is_one_atomic_regenerate(store_cls: type[Any], store: redis.Redis,
                                            trips: RoundTrips) -> None:
    sid = stored_session(store_cls, a=1)
    session = store_cls(sid)
    trips.reset()
    session.cycle_key()  # unread: the regenerate copies server-side
    assert trips.commands == [b"EVALSHA"]
    assert store.exists(key_of(sid)) == 0
    assert store.hgetall(key_of(session.session_key)) == {"a": "1"}
    assert session["a"] == 1
    session["b"] = 2
    trips.reset()
    session.cycle_key()  # read, with a pending edit: still one step
    assert trips.commands == [b"EVALSHA"]
    assert store.hgetall(key_of(session.session_key)) == {"a": "1", "b": "2"}


def test_an_auth_login_joins_the_users_index(client: Client, store: redis.Redis) -> None:
    """django.contrib.auth's login (cycle_key, then ``_auth_user_id``) is a dce
    login: sessions_of / logout_everywhere see the Django user."""
    from dce_session.integrations.django import get_manager

    client.get("/set/a/1")
    sid = client.get("/cycle").cookies[COOKIE].value  # the view logs user 7 in
    manager = get_manager()
    assert manager.sessions_of(7) == [sid]
    assert manager.open(sid).user() == {"id": 7}
    assert client.get("/dump").json() == {"a": "1", "_auth_user_id": "7"}  # $user hidden
    assert manager.logout_everywhere(7) == 1
    assert client.get("/dump").json() == {}  # logged out everywhere: anonymous
    client.get("/cycle")
    client.get("/flush")  # auth.logout
    assert manager.sessions_of(7) == []


def test_an_auth_login_costs_the_cycle_and_one_write(
        client: Client, trips: RoundTrips, store: redis.Redis) -> None:
    """The save that writes ``_auth_user_id`` is the dce login itself (with the
    request's other changes): cycle_key's regenerate, then one login."""
    from dce_session.integrations.django import get_manager

    client.get("/set/a/1")
    trips.reset()
    sid = client.get("/cycle").cookies[COOKIE].value
    assert trips.commands == [b"EVALSHA", b"EVALSHA"]
    assert get_manager().sessions_of(7) == [sid]
    assert store.hgetall(key_of(sid)) == {"a": '"1"', "_auth_user_id": '"7"',
                                          "$user": '{"id":7}'}


def test_an_auth_login_with_a_non_integer_pk_is_not_indexed(store_cls: type[Any]) -> None:
    session = store_cls()
    session["_auth_user_id"] = "7f9c0a52-uuid"
    session.save()
    assert session.dce.user() is None
    assert store_cls(session.session_key)["_auth_user_id"] == "7f9c0a52-uuid"


def test_clear_without_a_read_deletes_every_value(client: Client, store: redis.Redis) -> None:
    sid = client.get("/set/a/1").cookies[COOKIE].value
    client.get("/set/b/2")
    assert client.get("/clear").status_code == 200
    assert client.get("/dump").json() == {}
    assert set(store.hgetall(key_of(sid))) <= {"_dce_session"}  # only the marker, if any


def test_login_and_logout_views(client: Client, store: redis.Redis) -> None:
    sid = client.get("/set/a/1").cookies[COOKIE].value
    cycled = client.get("/cycle").cookies[COOKIE].value
    assert cycled != sid
    assert store.exists(key_of(sid)) == 0
    response = client.get("/flush")
    assert response.cookies[COOKIE].value == ""  # this request ended it: expired
    assert live_keys(store) == []


def test_rotation_runs_when_the_session_is_read(redis_url: str, store: redis.Redis) -> None:
    now = [1_700_000_000.0]
    policy = RenewPolicy(interval_seconds=600)
    with override_settings(DCE_SESSION={"url": redis_url, "renew": policy,
                                        "clock": lambda: now[0]}):
        client = Client()
        old = client.get("/set/a/1").cookies[COOKIE].value
        assert COOKIE not in client.get("/get/a").cookies
        now[0] += 601
        response = client.get("/get/a")  # the view never calls try_renew
        assert response.json() == {"value": "1"}
        sid = response.cookies[COOKIE].value
        assert sid != old
        assert store.hget(key_of(old), "$newid") == sid
        assert client.get("/get/a").json() == {"value": "1"}


# -- races: two tabs of one browser, over a real WSGI server ----------------------------------


def _two_tabs(slow_path: str, other: str) -> tuple[httpx.Client, str, httpx.Response,
                                                    httpx.Response, contextlib.ExitStack]:
    from django.core.handlers.wsgi import WSGIHandler

    GATE["gate"] = gate = Gate()
    stack = contextlib.ExitStack()
    url = stack.enter_context(wsgi_server(WSGIHandler()))
    browser = stack.enter_context(httpx.Client(base_url=url, timeout=10))
    first = browser.get("/set/a/before").cookies[COOKIE]
    slow = Background(lambda: browser.get(slow_path))
    gate.wait_entered()
    second = browser.get(other)
    gate.release()
    return browser, first, slow.result(), second, stack


@MIDDLEWARES
@pytest.mark.parametrize("slow_path", ["/slow", "/slow-read"])
@pytest.mark.parametrize("other", ["/cycle", "/flush"])
def test_another_tabs_login_or_logout_is_never_undone(store: redis.Redis, slow_path: str,
                                                       other: str, middleware: str) -> None:
    for _ in range(3):  # the same interleaving, several times
        store.flushdb()
        with override_settings(MIDDLEWARE=[middleware]):
            browser, first, slow, second, stack = _two_tabs(slow_path, other)
        with stack, override_settings(MIDDLEWARE=[middleware]):
            assert second.status_code == 200
            assert slow.headers.get_list("set-cookie") == []  # no cookie of its own
            if slow_path == "/slow":  # it had changes: SessionInterrupted, as Django's
                assert slow.status_code == 400
            else:
                assert slow.status_code == 200
            assert store.exists(key_of(first)) == 0
            if other == "/cycle":
                assert browser.cookies[COOKIE] != first
                assert browser.get("/dump").json() == {"a": "before", "_auth_user_id": "7"}
            else:
                assert COOKIE not in browser.cookies
                assert live_keys(store) == []


@pytest.mark.parametrize("late", ["/get/a", "/set/b/2"])
@pytest.mark.parametrize("replaced", [True, False])
def test_a_request_arriving_after_another_tabs_login_never_undoes_it(
        client: Client, store: redis.Redis, late: str, replaced: bool) -> None:
    """A request sent with the old cookie before the login's reply arrived, run
    after the login: a write is ``SessionInterrupted`` (400, nothing written),
    a read sees an empty session, and neither sends a cookie. Negative control
    (``replaced=False``): a sid that simply expired gets a new session."""
    old = client.get("/set/a/before").cookies[COOKIE].value
    if replaced:
        assert client.get("/cycle").cookies[COOKIE].value != old
    else:
        store.delete(key_of(old))
    before = live_keys(store)
    stale = Client()
    stale.cookies[COOKIE] = old
    response = stale.get(late)
    writes = late.startswith("/set")
    if replaced or not writes:
        assert response.status_code == (400 if writes else 200)
        assert COOKIE not in response.cookies
        assert live_keys(store) == before
        if replaced:
            assert client.get("/get/a").json() == {"value": "before"}  # the login stands
    else:
        assert response.status_code == 200
        assert response.cookies[COOKIE].value != old


@MIDDLEWARES
@pytest.mark.parametrize("late", ["/get/a", "/dump", "/flush", "/set/b/2"])
@pytest.mark.parametrize("login", ["/cycle", "/dce-login"])
def test_a_stale_tab_never_expires_or_replaces_the_cookie_a_login_sent(
        client: Client, store: redis.Redis, middleware: str, late: str, login: str) -> None:
    """Tab A stores a value (K0); tab B, with the same cookie, logs in (K0 -> K1,
    the browser gets K1); then tab A, still sending K0, reads, logs out or
    writes -- through either middleware, Django's own included. No Set-Cookie
    may go out (``sessionid=""`` would wipe K1); a write is
    ``SessionInterrupted`` (Django's 400) and nothing is written; a read sees
    an empty session; a logout has nothing left to end."""
    with override_settings(MIDDLEWARE=[middleware]):
        old = client.get("/set/a/before").cookies[COOKIE].value
        new = client.get(login).cookies[COOKIE].value
        assert new != old
        before = live_keys(store)
        tab_a = Client()
        tab_a.cookies[COOKIE] = old
        response = tab_a.get(late)
        assert COOKIE not in response.cookies  # neither expired nor replaced
        assert response.status_code == (400 if late.startswith("/set") else 200)
        if late == "/get/a":
            assert response.json() == {"value": None}
        elif late == "/dump":
            assert response.json() == {}
        assert live_keys(store) == before  # nothing written, K1 not ended
        assert client.get("/get/a").json() == {"value": "before"}  # the login stands


@MIDDLEWARES
@pytest.mark.parametrize("late", ["/get/a", "/untouched"])
def test_a_stale_tab_saving_every_request_is_interrupted_without_a_cookie(
        client: Client, store: redis.Redis, middleware: str, late: str) -> None:
    """``SESSION_SAVE_EVERY_REQUEST``: the stale request's save is
    ``SessionInterrupted`` (400), still with no Set-Cookie. Negative control:
    the tab holding the live sid gets its cookie refreshed."""
    with override_settings(MIDDLEWARE=[middleware]):
        old = client.get("/set/a/before").cookies[COOKIE].value
        new = client.get("/cycle").cookies[COOKIE].value
        before = live_keys(store)
        with override_settings(SESSION_SAVE_EVERY_REQUEST=True):
            tab_a = Client()
            tab_a.cookies[COOKIE] = old
            response = tab_a.get(late)
            assert response.status_code == 400
            assert COOKIE not in response.cookies
            assert live_keys(store) == before
            response = client.get(late)
            assert response.status_code == 200
            assert response.cookies[COOKIE].value == new


def test_djangos_own_middleware_still_sends_live_cookies_and_expires_unknown_ones(
        client: Client, store: redis.Redis) -> None:
    """Negative control of the stale-tab tests, through Django's own middleware:
    the tab holding the live sid still gets its cookie, and a sid that merely
    expired (never replaced by a login) keeps Django's behaviour: a read or a
    logout expires its cookie, a write starts a fresh session."""
    with override_settings(MIDDLEWARE=[DJANGOS]):
        client.get("/set/a/before")
        new = client.get("/cycle").cookies[COOKIE].value
        assert client.get("/set/b/2").cookies[COOKIE].value == new
        store.delete(key_of(new))  # expired in Redis: nobody replaced it
        for path_ in ("/get/a", "/flush"):
            expired = Client()
            expired.cookies[COOKIE] = new
            response = expired.get(path_)
            assert response.status_code == 200
            assert response.cookies[COOKIE].value == ""  # Django's rule for an empty session
            assert int(response.cookies[COOKIE]["max-age"]) == 0
        fresh = Client()
        fresh.cookies[COOKIE] = new
        sid = fresh.get("/set/c/3").cookies[COOKIE].value
        assert sid not in ("", new)
        assert store.exists(key_of(sid)) == 1


def test_the_race_test_catches_a_naive_save(monkeypatch: pytest.MonkeyPatch,
                                            store: redis.Redis) -> None:
    """Negative control: a save that writes to a fresh sid when the old one is
    gone (what an engine without UpdateError does) replaces the new login."""
    from dce_session.integrations import django as integration
    from django.contrib.sessions.backends.base import UpdateError

    real = integration.SessionStore.save

    def naive(self: Any, must_create: bool = False) -> None:
        try:
            real(self, must_create)
        except UpdateError:
            self._key = self._dce = None
            self.create()

    monkeypatch.setattr(integration.SessionStore, "save", naive)
    browser, _, slow, login, stack = _two_tabs("/slow", "/cycle")
    with stack:
        assert slow.status_code == 200
        assert browser.cookies[COOKIE] != login.cookies[COOKIE]  # the login is gone


def test_client_callable_and_reset_on_setting_changed(redis_url: str,
                                                      store_cls: type[Any]) -> None:
    from dce_session.integrations.django import get_manager

    made: list[redis.Redis] = []

    def factory() -> redis.Redis:
        made.append(redis.Redis.from_url(redis_url, decode_responses=True, protocol=3))
        return made[-1]

    before = get_manager()
    try:
        with override_settings(DCE_SESSION={"client": factory, "sid_name": "django"}):
            manager = get_manager()
            assert manager is not before
            assert manager is get_manager()  # cached
            sid = stored_session(store_cls, a=[1])
            assert made[0].hgetall(f"django:{sid}") == {"a": "[1]"}
            assert store_cls(sid)["a"] == [1]
        assert get_manager() is not manager
        assert len(made) == 1
    finally:
        for client in made:
            client.close()


@pytest.mark.parametrize("config", [None, {}, {"url": "redis://x", "client": dict},
                                    {"client": "nope"}, {"url": "redis://x", "ttl_minutes": 0}])
def test_bad_configuration_is_a_config_error(config: Any, store_cls: type[Any]) -> None:
    from dce_session.integrations.django import get_manager

    with override_settings(DCE_SESSION=config), pytest.raises(ConfigError):
        get_manager()


# -- asyncio: Django's a* methods --------------------------------------------------------------


async def test_async_methods(store_cls: type[Any], store: redis.Redis) -> None:
    session = store_cls()
    await session.aset("a", 1)
    await session.asave()
    sid = session.session_key
    again = store_cls(sid)
    assert await again.aget("a") == 1
    await again.acycle_key()
    assert again.session_key != sid
    assert store.exists(key_of(sid)) == 0
    await again.aflush()
    assert again.session_key is None
    assert store.keys("dcesid:*") + store.keys("dceusmap:*") == []  # replay records aside


# -- the module's own example ----------------------------------------------------------------


def test_module_docstring_example_runs() -> None:
    # In a child process: the example configures Django's (process-wide) settings.
    code = (
        "import doctest, dce_session.integrations.django as m\n"
        "t = doctest.DocTestParser().get_doctest(m.__doc__, dict(vars(m)), m.__name__,"
        " m.__file__, 0)\n"
        "r = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)\n"
        "r.run(t)\n"
        "res = r.summarize(verbose=False)\n"
        "raise SystemExit(1 if res.failed or not res.attempted else 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr



def test_a_rotated_sid_in_its_grace_period_is_forwarded_and_the_cookie_resent(
        redis_url: str, store: redis.Redis) -> None:
    now = [1_700_000_000.0]
    with override_settings(DCE_SESSION={"url": redis_url, "clock": lambda: now[0]}):
        client = Client()
        old = client.get("/set/a/1").cookies[COOKIE].value
        now[0] += 601
        successor = rotate_elsewhere(redis_url, old, lambda: now[0])  # another service
        response = client.get("/get/a")  # still presents the old sid
        assert response.json() == {"value": "1"}
        assert response.cookies[COOKIE].value == successor
        assert client.get("/get/a").json() == {"value": "1"}


@MIDDLEWARES
def test_a_judged_sid_is_interrupted_and_its_cookie_left_alone(redis_url: str,
                                                               store: redis.Redis,
                                                               middleware: str) -> None:
    now = [1_700_000_000.0]
    policy = RenewPolicy(interval_seconds=600)
    with override_settings(DCE_SESSION={"url": redis_url, "renew": policy,
                                        "clock": lambda: now[0]}, MIDDLEWARE=[middleware]):
        client = Client()
        old = client.get("/set/a/1").cookies[COOKIE].value
        now[0] += 601
        successor = client.get("/get/a").cookies[COOKIE].value
        now[0] += 121  # past the grace period; the browser moved on, an old tab did not
        store.expire(key_of(successor), TTL_MINUTES * 60 - 10)
        store.expire(key_of(old), TTL_MINUTES * 60 - 100)
        stale_tab = Client()
        stale_tab.cookies[COOKIE] = old
        response = stale_tab.get("/set/b/2")
        assert response.status_code == 400  # SessionInterrupted, as Django's engines
        assert COOKIE not in response.cookies
        stale_tab.cookies[COOKIE] = old
        response = stale_tab.get("/get/a")  # read only: no session, nothing sent
        assert response.json() == {"value": None}
        assert COOKIE not in response.cookies
        assert client.get("/dump").json() == {"a": "1"}
