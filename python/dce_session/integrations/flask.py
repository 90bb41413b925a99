"""Flask: ``flask.session`` kept in Redis by dce-session.

``app.session_interface = SessionInterface(manager)`` (or
``SessionInterface(manager).init_app(app)``, which also checks the settings at
once), with a blocking :class:`dce_session.SessionManager`. A drop-in for
Flask's own session and Flask-Session: Flask's settings mean what they mean
there, ``flask.session`` is dict-like with ``modified``, ``permanent``,
``accessed`` and Flask-Session's ``sid``; ``flask.session.dce`` is the
:class:`dce_session.Session` (``login()``, ``user()``, ...);
``app.session_interface.regenerate(flask.session)`` is Flask-Session's.

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
...     SessionInterface(SessionManager(client)).init_app(app)
...     browser = app.test_client()
...     first = browser.post("/cart/apple")
...     print(first.headers["Set-Cookie"].split(";")[0][:8], first.json)
...     print(browser.post("/cart/pear").json, "Set-Cookie" in browser.post("/cart/fig").headers)
...     print(browser.post("/login").json, browser.post("/cart/kiwi").json)
session= ['apple']
['apple', 'pear'] False
{'id': 42, 'name': 'Ada'} ['apple', 'pear', 'fig', 'kiwi']

Settings (Flask's names and defaults):

* ``SESSION_COOKIE_NAME`` ("session"), ``_DOMAIN``, ``_PATH``, ``_HTTPONLY``
  (True), ``_SECURE`` (False: ``Secure`` is added anyway when the request came
  over https), ``_SAMESITE`` (None), ``_PARTITIONED``.
* ``PERMANENT_SESSION_LIFETIME`` (31 days): the Redis TTL of a permanent
  session (``session.permanent = True``) and its cookie's expiry; at most
  65535 minutes (``ConfigError`` otherwise). A non-permanent session has a
  browser-session cookie and the manager's ``ttl_minutes`` as its TTL.
  Making a stored session permanent (or not) moves it to a sid with the other
  ttl (one atomic regenerate; the cookie follows).
* ``SESSION_REFRESH_EACH_REQUEST`` (True): a permanent session's cookie is
  re-sent on every request that uses the session, after checking that the
  session is still stored (a request that never reads its session makes no
  Redis call and leaves the cookie alone).

Behaviour:

* Lazy: the first read loads the values and refreshes the TTL in one round
  trip (with ``renew=`` on the manager, the rotation runs first, and a write
  that read nothing loads too, so that the rotation runs); assigning a key
  loads nothing.
* At the end of the request only the changed keys (in-place edits included)
  and the removed ones are written, in one ``update``.
* The cookie is sent when the sid changes (a new session's first write,
  ``login()``, ``regenerate()``, a rotation, a forwarded sid), refreshed as
  above, and expired when the request ended the session (``session.clear()``,
  ``session.dce.destroy()``, or every value removed). A malformed or unknown
  sid is never adopted, and its cookie is left alone.
* Races: when another request ended the session (a login or logout in
  another tab, a rotation judgment), this request's changes are dropped with
  a WARNING on the ``dce_session`` logger, the view's response goes out as it
  is, and no cookie is sent: the browser keeps the newer one.
* Values: what Flask's own serializer takes (JSON plus tuple, bytes,
  ``Markup``, ``UUID``, ``datetime``) round-trips, stored as JSON with Flask's
  tags. The bookkeeping fields (``$user``, ...) never appear in the mapping;
  assigning one raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, overload

from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface as _FlaskSessionInterface
from flask.sessions import SessionMixin
from werkzeug.datastructures import CallbackDict

from dce_session import Session as DceSession
from dce_session import SessionManager
from dce_session.core import is_valid_sid
from dce_session.errors import ConfigError, SerializationError, SessionDestroyed
from dce_session.integrations._common import (
    Cookie,
    Snapshot,
    cookie,
    interrupted,
    jsonable,
    reserved_fields,
    ttl_minutes,
    user_values,
)

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values

    from flask import Flask
    from flask.wrappers import Request, Response

__all__ = ["FlaskSession", "SessionInterface"]

_MISSING: Any = object()
_PERMANENT = "_permanent"  # the key Flask's SessionMixin.permanent keeps


def untag(serializer: TaggedJSONSerializer, value: Any) -> Any:
    """A stored JSON value back to Flask's types (Flask's tags, innermost first).

    Scalars, and containers that hold no tag, come back as the same object."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if not _tagged(value, serializer.tags):
        return value
    if isinstance(value, dict):
        return serializer.untag({key: untag(serializer, item) for key, item in value.items()})
    if isinstance(value, list):
        return [untag(serializer, item) for item in value]
    return value


def _tagged(value: Any, tags: Mapping[str, Any]) -> bool:
    """Whether a JSON value holds a tag anywhere (a one-key dict whose key is a tag)."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in tags:
            return True
        return any(_tagged(item, tags) for item in value.values()
                   if isinstance(item, (dict, list)))
    if isinstance(value, list):
        return any(_tagged(item, tags) for item in value if isinstance(item, (dict, list)))
    return False


class FlaskSession(CallbackDict[str, Any], SessionMixin):
    """``flask.session``: the values of one dce session, loaded on first read.

    ``dce`` is the blocking :class:`dce_session.Session`; ``sid`` its id
    (Flask-Session's name); ``presented`` the sid the cookie carried.
    """

    def __init__(self, interface: SessionInterface, dce: DceSession,
                 presented: str | None) -> None:
        def on_update(self: FlaskSession) -> None:
            self.modified = True

        super().__init__(None, on_update)
        self.modified = self.accessed = False
        self.dce = dce
        self.presented = presented
        self.interface = interface
        self.loaded = False
        self.interrupted = False  # another request ended this session
        self.ended = False  # clear() ended the session that was loaded
        self._ending: list[DceSession] = []  # sessions that clear() ended
        self.snapshot = Snapshot(to_store=interface.to_store)
        self.secure_request = False  # the request came over https: the cookie is Secure

    @property
    def sid(self) -> str:
        """The session's id (Flask-Session's ``session.sid``)."""
        return self.dce.id

    def __repr__(self) -> str:
        state = dict.__repr__(self) if self.loaded else "unloaded"
        return f"<{type(self).__name__} {self.dce.id[:6]}… {state}>"

    # -- loading ---------------------------------------------------------------------

    def _load(self) -> None:
        """Fill the mapping from the store, once; keys assigned before win."""
        self.accessed = True
        if self.loaded:
            return
        self.loaded = True
        dce = self.dce
        stored: dict[str, Any] = {}
        texts = None
        if not dce.newborn:
            try:
                if dce.manager.renew is not None:
                    dce.try_renew()
                stored = _values(dce)
                texts = dce.raw()  # loaded already: no round trip
            except SessionDestroyed:  # judged: the browser moved on to a newer sid
                self._race()
            if dce.replaced:  # a login elsewhere: the browser holds its new sid
                self._race()
        self.snapshot = Snapshot(stored, to_store=self.interface.to_store, texts=texts)
        serializer = self.interface.serializer
        for key, value in stored.items():
            if not dict.__contains__(self, key):
                dict.__setitem__(self, key, untag(serializer, value))

    def _race(self) -> None:
        self.interrupted = True
        interrupted(self.presented)

    def _check(self, key: object) -> str:
        if not isinstance(key, str):
            raise TypeError(f"session keys are str, not {type(key).__name__}")
        if key in self.interface.reserved:
            raise ValueError(f"{key!r} is a dce-session bookkeeping field; use session.dce")
        return key

    # -- reads: load first -------------------------------------------------------------

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

    def __bool__(self) -> bool:
        return len(self) > 0

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

    # -- writes ------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        self.interface.to_store(value)  # SerializationError now, not at the end of the request
        super().__setitem__(self._check(key), value)

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
        if not dict.__contains__(self, key):
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
        """End the session: destroyed, its cookie expired, when the request ends.

        Keys set afterwards go to a new session (new sid, cookie sent).
        """
        self._ending.append(self.dce)
        self.dce = self.interface.manager.new()
        dict.clear(self)
        self.loaded, self.accessed, self.modified = True, True, True
        self.snapshot = Snapshot(to_store=self.interface.to_store)

    # -- the end of the request ----------------------------------------------------------

    @property
    def permanent_now(self) -> bool:
        """``permanent`` without a round trip: the mapping's when loaded or assigned,
        else what the store holds when a write brought it back, else False."""
        if self.loaded or dict.__contains__(self, _PERMANENT) or not self.dce.stored:
            return bool(dict.get(self, _PERMANENT, False))
        return bool(self.dce.get(_PERMANENT))  # the write's reply holds every field

    def save(self) -> tuple[bool, bool]:
        """Write what changed: ``(this request ended a stored session, it wrote)``."""
        ended = False
        for doomed in self._ending:
            if doomed.stored or not doomed.newborn:
                if doomed.destroy():
                    ended = True
                elif not doomed.newborn:  # gone already: ended by another request
                    self._race()
        self._ending.clear()
        if not self.loaded and dict.__len__(self) and self.dce.manager.renew is not None:
            # A write that read nothing still runs the rotation first: a judged sid
            # must not turn into a fresh session whose cookie replaces the newer one.
            self._load()
        if self.interrupted:
            return False, False
        dce = self.dce
        if dce.destroyed:  # the view ended it through session.dce
            return True, False
        was_stored = dce.stored
        changes = self.snapshot.changes(dict(dict.items(self)))
        wanted = self.interface.ttl_for(self.permanent_now)
        try:
            if dce.newborn and not dce.stored and dce.ttl_minutes != wanted:
                if not changes:
                    return ended, False
                self.dce = dce = self.interface.manager.new(wanted)
            if _PERMANENT in changes.keys and dce.ttl_minutes != wanted \
                    and (dce.stored or not dce.newborn):
                dce.regenerate(changes.moved, destroy_old=True, ttl_minutes=wanted)
            elif changes:
                dce.update(changes.set, delete=changes.delete)
                if dce.replaced:  # a write that read nothing, after a login elsewhere
                    dce.destroy()
                    self._race()
                    return False, False
            else:
                return ended, False
        except SessionDestroyed:
            self._race()
            return False, False
        self.snapshot.apply(changes)
        return ended or (was_stored and not dce.stored), True


def _values(dce: DceSession) -> dict[str, Any]:
    """The stored values (one round trip); fields that are not JSON are left out."""
    try:
        return dce.data()
    except SerializationError:  # another program's field: neither shown nor written
        return user_values(dce.raw(), reserved_fields(dce.manager))


class SessionInterface(_FlaskSessionInterface):
    """Keeps ``flask.session`` in Redis through a blocking ``SessionManager``."""

    session_class = FlaskSession
    #: Flask's own tagged serializer: the JSON form of values that are not JSON
    serializer = TaggedJSONSerializer()

    def __init__(self, manager: SessionManager) -> None:
        if not isinstance(manager, SessionManager):
            raise ConfigError("SessionInterface needs a blocking dce_session.SessionManager, "
                              f"not {type(manager).__module__}.{type(manager).__qualname__}")
        self.manager = manager
        self.reserved = reserved_fields(manager)
        self._permanent_ttl: tuple[Any, int] | None = None

    def init_app(self, app: Flask) -> None:
        """Install this interface on ``app``, checking its settings now."""
        self.permanent_ttl(app)
        app.session_interface = self

    def to_store(self, value: Any) -> Any:
        """The JSON value stored for a Flask session value (Flask's tags)."""
        try:
            return jsonable(self.serializer.tag(value))
        except (TypeError, ValueError) as error:  # SerializationError is a TypeError
            raise SerializationError(f"a Flask session cannot hold {value!r}: {error}") from error

    def permanent_ttl(self, app: Flask) -> int:
        """The ttl (minutes) of a permanent session: ``PERMANENT_SESSION_LIFETIME``."""
        lifetime = app.permanent_session_lifetime
        cached = self._permanent_ttl
        if cached is None or cached[0] != lifetime:
            minutes = ttl_minutes(lifetime, setting="PERMANENT_SESSION_LIFETIME")
            if minutes is None:
                raise ConfigError("PERMANENT_SESSION_LIFETIME must be more than 0 seconds")
            cached = self._permanent_ttl = (lifetime, minutes)
        return cached[1]

    def ttl_for(self, permanent: bool) -> int:
        if permanent and self._permanent_ttl is not None:
            return self._permanent_ttl[1]
        return self.manager.ttl_minutes

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        """The request's session; no I/O (it loads on first read)."""
        self.permanent_ttl(app)
        presented = request.cookies.get(self.get_cookie_name(app)) or None
        dce = self.manager.open(presented) if is_valid_sid(presented) else self.manager.new()
        session = self.session_class(self, dce, presented)
        session.secure_request = request.is_secure
        return session

    def regenerate(self, session: SessionMixin) -> None:
        """Flask-Session's name: a new sid for the session (pending changes included),
        the old one destroyed, in one atomic step; the new cookie goes out."""
        unwrap = getattr(session, "_get_current_object", None)  # flask.session is a proxy
        session = unwrap() if callable(unwrap) else session
        if not isinstance(session, FlaskSession):
            raise TypeError("regenerate() takes the flask.session of this interface")
        session._load()
        changes = session.snapshot.changes(dict(dict.items(session)))
        session.dce.regenerate(changes.moved, destroy_old=True)
        session.snapshot.apply(changes)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write what changed; then send, refresh, expire or leave the cookie."""
        if not isinstance(session, FlaskSession):
            return
        ended, wrote = session.save()
        dce = session.dce
        refresh = False
        if dce.stored and dce.id == session.presented and session.permanent_now \
                and not session.interrupted:
            refresh = wrote or (session.loaded and app.config["SESSION_REFRESH_EACH_REQUEST"]
                                and dce.touch())  # re-sent only while still stored
        action = cookie(presented=session.presented, sid=dce.id, stored=dce.stored,
                        ended=ended, refresh=refresh, interrupted=session.interrupted)
        if session.accessed:
            response.vary.add("Cookie")
        if action is Cookie.LEAVE:
            return
        response.vary.add("Cookie")
        name, domain, path = (self.get_cookie_name(app), self.get_cookie_domain(app),
                              self.get_cookie_path(app))
        secure = self.get_cookie_secure(app) or session.secure_request
        options: dict[str, Any] = {
            "domain": domain, "path": path, "secure": secure,
            "partitioned": self.get_cookie_partitioned(app),
            "samesite": self.get_cookie_samesite(app),
            "httponly": self.get_cookie_httponly(app)}
        if action is Cookie.EXPIRE:
            response.delete_cookie(name, **options)
            return
        expires = datetime.now(timezone.utc) + app.permanent_session_lifetime \
            if session.permanent_now else None
        response.set_cookie(name, dce.id, expires=expires, **options)

