"""Flask integration: ``flask.session`` kept in Redis by dce-session.

``app.session_interface = SessionInterface(manager)``, with a blocking
:class:`dce_session.SessionManager`. ``flask.session`` is then a dict of the
session's values (JSON values, ``str`` keys) with Flask's ``modified`` and
``permanent``; ``flask.session.dce`` is the :class:`dce_session.Session`
itself, for ``login()``, ``user()``, ``regenerate()``, ``try_renew()``...

>>> import flask, redis
>>> from dce_session import SessionManager
>>> from dce_session.integrations.flask import SessionInterface
>>> from dce_session.testing import RedisServer
>>> app = flask.Flask("shop")
>>> @app.post("/cart/<item>")
... def add(item):
...     flask.session["cart"] = [*flask.session.get("cart", []), item]
...     return flask.session["cart"]
>>> @app.post("/login")
... def login():
...     flask.session.dce.login({"id": 42, "name": "Ada"})
...     return flask.session.dce.user()
>>> with RedisServer() as server, redis.Redis.from_url(server.url) as client:
...     app.session_interface = SessionInterface(SessionManager(client))
...     browser = app.test_client()
...     first = browser.post("/cart/apple")
...     print(first.headers["Set-Cookie"].split(";")[0][:8], first.json)
...     print(browser.post("/cart/pear").json, "Set-Cookie" in browser.post("/cart/fig").headers)
...     print(browser.post("/login").json, browser.post("/cart/kiwi").json)
session= ['apple']
['apple', 'pear'] False
{'id': 42, 'name': 'Ada'} ['apple', 'pear', 'fig', 'kiwi']

Behaviour:

* Lazy. Opening the session does no I/O. The first read of ``flask.session``
  loads the stored hash and refreshes its TTL in one round trip; assigning a
  key loads nothing. A request that never touches the session costs no round
  trip and sends no cookie.
* At the end of the request only what changed is written: the assigned or
  changed keys and the removed ones in one ``update(..., delete=...)`` (a key
  whose value is unchanged, even if re-assigned, is not rewritten; nested
  changes such as ``session["cart"].append(x)`` are found by comparing with
  what was loaded): one round trip. Keys this request did not change are
  never written, so concurrent requests editing different keys of one session
  keep each other's changes.
* The cookie is set exactly when the sid the client must hold changed (a new
  session's first write, ``login()``, ``auto_login()``, ``regenerate()``, a
  rotation by ``try_renew()``) and expired when the session ends:
  ``session.clear()`` (the stored session is destroyed at the end of the
  request; keys set after ``clear()`` start a fresh session under a new sid)
  or ``session.dce.destroy()``, or a presented sid, read this request, that
  is not (or no longer) stored and to which nothing is written. A malformed or
  unknown sid in the cookie is never adopted: the session gets a fresh sid.
  Setting ``session.permanent`` to a new value re-sends the cookie (same sid)
  with the matching expiry.
* Stored fields whose value is not JSON (written by another program) are
  left out of the mapping and never written or deleted.
* The bookkeeping fields (``$user``, ``$newid``, ``$server``, ``$client`` or
  the manager's names for them) never appear in the mapping and cannot be
  assigned through it (``ValueError``); the user is ``session.dce.user()``.
* Cookie name, path, domain, HttpOnly and expiry (``PERMANENT_SESSION_LIFETIME``
  when ``session.permanent``, else a browser-session cookie) come from Flask's
  ``SESSION_COOKIE_*`` config; ``Secure`` and ``SameSite=Lax`` are the
  defaults whatever ``SESSION_COOKIE_SECURE`` / ``SESSION_COOKIE_SAMESITE``
  say: change them with ``SessionInterface(manager, secure=False,
  same_site="Strict")``. ``SESSION_REFRESH_EACH_REQUEST`` is not used: Redis'
  TTL, refreshed by each request that uses the session, ends idle sessions.
* Values are validated (JSON, see the API) when assigned; a nested change
  that makes a value unserialisable raises ``SerializationError`` when the
  request ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, overload

from flask.sessions import SessionInterface as _FlaskSessionInterface
from flask.sessions import SessionMixin
from werkzeug.datastructures import CallbackDict

from dce_session._flows import decode_value
from dce_session.core import encode_value
from dce_session.errors import ConfigError, SerializationError
from dce_session.session import Session as DceSession
from dce_session.session import SessionManager

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values

    from flask import Flask
    from flask.wrappers import Request, Response

__all__ = ["FlaskSession", "SessionInterface"]

_MISSING: Any = object()
_SAME_SITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


def _maybe_stored(session: DceSession) -> bool:
    """Whether the store may hold ``session`` (a destroy is then worth sending)."""
    return session.stored or (not session.destroyed and not session.newborn)


class FlaskSession(CallbackDict[str, Any], SessionMixin):
    """``flask.session``: the decoded user values of one dce session, loaded lazily.

    ``dce`` is the underlying blocking :class:`dce_session.Session`;
    ``presented`` the sid the request's cookie carried (None without one).
    """

    def __init__(self, dce: DceSession, manager: SessionManager, presented: str | None) -> None:
        def on_update(self: FlaskSession) -> None:
            self.modified = True

        super().__init__(None, on_update)
        self.modified = False
        self.dce = dce
        self.presented = presented
        self._manager = manager
        self._loaded = False
        self._original: dict[str, str] = {}  # key -> normalised JSON, as loaded
        self._assigned: set[str] = set()  # keys set by this request before any load
        self._doomed: list[DceSession] = []  # sessions that clear() ended

    def __repr__(self) -> str:
        state = dict.__repr__(self) if self._loaded else "unloaded"
        return f"<{type(self).__name__} {self.dce.id[:6]}… {state}>"

    # -- loading ---------------------------------------------------------------

    def _load(self) -> None:
        """Fill the mapping from the store, once; local assignments win."""
        if self._loaded:
            return
        # `get` loads the hash and refreshes the TTL in one round trip (raw() never
        # touches); `raw` then reads the same snapshot.
        self.dce.get(self._manager.user_field)
        values: dict[str, Any] = {}
        for field, raw in self.dce.raw().items():
            if field in self._manager.bookkeeping:
                continue
            try:
                values[field] = decode_value(raw)
            except SerializationError:
                continue  # not JSON (another program's): neither shown, written nor deleted
        self._original = {field: encode_value(value) for field, value in values.items()}
        for field, value in values.items():
            if field not in self._assigned:
                dict.__setitem__(self, field, value)
        self._loaded = True

    def _check(self, key: object) -> str:
        if not isinstance(key, str):
            raise TypeError(f"session keys are str, not {type(key).__name__}")
        if key in self._manager.bookkeeping:
            raise ValueError(f"{key!r} is kept by dce-session; use session.dce for it")
        return key

    # -- reads: load first -------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._load()
        return dict.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        self._load()
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._load()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[str]:
        self._load()
        return dict.__reversed__(self)

    def __len__(self) -> int:
        self._load()
        return dict.__len__(self)

    def __eq__(self, other: object) -> bool:
        self._load()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]  # a mutable mapping, like dict

    def get(self, key: str, default: Any = None, /) -> Any:
        self._load()
        return dict.get(self, key, default)

    def keys(self) -> dict_keys[str, Any]:
        self._load()
        return dict.keys(self)

    def values(self) -> dict_values[str, Any]:
        self._load()
        return dict.values(self)

    def items(self) -> dict_items[str, Any]:
        self._load()
        return dict.items(self)

    def copy(self) -> dict[str, Any]:
        self._load()
        return dict(dict.items(self))

    def __or__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]  # any mapping
        return {**self.copy(), **dict(other)}

    def __ror__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]  # any mapping
        return {**dict(other), **self.copy()}

    # -- writes --------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        key = self._check(key)
        encode_value(value)  # SerializationError here rather than at the end of the request
        if not self._loaded:
            self._assigned.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._load()
        super().__delitem__(key)

    def update(  # type: ignore[override]  # same call shapes as dict.update
        self, arg: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /, **kwargs: Any
    ) -> None:
        for key, value in {**dict(arg), **kwargs}.items():
            self[key] = value

    def __ior__(self, other: Any) -> FlaskSession:  # type: ignore[override]  # as update
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._load()
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    @overload
    def pop(self, key: str, /) -> Any: ...
    @overload
    def pop(self, key: str, default: Any, /) -> Any: ...
    def pop(self, key: str, default: Any = _MISSING, /) -> Any:
        self._load()
        if default is _MISSING:
            return super().pop(key)
        return super().pop(key, default)

    def popitem(self) -> tuple[str, Any]:
        self._load()
        return super().popitem()

    def clear(self) -> None:
        """End the session: it is destroyed, and its cookie expired, when the request ends.

        Keys set afterwards go to a fresh session (new sid, cookie sent).
        """
        self._doomed.append(self.dce)
        self.dce = self._manager.new()
        dict.clear(self)
        self._loaded, self._original, self._assigned = True, {}, set()
        self.modified = True

    # -- the end of the request ------------------------------------------------------

    def changes(self) -> tuple[dict[str, Any], list[str]]:
        """``(keys to write, keys to remove)``: what this request changed."""
        written = {
            key: value
            for key, value in dict.items(self)
            if self._original.get(key) != encode_value(value)
        }
        removed = [key for key in self._original if not dict.__contains__(self, key)]
        return written, removed

    def save(self) -> set[str]:
        """Destroy what ``clear()`` ended, then write the changes (nothing if none).

        Returns the keys written or removed.
        """
        for ended in self._doomed:
            if _maybe_stored(ended):
                ended.destroy()
        self._doomed.clear()
        if self.dce.destroyed:  # destroyed through session.dce: nothing to write to
            return set()
        written, removed = self.changes()
        if written or removed:
            self.dce.update(written, delete=removed)
        self._original = {key: encode_value(value) for key, value in dict.items(self)} \
            if self._loaded else self._original
        self._assigned.clear()
        return {*written, *removed}


class SessionInterface(_FlaskSessionInterface):
    """Keeps ``flask.session`` in Redis: ``app.session_interface = SessionInterface(manager)``.

    ``manager`` is a blocking :class:`dce_session.SessionManager`. ``secure``
    and ``same_site`` ("Strict", "Lax", "None" or None for no attribute) set
    the cookie's ``Secure`` and ``SameSite``; Flask's own
    ``SESSION_COOKIE_SECURE`` / ``SESSION_COOKIE_SAMESITE`` are not used.
    """

    session_class = FlaskSession

    def __init__(self, manager: SessionManager, secure: bool = True,
                 same_site: str | None = "Lax") -> None:
        if not isinstance(manager, SessionManager):
            raise ConfigError(
                "SessionInterface needs a blocking dce_session.SessionManager, "
                f"not {type(manager).__name__}")
        if not isinstance(secure, bool):
            raise ConfigError(f"secure must be a bool, got {secure!r}")
        if same_site is not None and (
                not isinstance(same_site, str) or same_site.lower() not in _SAME_SITE):
            raise ConfigError(f'same_site must be "Strict", "Lax", "None" or None, '
                              f"got {same_site!r}")
        self.manager = manager
        self.secure = secure
        self.same_site = None if same_site is None else _SAME_SITE[same_site.lower()]

    def get_cookie_secure(self, app: Flask) -> bool:
        """The ``Secure`` attribute: this interface's ``secure``."""
        return self.secure

    def get_cookie_samesite(self, app: Flask) -> str | None:
        """The ``SameSite`` attribute: this interface's ``same_site``."""
        return self.same_site

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        """The request's session; no I/O (it loads on first read)."""
        presented = request.cookies.get(self.get_cookie_name(app)) or None
        return self.session_class(self.manager.open(presented), self.manager, presented)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write what changed; set the cookie when the sid changed, expire it when ended."""
        if not isinstance(session, FlaskSession):
            return
        ended = bool(session._doomed) or session.dce.destroyed
        # a session loaded this request (an unknown sid settles as newborn) or ended
        looked_up = session._loaded or ended
        # ``permanent`` is the ``_permanent`` key: its change changes the cookie's expiry
        permanence_changed = "_permanent" in session.save()
        dce = session.dce
        name, domain, path = (self.get_cookie_name(app), self.get_cookie_domain(app),
                              self.get_cookie_path(app))
        httponly, partitioned = self.get_cookie_httponly(app), self.get_cookie_partitioned(app)
        if session.accessed:
            response.vary.add("Cookie")
        if dce.stored and (dce.id != session.presented or permanence_changed):
            response.set_cookie(
                name, dce.id, expires=self.get_expiration_time(app, session),
                httponly=httponly, domain=domain, path=path, secure=self.secure,
                partitioned=partitioned, samesite=self.same_site)
            response.vary.add("Cookie")
        elif looked_up and session.presented is not None and not dce.stored:
            response.delete_cookie(
                name, domain=domain, path=path, secure=self.secure,
                partitioned=partitioned, samesite=self.same_site, httponly=httponly)
            response.vary.add("Cookie")
