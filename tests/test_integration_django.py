"""Django: ``SESSION_ENGINE = "dce_session.integrations.django"`` against a real Redis.

Django's settings are process-wide: this module configures them once (a
minimal project: SessionMiddleware and a few views, URLconf below) and
overrides what it needs for the rest of the module. Round trips are counted
on a client handed to the store through ``DCE_SESSION["client"]`` (``trips``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import django
import pytest
import redis
from dce_session import _scripts
from dce_session.core import generate_sid, is_valid_sid, parse_sid
from dce_session.errors import ConfigError, SerializationError
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client, override_settings
from django.urls import path

TTL_MINUTES = 30
COOKIE = "sessionid"


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


def flush_view(request: HttpRequest) -> HttpResponse:
    request.session.flush()  # what django.contrib.auth.logout() does
    return HttpResponse("flushed")


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
    path("dce-login", dce_login_view),
    path("dce-user", dce_user_view),
]


def project_settings(redis_url: str) -> dict[str, Any]:
    return {
        "SECRET_KEY": "test-only",
        "USE_TZ": True,
        "DEBUG": False,
        "ALLOWED_HOSTS": ["testserver"],
        "ROOT_URLCONF": __name__,
        "INSTALLED_APPS": [],
        "DATABASES": {},
        "MIDDLEWARE": ["dce_session.integrations.django.SessionMiddleware"],
        "SESSION_ENGINE": "dce_session.integrations.django",
        "DCE_SESSION": {"url": redis_url, "ttl_minutes": TTL_MINUTES},
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
                                            "ttl_minutes": TTL_MINUTES}):
            for script in (_scripts.OPEN, _scripts.WRITE, _scripts.RENEW, _scripts.DESTROY):
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


# -- the cookie -----------------------------------------------------------------------


def test_first_write_sends_the_cookie_with_dce_flags(client: Client,
                                                         store: redis.Redis) -> None:
    response = client.get("/set/a/1")
    morsel = response.cookies[COOKIE]
    sid = morsel.value
    assert is_valid_sid(sid)
    assert parse_sid(sid)[0] == TTL_MINUTES
    assert morsel["httponly"] is True
    assert morsel["secure"] is True
    assert morsel["samesite"] == "Lax"
    assert int(morsel["max-age"]) == TTL_MINUTES * 60
    assert store.hgetall(key_of(sid)) == {"a": '"1"'}  # one JSON field per key
    assert 0 < store.ttl(key_of(sid)) <= TTL_MINUTES * 60


def test_reading_costs_one_round_trip_and_sends_no_cookie(client: Client,
                                                          trips: RoundTrips) -> None:
    client.get("/set/a/hello")
    trips.reset()
    response = client.get("/get/a")
    assert response.json() == {"value": "hello"}
    assert COOKIE not in response.cookies
    assert trips.commands == [b"EVALSHA"]  # the load, with the touch


def test_an_edit_writes_only_in_one_round_trip(client: Client, trips: RoundTrips,
                                               store: redis.Redis) -> None:
    client.get("/set/a/1")
    trips.reset()
    response = client.get("/set/b/2")
    assert trips.commands == [b"EVALSHA", b"EVALSHA"]  # the load (with the touch), the update
    assert COOKIE not in response.cookies  # same sid: not re-sent
    sid = client.cookies[COOKIE].value
    assert store.hgetall(key_of(sid)) == {"a": '"1"', "b": '"2"'}


@pytest.mark.parametrize("cookie", ["forged", "unknown"])
def test_a_presented_key_is_never_adopted(client: Client, store: redis.Redis,
                                          cookie: str) -> None:
    presented = "not-a-sid-at-all" if cookie == "forged" else generate_sid(TTL_MINUTES)
    client.cookies[COOKIE] = presented
    response = client.get("/set/a/1")
    sid = response.cookies[COOKIE].value
    assert sid != presented
    assert is_valid_sid(sid)
    assert store.exists(key_of(presented)) == 0
    assert store.hgetall(key_of(sid)) == {"a": '"1"'}


def test_unknown_key_read_only_is_dropped(client: Client, store: redis.Redis) -> None:
    client.cookies[COOKIE] = generate_sid(TTL_MINUTES)
    response = client.get("/get/a")
    assert response.json() == {"value": None}
    assert response.cookies[COOKIE].value == ""  # the useless cookie is expired
    assert response.cookies[COOKIE]["max-age"] == 0
    assert store.dbsize() == 0


# -- the mapping --------------------------------------------------------------------


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


def test_bookkeeping_cannot_be_assigned(store_cls: type[Any]) -> None:
    session = store_cls()
    with pytest.raises(KeyError, match="bookkeeping"):
        session["$user"] = {"id": 1}
    with pytest.raises(KeyError, match="bookkeeping"):
        session.update({"a": 1, "$user": {"id": 1}})
    with pytest.raises(KeyError, match="bookkeeping"):
        session.setdefault("$newid", "x")
    assert dict(session.items()) == {}  # nothing got in
    session._session_cache["$user"] = {"id": 1}  # past every guard: refused when written
    with pytest.raises(KeyError, match="bookkeeping"):
        session.save()


async def test_bookkeeping_cannot_be_assigned_async(store_cls: type[Any]) -> None:
    session = store_cls()
    with pytest.raises(KeyError, match="bookkeeping"):
        await session.aset("$user", {"id": 1})
    with pytest.raises(KeyError, match="bookkeeping"):
        await session.aupdate({"$client": 1})
    with pytest.raises(KeyError, match="bookkeeping"):
        await session.asetdefault("$server", 1)
    await session.aupdate({"a": 1})
    assert await session.asetdefault("a", 2) == 1
    assert dict(session.items()) == {"a": 1}


def test_values_are_json_fields_and_never_pickled(store_cls: type[Any],
                                                  store: redis.Redis) -> None:
    sid = stored_session(store_cls, cart=["apple", 2], n=1.5, deep={"x": None})
    assert store.hgetall(key_of(sid)) == {"cart": '["apple",2]', "n": "1.5",
                                          "deep": '{"x":null}'}
    again = store_cls(sid)
    assert dict(again.items()) == {"cart": ["apple", 2], "n": 1.5, "deep": {"x": None}}
    bad = store_cls()
    bad["x"] = object()
    with pytest.raises(SerializationError):
        bad.save()


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


# -- concurrency: only what changed is written ------------------------------------------


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


def test_save_writes_nothing_when_nothing_changed(store_cls: type[Any],
                                                  trips: RoundTrips) -> None:
    sid = stored_session(store_cls, a=1)
    session = store_cls(sid)
    session["a"] = 1  # same value (this loads: one round trip)
    trips.reset()
    session.save()
    assert trips.count == 0


# -- the SessionBase contract ----------------------------------------------------------


def test_exists_load_delete(store_cls: type[Any], store: redis.Redis) -> None:
    sid = stored_session(store_cls, a=1)
    session = store_cls()
    assert session.exists(sid) is True
    assert session.exists(generate_sid(TTL_MINUTES)) is False
    assert session.exists("junk") is False
    assert store_cls(sid).load() == {"a": 1}
    session.delete(sid)
    assert store.exists(key_of(sid)) == 0
    gone = store_cls(sid)
    assert gone.load() == {}
    assert gone.session_key is None


def test_create_gives_a_fresh_sid_and_keeps_the_data(store_cls: type[Any],
                                                     store: redis.Redis) -> None:
    session = store_cls()
    session["a"] = 1
    session.create()
    sid = session.session_key
    assert is_valid_sid(sid)
    assert store.hgetall(key_of(sid)) == {"a": "1"}
    session.save(must_create=True)
    assert session.session_key != sid
    assert store.hgetall(key_of(session.session_key)) == {"a": "1"}


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


def test_cycle_key_is_one_atomic_regenerate(store_cls: type[Any], store: redis.Redis,
                                            trips: RoundTrips) -> None:
    sid = stored_session(store_cls, a=1)
    session = store_cls(sid)
    assert session["a"] == 1
    session["b"] = 2  # a pending edit rides along
    trips.reset()
    session.cycle_key()
    assert trips.commands == [b"EVALSHA"]
    new = session.session_key
    assert new != sid
    assert session.modified is True
    assert store.exists(key_of(sid)) == 0
    assert store.hgetall(key_of(new)) == {"a": "1", "b": "2"}
    assert 0 < store.ttl(key_of(new)) <= TTL_MINUTES * 60
    trips.reset()
    session.save()  # nothing left to write
    assert trips.count == 0


def test_cycle_key_unread_session_needs_no_load(store_cls: type[Any], store: redis.Redis,
                                                trips: RoundTrips) -> None:
    sid = stored_session(store_cls, a=1)
    session = store_cls(sid)
    trips.reset()
    session.cycle_key()
    assert session["a"] == 1
    assert trips.commands == [b"EVALSHA"]
    assert store.exists(key_of(sid)) == 0


def test_cycle_key_of_an_unknown_unread_sid_ignores_its_ttl(store_cls: type[Any],
                                                            store: redis.Redis) -> None:
    presented = generate_sid(5)  # a well-formed sid the store never saw, a client's ttl
    session = store_cls(presented)
    session.cycle_key()
    sid = session.session_key
    assert sid != presented
    assert parse_sid(sid)[0] == TTL_MINUTES  # the configured ttl, not the client's
    assert session.get_expiry_age() == TTL_MINUTES * 60
    session["a"] = 1
    session.save()
    assert session.session_key == sid
    assert store.hgetall(key_of(sid)) == {"a": "1"}
    assert store.ttl(key_of(sid)) > 5 * 60


def test_cycle_key_keeps_the_logged_in_user(store_cls: type[Any], store: redis.Redis) -> None:
    session = store_cls()
    session["a"] = 1
    session.save()
    session.dce.login({"id": 9})
    logged = session.session_key
    session.cycle_key()
    assert store.smembers("dceusmap:9") == {session.session_key} != {logged}
    assert "$user" not in session


def test_login_view_cycles_the_cookie(client: Client, store: redis.Redis) -> None:
    first = client.get("/set/a/1").cookies[COOKIE].value
    sid = client.get("/cycle").cookies[COOKIE].value
    assert sid != first
    assert store.exists(key_of(first)) == 0
    assert client.get("/dump").json() == {"a": "1", "_auth_user_id": "7"}


def test_flush_destroys_and_expires_the_cookie(client: Client, store: redis.Redis) -> None:
    sid = client.get("/set/a/1").cookies[COOKIE].value
    client.get("/dce-login")
    sid = client.cookies[COOKIE].value
    response = client.get("/flush")
    assert response.cookies[COOKIE].value == ""
    assert response.cookies[COOKIE]["max-age"] == 0
    assert store.exists(key_of(sid)) == 0
    assert store.exists("dceusmap:7") == 0  # its user-index entry went too


def test_clear_then_save_removes_what_was_stored(store_cls: type[Any],
                                                 store: redis.Redis) -> None:
    sid = stored_session(store_cls, a=1, b=2)
    session = store_cls(sid)
    session.clear()  # no read before: the save finds out what to remove
    session["c"] = 3
    session.save()
    assert store.hgetall(key_of(sid)) == {"c": "3"}


def test_cookie_secure_can_be_turned_off(client: Client, redis_url: str) -> None:
    with override_settings(DCE_SESSION={"url": redis_url, "ttl_minutes": TTL_MINUTES,
                                        "secure": False, "same_site": "Strict"}):
        morsel = client.get("/set/a/1").cookies[COOKIE]
    assert morsel["secure"] == ""
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"


def test_cookie_sent_only_when_the_sid_changes(client: Client, store: redis.Redis) -> None:
    first = client.get("/set/a/1").cookies[COOKIE].value
    for path_ in ("/set/a/2", "/set/b/3", "/get/a"):
        response = client.get(path_)
        assert COOKIE not in response.cookies, path_
    assert store.hgetall(key_of(first)) == {"a": '"2"', "b": '"3"'}
    cycled = client.get("/cycle").cookies[COOKIE]
    assert cycled.value not in ("", first)
    assert cycled["secure"] is True
    assert int(cycled["max-age"]) == TTL_MINUTES * 60
    assert COOKIE not in client.get("/set/c/4").cookies


def test_save_every_request_does_not_resend_the_cookie(client: Client,
                                                       store: redis.Redis) -> None:
    sid = client.get("/set/a/1").cookies[COOKIE].value
    with override_settings(SESSION_SAVE_EVERY_REQUEST=True):
        response = client.get("/get/a")
    assert response.json() == {"value": "1"}
    assert COOKIE not in response.cookies
    assert store.exists(key_of(sid)) == 1


def test_malformed_cookie_is_expired_without_io(client: Client, commandstats: Any) -> None:
    client.cookies[COOKIE] = "not-a-sid"
    commandstats.snapshot()
    response = client.get("/untouched")
    assert response.cookies[COOKIE].value == ""
    assert commandstats.delta() == {}


# -- expiry -------------------------------------------------------------------------------


def test_redis_ttl_is_get_expiry_age(store_cls: type[Any], store: redis.Redis) -> None:
    session = store_cls()
    session["a"] = 1
    session.save()
    age = session.get_expiry_age()
    assert age == TTL_MINUTES * 60
    assert age - 5 <= store.ttl(key_of(session.session_key)) <= age


def test_set_expiry_moves_the_session_to_that_ttl(store_cls: type[Any],
                                                  store: redis.Redis) -> None:
    sid = stored_session(store_cls, a=1)
    session = store_cls(sid)
    session.set_expiry(3600)
    session.save()
    longer = session.session_key
    assert longer != sid
    assert store.exists(key_of(sid)) == 0
    assert parse_sid(longer)[0] == 60
    assert session.get_expiry_age() == 3600
    assert 3595 <= store.ttl(key_of(longer)) <= 3600
    again = store_cls(longer)
    again.set_expiry(None)
    again.save()
    assert parse_sid(again.session_key)[0] == TTL_MINUTES
    assert again.get_expiry_age() == TTL_MINUTES * 60


def test_default_ttl_follows_session_cookie_age(redis_url: str, store_cls: type[Any],
                                                store: redis.Redis) -> None:
    with override_settings(DCE_SESSION={"url": redis_url}, SESSION_COOKIE_AGE=600):
        session = store_cls()
        session["a"] = 1
        session.save()
        assert parse_sid(session.session_key)[0] == 10
        assert session.get_expiry_age() == 600
        assert 595 <= store.ttl(key_of(session.session_key)) <= 600


def test_clear_expired_is_a_no_op(store_cls: type[Any], store: redis.Redis) -> None:
    sid = stored_session(store_cls, a=1)
    store_cls.clear_expired()
    assert store.exists(key_of(sid)) == 1


# -- configuration --------------------------------------------------------------------------


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

