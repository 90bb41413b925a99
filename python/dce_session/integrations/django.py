"""Django sessions stored by dce-session: ``SESSION_ENGINE = "dce_session.integrations.django"``.

Settings::

    SESSION_ENGINE = "dce_session.integrations.django"
    MIDDLEWARE = [
        ...,
        # INSTEAD of "django.contrib.sessions.middleware.SessionMiddleware":
        "dce_session.integrations.django.SessionMiddleware",
        ...,
    ]
    DCE_SESSION = {
        "url": "redis://localhost:6379/0",   # or "client": a zero-argument callable
                                             # returning a blocking redis-py client
        # the cookie: "secure" (default True; False for plain-HTTP development),
        # "same_site" (default "Lax")
        # plus any SessionManager keyword: "ttl_minutes", "sid_name", ...
    }

Example (runnable: a throwaway Redis, settings made in code)::

    >>> import django
    >>> from django.conf import settings
    >>> from dce_session.testing import RedisServer
    >>> with RedisServer() as server:
    ...     settings.configure(
    ...         SECRET_KEY="example", USE_TZ=True,
    ...         SESSION_ENGINE="dce_session.integrations.django",
    ...         DCE_SESSION={"url": server.url, "ttl_minutes": 30})
    ...     django.setup()
    ...     store = SessionStore()      # what SessionMiddleware makes for a new visitor
    ...     store["cart"] = ["apple"]
    ...     store.save()                # one round trip: the session is written
    ...     again = SessionStore(store.session_key)
    ...     print(again["cart"], "$user" in again, again.get_expiry_age())
    ...     reset_manager()             # closes the client made from "url"
    ['apple'] False 1800

How it maps Django's ``SessionBase`` contract onto dce-session:

- ``session_key`` is a dce sid. A cookie holding a malformed sid is treated as
  no key; one unknown to Redis is never adopted: ``load()`` finds nothing, the
  key becomes ``None`` and the next write creates a fresh sid (the middleware
  then sends it).
- Nothing is read until the view reads the session (a request that never
  touches ``request.session`` costs zero round trips and sets no cookie); the
  first read loads the whole hash in one round trip and refreshes the TTL.
- Each top-level key is its own JSON field in the dce hash (the dce wire
  format; ``SESSION_SERIALIZER`` is not used and nothing is ever pickled).
  ``save()`` writes only the keys whose value changed since the load (in place
  mutation included) with one ``update()``, and deletes only the keys the view
  removed: two concurrent requests that edit different keys both keep their
  edits.
- ``cycle_key()`` (called by ``django.contrib.auth.login``) is ONE atomic
  regenerate: the data (with the pending edits) moves to a new sid and the old
  key is deleted in the same server-side step. ``flush()`` (``auth.logout``)
  destroys the session, user-index entry included.
- The Redis TTL is the session's ``ttl_minutes`` (carried by its sid), and
  ``get_expiry_age()`` reports it: by default ``ttl_minutes`` comes from
  ``SESSION_COOKIE_AGE`` (rounded up to whole minutes, at most 65535), unless
  ``DCE_SESSION`` sets ``ttl_minutes`` -- then the cookie's Max-Age follows it.
  ``set_expiry(seconds | timedelta | datetime)`` moves the session to a sid
  with that many minutes (rounded up; a datetime counts from now, and the TTL
  slides on each use as for every dce session) in the same save;
  ``set_expiry(0)`` only makes the cookie a browser-session cookie.
- The bookkeeping fields (``$user``, ``$newid``, ``$server``, ``$client``)
  never appear in ``request.session``; assigning one raises ``KeyError``.
  ``request.session.dce`` is the ``dce_session.Session`` (``.user()``,
  ``.login(user)``, ...); when one of its calls changes the sid,
  ``session_key`` follows and the middleware sends the new cookie.
- ``clear_expired()`` does nothing: Redis expires the keys.
- The cookie is written by ``dce_session.integrations.django.SessionMiddleware``
  (a subclass of Django's, to use in ``MIDDLEWARE`` in its place): HttpOnly,
  Secure unless ``DCE_SESSION["secure"]`` is False, SameSite from
  ``DCE_SESSION["same_site"]`` (``"Lax"``); name, path, domain and Max-Age
  from ``SESSION_COOKIE_NAME``/``_PATH``/``_DOMAIN`` and the session's ttl
  (``SESSION_COOKIE_SECURE``/``_HTTPONLY``/``_SAMESITE`` are not used). It
  saves a modified session as Django's does, but sends the cookie exactly
  when the sid differs from the one presented (a new session, ``cycle_key()``,
  a login, ``set_expiry()``), never merely because the session was modified,
  and expires it when the session ended (``flush()``) or the presented key was
  malformed or unknown. Django's own middleware would work too, without those
  guarantees (no Secure by default, re-sent on every modifying request).

The asynchronous ``a*`` methods of ``SessionBase`` run these in a thread
(Django's default), ``acycle_key``/``aflush`` included.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, cast

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

from dce_session._flows import decode_value
from dce_session.core import encode_value, is_valid_sid, parse_sid
from dce_session.core import session_key as redis_key
from dce_session.errors import ConfigError, SerializationError, SessionDestroyed
from dce_session.session import Session, SessionManager

__all__ = ["CreateError", "SessionMiddleware", "SessionStore", "UpdateError", "get_manager",
           "reset_manager"]

_EXPIRY = "_session_expiry"  # the key SessionBase.set_expiry() writes
_MAX_TTL_MINUTES = 0xFFFF
_COOKIE_OPTIONS = ("secure", "same_site")  # DCE_SESSION keys for the middleware's cookie

_lock = threading.Lock()
_manager: SessionManager | None = None
_owned_client: redis.Redis | None = None  # made from "url": ours to close


def _minutes(seconds: float) -> int:
    """Whole minutes covering ``seconds``, within a sid's 1..65535."""
    return min(max(math.ceil(seconds / 60), 1), _MAX_TTL_MINUTES)


def _build() -> tuple[SessionManager, redis.Redis | None]:
    config = getattr(settings, "DCE_SESSION", None)
    if not isinstance(config, dict):
        raise ConfigError('settings.DCE_SESSION must be a dict: {"url": "redis://..."} '
                          'or {"client": callable}, plus SessionManager keywords')
    options = {k: v for k, v in config.items() if k not in _COOKIE_OPTIONS}
    url, factory = options.pop("url", None), options.pop("client", None)
    if (url is None) == (factory is None):
        raise ConfigError('settings.DCE_SESSION needs exactly one of "url" and "client"')
    options.setdefault("ttl_minutes", _minutes(settings.SESSION_COOKIE_AGE))
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
    through Django's ``setting_changed`` signal (``override_settings``). A
    client returned by ``"client"`` belongs to its callable and stays open.
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


def _check(data: dict[str, Any]) -> None:
    hidden = get_manager().bookkeeping
    for key in data:
        if key in hidden:
            raise KeyError(f"{key!r} is dce-session bookkeeping; use request.session.dce")


class SessionStore(SessionBase):
    """Django's session store over dce-session (see the module docstring).

    ``SessionStore(session_key)`` does no I/O; a key that is not a dce sid
    counts as no key at all.
    """

    def __init__(self, session_key: str | None = None) -> None:
        self._dce: Session | None = None
        self._made = False  # _dce is a new session made here (not a presented sid)
        self._bound_id: str | None = None  # _dce's id when bound, to see it move
        self._key: str | None = None
        # canonical JSON of each exposed field as the store has it; None: not read yet
        self._loaded: dict[str, str] | None = None
        self._cleared = False
        self._changed = False
        super().__init__(session_key)

    # -- the key follows the dce session -------------------------------------------

    def _validate_session_key(self, key: Any) -> bool:
        return is_valid_sid(key)

    def _follow(self) -> str | None:
        if self._dce is not None and self._dce.id != self._key:
            self._key = self._dce.id  # moved: regenerate, login, an unknown sid written anew
        return self._key

    def _set_key(self, value: str | None) -> None:
        self._key = value if self._validate_session_key(value) else None
        if self._dce is not None and self._dce.id != self._key:
            self._dce, self._loaded = None, None

    session_key = property(_follow)  # the key follows .dce
    _session_key = property(_follow, _set_key)

    @property
    def modified(self) -> bool:
        """Edited in this request, or the sid moved: Django then saves and sends the cookie."""
        return self._changed or (self._dce is not None and self._dce.id != self._bound_id)

    @modified.setter
    def modified(self, value: bool) -> None:
        self._changed = value

    @property
    def dce(self) -> Session:
        """The ``dce_session.Session`` behind this store (``.user()``, ``.login()``...).

        A call on it that changes the sid moves ``session_key`` too, and the
        middleware then sends the new cookie.
        """
        if self._dce is None:
            key, manager = self._follow(), get_manager()
            self._made = key is None
            self._dce = manager.new(self._new_ttl()) if self._made else manager.open(key)
            self._bound_id = self._key = self._dce.id
            if self._made:
                self._loaded = {}
        return self._dce

    def _new_ttl(self) -> int | None:
        """The ttl of a new sid: from the custom expiry set on this session, else None."""
        cache: dict[str, Any] = getattr(self, "_session_cache", {})
        expiry = cache.get(_EXPIRY)
        return _minutes(self.get_expiry_age(expiry=expiry)) if expiry else None

    # -- reading -------------------------------------------------------------------

    def _exposed(self, session: Session) -> dict[str, Any]:
        """The user's values in ``session``'s snapshot (loading it if needed, no touch)."""
        hidden = session.manager.bookkeeping
        values: dict[str, Any] = {}
        loaded: dict[str, str] = {}
        for field, raw in session.raw().items():
            if field in hidden:
                continue
            try:
                value = decode_value(raw)  # not JSON, or nested too deep: SerializationError
                loaded[field] = encode_value(value)
            except SerializationError:
                continue  # not a value this store can round-trip: neither shown nor written
            values[field] = value
        self._loaded = loaded
        return values

    def load(self) -> dict[str, Any]:
        """One round trip: the whole hash, with the touch. An unknown sid gives ``{}``."""
        if self._follow() is None:
            self._loaded = {}
            return {}
        session = self.dce
        session.get(session.manager.user_field)  # loads and touches, one EVALSHA
        if session.newborn and not self._made:  # unknown to the store: never adopted
            self._dce = None
            self._session_key = None
            self._loaded = {}
            return {}
        return self._exposed(session)

    def exists(self, session_key: str | None) -> bool:
        """Whether ``session_key`` is a stored session (one EXISTS)."""
        if session_key is None or not is_valid_sid(session_key):
            return False
        manager = get_manager()
        client = cast("redis.Redis", manager.client)  # the blocking door: a blocking client
        return bool(client.exists(redis_key(manager.sid_name, session_key)))

    def __setitem__(self, key: str, value: Any) -> None:
        _check({key: None})
        super().__setitem__(key, value)

    def update(self, dict_: Any) -> None:  # type: ignore[override]  # Django's signature
        _check(dict(dict_))
        super().update(dict_)

    def setdefault(self, key: str, value: Any) -> Any:  # type: ignore[override]  # Django's
        _check({key: None})
        return super().setdefault(key, value)

    async def aset(self, key: str, value: Any) -> None:
        _check({key: None})
        await super().aset(key, value)

    async def aupdate(self, dict_: Any) -> None:
        _check(dict(dict_))
        await super().aupdate(dict_)

    async def asetdefault(self, key: str, value: Any) -> Any:
        _check({key: None})
        return await super().asetdefault(key, value)

    def clear(self) -> None:
        super().clear()
        self._cleared = True

    # -- writing -------------------------------------------------------------------

    def _data(self) -> dict[str, Any]:
        """The session's mapping, loaded if it was not yet."""
        data: dict[str, Any] = self._get_session()  # type: ignore[attr-defined]  # not in stubs
        return data

    def _diff(self) -> tuple[dict[str, Any], list[str]]:
        """``(changed values, removed keys)``: the mapping against the store."""
        data = self._data()
        _check(data)
        if self._loaded is None and self._follow() is not None:  # cleared before any read
            self._exposed(self.dce)
        loaded = self._loaded or {}
        changed = {key: value for key, value in data.items()
                   if loaded.get(key) != encode_value(value)}
        return changed, [key for key in loaded if key not in data]

    def _recorded(self, changed: dict[str, Any], removed: list[str]) -> None:
        loaded = self._loaded if self._loaded is not None else {}
        loaded.update((key, encode_value(value)) for key, value in changed.items())
        for key in removed:
            loaded.pop(key, None)
        self._loaded, self._cleared = loaded, False

    def _wanted_ttl(self, changed: dict[str, Any], removed: list[str]) -> int | None:
        """The new ttl in minutes when this save changes the custom expiry, else None."""
        if _EXPIRY in removed:
            return get_manager().ttl_minutes
        if _EXPIRY in changed:
            return self._new_ttl() or get_manager().ttl_minutes
        return None

    def create(self) -> None:
        """A session under a fresh sid, holding the current data (written when any)."""
        data: dict[str, Any] = getattr(self, "_session_cache", {})
        _check(data)
        self._session_cache = data
        self._dce, self._key, self._loaded = None, None, None
        session = self.dce  # fresh sid, nothing stored yet
        if data:
            session.update(data)
            self._recorded(data, [])
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        """Write the changed keys in one ``update()``; delete the removed ones.

        ``must_create``: the data goes into a new session under a fresh sid.
        ``UpdateError`` when the session was destroyed meanwhile (Django's
        middleware answers ``SessionInterrupted``).
        """
        if must_create or self._follow() is None:
            self.create()
            return
        changed, removed = self._diff()
        if self._follow() is None:  # the load found it unknown: start afresh
            self.create()
            return
        session = self.dce
        try:
            ttl = self._wanted_ttl(changed, removed)
            if ttl is not None and ttl != session.ttl_minutes:
                self._regenerate(changed, removed, ttl)
                return
            if changed or removed:
                session.update(changed, delete=removed)
        except SessionDestroyed as error:
            raise UpdateError(str(error)) from error
        self._recorded(changed, removed)

    def _regenerate(self, changed: dict[str, Any], removed: list[str],
                    ttl_minutes: int | None) -> None:
        """Move the data, with these edits, to a new sid and delete the old key: one step."""
        changes: dict[str, Any] = {**changed, **dict.fromkeys(removed)}
        self.dce.regenerate(changes, destroy_old=True, ttl_minutes=ttl_minutes)
        self._recorded(changed, removed)
        self.modified = True

    def cycle_key(self) -> None:
        """A new sid for the same data, the old key deleted: ONE atomic regenerate."""
        if self._follow() is None:  # nothing stored: a new sid is all it takes
            self.create()
            return
        unread = not hasattr(self, "_session_cache") and not self._cleared
        changed, removed = ({}, []) if unread else self._diff()
        if self._follow() is None:  # the read found it unknown
            self.create()
            return
        try:
            self._regenerate(changed, removed, self._wanted_ttl(changed, removed))
        except SessionDestroyed as error:
            raise UpdateError(str(error)) from error
        if unread and self.dce.newborn and not self._made:
            # The presented sid was unknown (nothing moved): never adopted, nor its ttl.
            self.create()
            return
        if unread:  # the regenerate brought the data back: no read of our own
            self._session_cache = self._exposed(self.dce)

    def delete(self, session_key: str | None = None) -> None:
        """Destroy a session (this one by default), its user-index entry included."""
        if session_key is None or session_key == self._follow():
            if self._follow() is not None:
                self.dce.destroy()
        elif is_valid_sid(session_key):
            get_manager().open(session_key).destroy()

    def flush(self) -> None:
        """End the session: destroy it and forget the key (what ``auth.logout`` calls)."""
        self.clear()
        self.delete()
        self._dce, self._made, self._cleared = None, False, False
        self._session_key = None
        self._loaded = {}

    async def acycle_key(self) -> None:
        await sync_to_async(self.cycle_key)()

    async def aflush(self) -> None:
        await sync_to_async(self.flush)()

    # -- expiry --------------------------------------------------------------------

    def get_session_cookie_age(self) -> int:
        """The session's TTL in seconds: its sid's ttl (the default before there is one)."""
        key = self._follow()
        if key is not None:
            return parse_sid(key)[0] * 60
        return (self._new_ttl() or get_manager().ttl_minutes) * 60

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: Redis expires the session keys itself."""


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's ``SessionMiddleware`` with dce-session's cookie rules (module docstring).

    Saves a modified session as Django's does, but sends the cookie only when
    the sid differs from the one presented, and expires it when the session
    ended (``flush()``) or the presented key was malformed or unknown. The
    cookie is HttpOnly, Secure unless ``DCE_SESSION["secure"]`` is False,
    SameSite ``DCE_SESSION.get("same_site", "Lax")``; name, path, domain and
    Max-Age (the session's ttl) come from Django's ``SESSION_COOKIE_*``.
    """

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        session: Any = getattr(request, "session", None)
        try:
            accessed, modified = session.accessed, session.modified
        except AttributeError:
            return response
        name = settings.SESSION_COOKIE_NAME
        presented = request.COOKIES.get(name)
        saved = (modified or settings.SESSION_SAVE_EVERY_REQUEST) and not session.is_empty()
        if saved and response.status_code < 500:  # as Django: no save on a 5xx
            try:
                session.save()
            except UpdateError as error:
                raise SessionInterrupted(
                    "The request's session was deleted before the request completed. "
                    "The user may have logged out in a concurrent request, for example."
                ) from error
        sid = session.session_key
        config = getattr(settings, "DCE_SESSION", None)
        config = config if isinstance(config, dict) else {}
        same_site = config.get("same_site", "Lax")
        changed = False
        if sid is None:
            if presented is not None:  # ended, or malformed/unknown: expire it
                response.delete_cookie(name, path=settings.SESSION_COOKIE_PATH,
                                       domain=settings.SESSION_COOKIE_DOMAIN,
                                       samesite=same_site)
                changed = True
        elif sid != presented and (saved or modified):
            max_age = None if session.get_expire_at_browser_close() \
                else session.get_expiry_age()
            response.set_cookie(
                name, sid, max_age=max_age,
                expires=None if max_age is None else http_date(time.time() + max_age),
                domain=settings.SESSION_COOKIE_DOMAIN, path=settings.SESSION_COOKIE_PATH,
                secure=bool(config.get("secure", True)), httponly=True,
                samesite=same_site)
            changed = True
        if accessed or changed:
            patch_vary_headers(response, ("Cookie",))
        return response
