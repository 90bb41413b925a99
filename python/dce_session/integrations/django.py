"""Django sessions stored by dce-session: ``SESSION_ENGINE = "dce_session.integrations.django"``.

Settings::

    SESSION_ENGINE = "dce_session.integrations.django"
    MIDDLEWARE = [
        ...,
        # Django's "django.contrib.sessions.middleware.SessionMiddleware" works;
        # this subclass adds Secure over https and leaves alone the cookie of
        # a key found unknown, which Django's expires (see below):
        "dce_session.integrations.django.SessionMiddleware",
        ...,
    ]
    DCE_SESSION = {
        "url": "redis://localhost:6379/0",   # or "client": a zero-argument callable
                                             # returning a blocking redis-py client
        # plus any SessionManager keyword: "ttl_minutes" (the TTL of sessions with a
        # browser-session cookie), "sid_name", "renew", ...
    }

Example (runnable: a throwaway Redis, settings made in code)::

    >>> import django
    >>> from django.conf import settings
    >>> from dce_session.testing import RedisServer
    >>> with RedisServer() as server:
    ...     settings.configure(
    ...         SECRET_KEY="example", USE_TZ=True,
    ...         SESSION_ENGINE="dce_session.integrations.django",
    ...         SESSION_COOKIE_AGE=1800, DCE_SESSION={"url": server.url})
    ...     django.setup()
    ...     store = SessionStore()      # what SessionMiddleware makes for a new visitor
    ...     store["cart"] = ["apple"]
    ...     store.save()                # one round trip: the session is written
    ...     again = SessionStore(store.session_key)
    ...     print(again["cart"], "$user" in again, again.get_expiry_age())
    ...     reset_manager()             # closes the client made from "url"
    ['apple'] False 1800

Django's contract, over dce-session:

- ``session_key`` is a dce sid. A key that is not one counts as no key; a sid
  unknown to Redis is never adopted (``load()`` gives ``{}`` and the key
  becomes ``None``). A sid that another request ended -- a login elsewhere
  replaced it, or a rotation judgment -- reads the same, but the session is
  not ``is_empty()``: with either middleware a read sends no cookie (the
  browser may hold the newer one), a save raises ``UpdateError`` and a
  ``flush()`` has nothing left to end.
- Lazy: nothing is read until the view reads the session; the first read is
  one round trip (the TTL refreshed; with ``renew=`` the rotation runs first).
- ``create()`` stores the session at once, even empty (an empty session holds
  one hidden marker field), so its key is stable from then on.
  ``save(must_create=True)`` raises ``CreateError`` when the key exists.
- ``save()`` writes only the changed keys (in-place edits included) and the
  removed ones, in one ``update``; with nothing changed it refreshes the TTL
  (``SESSION_SAVE_EVERY_REQUEST``). ``UpdateError`` when the session was ended
  meanwhile (the middleware answers ``SessionInterrupted``, as with Django's
  engines).
- ``cycle_key()`` (``django.contrib.auth.login``) is ONE atomic regenerate: the
  data with the pending edits moves to a new sid and the old key goes in the
  same step. ``flush()`` (``auth.logout``) destroys the session.
- Lifetimes: a session's Redis TTL is its ``get_expiry_age()`` --
  ``SESSION_COOKIE_AGE`` or a ``set_expiry()`` -- in whole minutes (at most
  65535: more is a ``ConfigError``, at start-up for the setting, in the
  ``set_expiry()`` call for a session's own). A
  browser-session cookie (``SESSION_EXPIRE_AT_BROWSER_CLOSE``,
  ``set_expiry(0)``) uses the manager's ``ttl_minutes``. The ttl is carried by
  the sid, so ``set_expiry()`` moves the session to a new sid (one atomic
  regenerate) when it is saved. An expiry in the past ends the session when
  it is saved: a new one is never written, a stored one is destroyed, and
  ``session_key`` becomes ``None`` either way.
- Values as Django's ``JSONSerializer`` takes them (int dict keys become
  strings, tuples lists); each top-level key is its own JSON field of the dce
  hash (``SESSION_SERIALIZER`` is not used, nothing is pickled).
- The bookkeeping fields (``$user``, ...) never appear in ``request.session``;
  assigning one raises ``KeyError``. ``request.session.dce`` is the
  :class:`dce_session.Session`; when one of its calls changes the sid
  (``login``), ``session_key`` follows and the cookie goes out.
- ``clear_expired()`` does nothing: Redis expires the keys.

The cookie (``SessionMiddleware``, Django's subclassed): Django's rules and
``SESSION_COOKIE_*`` settings -- sent when the session is saved (modified, or
``SESSION_SAVE_EVERY_REQUEST``), not on a 5xx -- with ``Secure`` also when the
request came over https, and expired only when this request ended the
session (``flush()``, an expiry in the past): a presented key that is unknown
or was ended by another request (a login in another tab) is left alone, so
the newer cookie survives. Django's own middleware leaves the cookie of a
key ended by another request alone too, but expires that of an unknown key.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers
from django.utils.http import http_date

from dce_session import Session, SessionManager
from dce_session.core import is_valid_sid
from dce_session.errors import ConfigError, SerializationError, SessionDestroyed
from dce_session.integrations._common import (
    Cookie,
    Snapshot,
    cookie,
    jsonable,
    reserved_fields,
    ttl_minutes,
    user_values,
)

__all__ = ["CreateError", "SessionMiddleware", "SessionStore", "UpdateError", "get_manager",
           "reset_manager"]

_EXPIRY = "_session_expiry"  # the key SessionBase.set_expiry() writes
_AUTH_USER = "_auth_user_id"  # django.contrib.auth.SESSION_KEY: the logged-in user's pk
#: the hidden field that keeps an empty session stored (a Redis hash cannot be empty)
MARKER = "_dce_session"
_INTERRUPTED = ("The request's session was deleted before the request completed. "
                "The user may have logged out in a concurrent request, for example.")

_lock = threading.Lock()
_manager: SessionManager | None = None
_owned_client: redis.Redis | None = None  # made from "url": ours to close


def cookie_age_minutes() -> int:
    """``SESSION_COOKIE_AGE`` in minutes (``ConfigError`` past 65535 minutes)."""
    minutes = ttl_minutes(settings.SESSION_COOKIE_AGE, setting="SESSION_COOKIE_AGE")
    if minutes is None:
        raise ConfigError("SESSION_COOKIE_AGE must be more than 0 seconds")
    return minutes


def _build() -> tuple[SessionManager, redis.Redis | None]:
    config = getattr(settings, "DCE_SESSION", None)
    if not isinstance(config, dict):
        raise ConfigError('settings.DCE_SESSION must be a dict: {"url": "redis://..."} '
                          'or {"client": callable}, plus SessionManager keywords')
    cookie_age_minutes()
    options = dict(config)
    url, factory = options.pop("url", None), options.pop("client", None)
    if (url is None) == (factory is None):
        raise ConfigError('settings.DCE_SESSION needs exactly one of "url" and "client"')
    owned: redis.Redis | None = None
    if url is not None:
        if not isinstance(url, str):
            raise ConfigError(f'DCE_SESSION["url"] must be a str, got {url!r}')
        owned = client = redis.Redis.from_url(url)
    elif callable(factory):
        client = factory()
    else:
        raise ConfigError(f'DCE_SESSION["client"] must be callable, got {factory!r}')
    try:
        return SessionManager(client, **options), owned
    except BaseException:
        if owned is not None:
            owned.close()
        raise


def get_manager() -> SessionManager:
    """The process's ``SessionManager``, built from ``settings.DCE_SESSION`` on first use."""
    global _manager, _owned_client
    manager = _manager
    if manager is None:
        with _lock:
            if _manager is None:
                _manager, _owned_client = _build()
            manager = _manager
    return manager


def reset_manager() -> None:
    """Forget the cached manager, closing the client made from ``"url"``.

    Runs by itself when ``DCE_SESSION`` or ``SESSION_COOKIE_AGE`` changes
    through Django's ``setting_changed`` signal (``override_settings``).
    """
    global _manager, _owned_client
    with _lock:
        owned, _manager, _owned_client = _owned_client, None, None
    if owned is not None:
        owned.close()


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting in ("DCE_SESSION", "SESSION_COOKIE_AGE"):
        reset_manager()


setting_changed.connect(_on_setting_changed, dispatch_uid="dce_session.integrations.django")


def _check(keys: Any) -> None:
    hidden = reserved_fields(get_manager()) | {MARKER}
    for key in keys:
        if key in hidden:
            raise KeyError(f"{key!r} is kept by dce-session; use request.session.dce")


def _values(session: Session) -> dict[str, Any]:
    """The stored values (one round trip); fields that are not JSON are left out."""
    try:
        return session.data()
    except SerializationError:  # another program's field: neither shown nor written
        return user_values(session.raw(), reserved_fields(session.manager))


class SessionStore(SessionBase):
    """Django's session store over dce-session (see the module docstring).

    ``SessionStore(session_key)`` does no I/O; a key that is not a dce sid
    counts as no key at all.
    """

    def __init__(self, session_key: str | None = None) -> None:
        self._dce: Session | None = None
        self._key: str | None = None
        self._origin = session_key if is_valid_sid(session_key) else None
        self._snapshot = Snapshot(to_store=jsonable)
        self._changed = False
        self._interrupted = False  # a rotation judgment: the browser holds a newer sid
        #: this request ended a stored session (flush, delete): the cookie may go
        self.ended = False
        super().__init__(session_key)

    # -- the key follows the dce session ---------------------------------------------

    def _validate_session_key(self, key: Any) -> bool:
        return is_valid_sid(key)

    def _get_key(self) -> str | None:
        if self._dce is not None and self._dce.stored:
            self._key = self._dce.id  # moved: login, regenerate, a forwarded sid
        return self._key

    def _set_key(self, value: str | None) -> None:
        self._key = value if self._validate_session_key(value) else None
        if self._dce is not None and self._dce.id != self._key:
            self._dce = None

    session_key = property(_get_key)
    _session_key = property(_get_key, _set_key)

    @property
    def modified(self) -> bool:
        """Edited in this request, or the sid moved: Django then saves and sends the cookie."""
        key = self._get_key()
        return self._changed or (key is not None and key != self._origin)

    @modified.setter
    def modified(self, value: bool) -> None:
        self._changed = value

    @property
    def dce(self) -> Session:
        """The ``dce_session.Session`` behind this store (``.user()``, ``.login()``...).

        A call on it that changes the sid moves ``session_key``, and the cookie follows.
        """
        if self._dce is None:
            key, manager = self._get_key(), get_manager()
            self._dce = manager.open(key) if key is not None else manager.new(self._ttl())
        return self._dce

    def _ttl(self, cache: dict[str, Any] | None = None) -> int:
        """The ttl (minutes) of the session's sid, from its expiry."""
        data = getattr(self, "_session_cache", {}) if cache is None else cache
        expiry = data.get(_EXPIRY)
        if expiry == 0 or (expiry is None and settings.SESSION_EXPIRE_AT_BROWSER_CLOSE):
            return get_manager().ttl_minutes
        if expiry is None:
            return cookie_age_minutes()
        age = self.get_expiry_age(expiry=expiry)
        return ttl_minutes(max(age, 1), setting="set_expiry()") or 1

    def set_expiry(self, value: Any) -> None:
        """Django's ``set_expiry``; a lifetime over 65535 minutes is a
        ``ConfigError`` here, in the view (the expiry left as it was), not when
        the response is saved."""
        before = self.get(_EXPIRY)
        super().set_expiry(value)
        try:
            self._ttl()
        except ConfigError:
            super().set_expiry(before)
            raise

    def _expired(self, data: dict[str, Any]) -> bool:
        expiry = data.get(_EXPIRY)
        return bool(expiry) and self.get_expiry_age(expiry=expiry) <= 0

    def is_empty(self) -> bool:
        """Django's test (no key and no values), except that a session another
        request ended (a login elsewhere replaced the sid, a judgment) is never
        empty: Django's middleware expires the cookie of an empty session, and
        the browser may hold that request's newer cookie by now. So a read
        sends no cookie and a save raises ``UpdateError`` (the middleware's
        ``SessionInterrupted``), with either middleware."""
        return not self._interrupted and super().is_empty()

    def _forget(self) -> None:
        """No key any more (the session ended, or was never stored)."""
        self._dce, self._key = None, None
        self._snapshot = Snapshot(to_store=jsonable)

    # -- reading -----------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """One round trip: the values, the TTL refreshed. An unknown sid gives ``{}``."""
        if self._get_key() is None:
            return {}
        session = self.dce
        values: dict[str, Any] = {}
        texts = None
        try:
            if session.manager.renew is not None:
                session.try_renew()
            values = _values(session)
            texts = session.raw()  # loaded already: no round trip
        except SessionDestroyed:  # judged: the browser moved on; nothing of ours goes out
            self._interrupted = True
        if session.replaced:  # a login elsewhere: the browser holds its new sid
            self._interrupted = True
        if session.newborn:  # unknown to the store: never adopted
            self._dce, self._key = None, None
            return {}
        self._snapshot = Snapshot(values, to_store=jsonable, texts=texts)
        values.pop(MARKER, None)
        return values

    def exists(self, session_key: str | None) -> bool:
        """Whether ``session_key`` is a stored session (one round trip, no touch)."""
        if not is_valid_sid(session_key):
            return False
        return get_manager().open(session_key).ttl_passed() is not None

    def __setitem__(self, key: str, value: Any) -> None:
        _check((key,))
        super().__setitem__(key, value)

    def update(self, dict_: Any) -> None:  # type: ignore[override]  # Django's signature
        _check(dict(dict_))
        super().update(dict_)

    def setdefault(self, key: str, value: Any) -> Any:  # type: ignore[override]  # Django's
        _check((key,))
        return super().setdefault(key, value)

    async def aset(self, key: str, value: Any) -> None:
        _check((key,))
        await super().aset(key, value)

    async def aupdate(self, dict_: Any) -> None:
        _check(dict(dict_))
        await super().aupdate(dict_)

    async def asetdefault(self, key: str, value: Any) -> Any:
        _check((key,))
        return await super().asetdefault(key, value)

    # -- writing -----------------------------------------------------------------------

    def _data(self) -> dict[str, Any]:
        data: dict[str, Any] = self._get_session()  # type: ignore[attr-defined]  # no stubs
        return data

    def _changes(self, data: dict[str, Any]) -> Any:
        _check(data)
        changes = self._snapshot.changes(data, keep=(MARKER,))
        if not data and MARKER not in self._snapshot:  # keep an empty session stored
            changes.set[MARKER] = True
        return changes

    def create(self) -> None:
        """A new session under a fresh sid, stored now (its current data, or empty).

        One whose expiry is already past is not written at all (Django's
        engines store it already expired): the key stays ``None``.
        """
        data: dict[str, Any] = getattr(self, "_session_cache", {})
        _check(data)
        self._session_cache = data
        if self._expired(data):
            self._forget()
            self.modified = True
            return
        manager = get_manager()
        self._dce, self._key = manager.new(self._ttl(data)), None
        self._snapshot = Snapshot(to_store=jsonable)
        changes = self._changes(data)
        user = self._logged_in(changes.set)
        if user is None:
            self._dce.update(changes.set)
        else:
            self._dce.login(user, changes=changes.set)
        self._snapshot.apply(changes)
        self._key = self._dce.id
        self.modified = True

    def _logged_in(self, written: dict[str, Any]) -> dict[str, int] | None:
        """The dce user when ``django.contrib.auth`` has just logged a user in
        (its pk, an integer, is being written): the write is then a dce
        ``login`` (a fresh sid, the same one round trip), so that the session
        joins that user's index (``sessions_of``, ``sync``,
        ``logout_everywhere``). None otherwise."""
        pk = written.get(_AUTH_USER)
        if not isinstance(pk, str | int) or isinstance(pk, bool):
            return None
        try:
            uid = int(pk)
        except ValueError:  # a UUID or text primary key: nothing to index by
            return None
        return {get_manager().uid_field: uid} if 0 <= uid < 2**64 else None

    def save(self, must_create: bool = False) -> None:
        """Write the changed keys in one ``update()``; nothing changed: refresh the TTL.

        ``must_create``: ``CreateError`` when the key is stored, else a new session.
        ``UpdateError`` when the session was ended meanwhile.
        """
        if self._interrupted:  # the load found the sid replaced by a login elsewhere
            raise UpdateError("the session was ended by another request")
        if self._get_key() is None:
            self.create()
            return
        if must_create:
            if self.exists(self._get_key()):
                raise CreateError(f"session {self._get_key()!r} exists")
            self._key, self._dce = None, None
            self.create()
            return
        was_loaded = hasattr(self, "_session_cache")
        data = self._data()
        if self._interrupted:
            raise UpdateError("the session was ended by another request")
        if self._get_key() is None:  # the load found it unknown: start afresh
            self.create()
            return
        if self._expired(data):  # an expiry in the past ends the session, as flush()
            self.delete()
            self._forget()
            if self._interrupted:  # a login elsewhere replaced it meanwhile
                raise UpdateError("the session was ended by another request")
            return
        changes = self._changes(data)
        session = self.dce
        try:
            wanted = self._ttl(data)
            user = self._logged_in(changes.set)
            if user is not None:
                session.login(user, ttl_minutes=wanted, changes=changes.moved)
            elif _EXPIRY in changes.keys and wanted != session.ttl_minutes:
                session.regenerate(changes.moved, destroy_old=True, ttl_minutes=wanted)
            elif changes:
                session.update(changes.set, delete=changes.delete)
            elif was_loaded and not session.touch():  # (a load now has just touched it)
                raise UpdateError("the session is no longer stored")
        except SessionDestroyed as error:
            raise UpdateError(str(error)) from error
        self._snapshot.apply(changes)

    def cycle_key(self) -> None:
        """A new sid for the same data (pending edits included), the old key deleted:
        ONE atomic regenerate. ``SessionInterrupted`` when another request ended it."""
        if self._get_key() is None:
            self.create()
            return
        unread = not hasattr(self, "_session_cache")
        session = self.dce
        try:
            if unread:  # the regenerate copies server-side: no read first
                session.regenerate(destroy_old=True)
            else:
                data = self._data()
                if self._interrupted:
                    raise SessionDestroyed("judged")
                if self._get_key() is None:  # the read found it unknown
                    self.create()
                    return
                changes = self._changes(data)
                session.regenerate(changes.moved, destroy_old=True, ttl_minutes=self._ttl(data))
                self._snapshot.apply(changes)
        except SessionDestroyed as error:
            raise SessionInterrupted(_INTERRUPTED) from error
        if not session.stored:  # the presented sid was unknown: nothing moved
            self._dce, self._key = None, None
            self._session_cache = {}
            self.create()
            return
        if unread:  # the regenerate brought the data back: no read of our own
            values = _values(session)
            self._snapshot = Snapshot(values, to_store=jsonable, texts=session.raw())
            values.pop(MARKER, None)
            self._session_cache = values
        self.modified = True

    def delete(self, session_key: str | None = None) -> None:
        """Destroy a session (this one by default), its user-index entry included.

        When this one is found gone already because a login elsewhere replaced
        it (the destroy's reply says so), the session counts as ended by
        another request (see :meth:`is_empty`).
        """
        own = self._get_key()
        if session_key is None or session_key == own:
            if own is None:
                return
            session = self.dce
            if session.destroy():
                self.ended = True
            elif session.replaced:
                self._interrupted = True
        elif is_valid_sid(session_key):
            get_manager().open(session_key).destroy()

    def clear(self) -> None:
        """Empty the session: every stored value is deleted when it is saved.

        Django's engines overwrite the whole record; ours writes only what
        changed, so an unread session is loaded first (one round trip) to know
        what to delete.
        """
        self._data()
        super().clear()

    def flush(self) -> None:
        """End the session: destroy it and forget the key (what ``auth.logout`` calls).

        A session another request ended has nothing left to end: nothing is
        then pending, so no cookie goes out and the browser's newer one stays.
        """
        super().clear()  # no load: the whole key goes
        self.delete()
        self._forget()
        if self._interrupted:
            self.modified = False

    async def acycle_key(self) -> None:
        await sync_to_async(self.cycle_key)()

    async def aflush(self) -> None:
        await sync_to_async(self.flush)()

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: Redis expires the session keys itself."""


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's ``SessionMiddleware``, with ``Secure`` over https and race-safe expiry.

    Checks ``SESSION_COOKIE_AGE`` (at most 65535 minutes) when Django loads it.
    """

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        cookie_age_minutes()

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        session: Any = getattr(request, "session", None)
        try:
            accessed, modified, empty = session.accessed, session.modified, session.is_empty()
        except AttributeError:
            return response
        name = settings.SESSION_COOKIE_NAME
        saved = False
        if (modified or settings.SESSION_SAVE_EVERY_REQUEST) and not empty \
                and response.status_code < 500:  # as Django: no save on a 5xx
            try:
                session.save()
            except UpdateError as error:
                raise SessionInterrupted(_INTERRUPTED) from error
            saved = True
        key = session.session_key
        action = cookie(presented=request.COOKIES.get(name), sid=key or "",
                        stored=saved and key is not None,
                        ended=bool(getattr(session, "ended", False)), refresh=saved)
        if accessed or action is not Cookie.LEAVE:
            patch_vary_headers(response, ("Cookie",))
        secure = settings.SESSION_COOKIE_SECURE or request.is_secure()
        if action is Cookie.EXPIRE:
            response.delete_cookie(name, path=settings.SESSION_COOKIE_PATH,
                                   domain=settings.SESSION_COOKIE_DOMAIN,
                                   samesite=settings.SESSION_COOKIE_SAMESITE)
        elif action is not Cookie.LEAVE:
            if session.get_expire_at_browser_close():
                max_age, expires = None, None
            else:
                max_age = session.get_expiry_age()
                expires = http_date(time.time() + max_age)
            response.set_cookie(
                name, key, max_age=max_age, expires=expires,
                domain=settings.SESSION_COOKIE_DOMAIN, path=settings.SESSION_COOKIE_PATH,
                secure=bool(secure), httponly=bool(settings.SESSION_COOKIE_HTTPONLY),
                samesite=settings.SESSION_COOKIE_SAMESITE)
        return response
