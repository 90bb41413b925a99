"""What the Starlette, Flask and Django integrations share, written once.

Pure: no I/O, no framework import. Each integration loads its session with
:meth:`Session.data` (one round trip, touched), keeps a :class:`Snapshot` of
what it loaded, writes :meth:`Snapshot.changes` with one
``Session.update(set, delete=...)`` and asks :func:`cookie` what the response
must do with the cookie. Lifetimes become sid ttls through :func:`ttl_minutes`.

>>> snapshot = Snapshot({"cart": ["apple"], "theme": "dark"})
>>> changes = snapshot.changes({"cart": ["apple", "pear"], "theme": "dark", "new": 1})
>>> changes.set, changes.delete
({'cart': ['apple', 'pear'], 'new': 1}, [])
>>> snapshot.changes({"cart": ["apple"]}).delete
['theme']
>>> cookie(presented="S0", sid="S1", stored=True)
<Cookie.SEND: 'send'>
>>> cookie(presented="S1", sid="S1", stored=True, refresh=True)
<Cookie.REFRESH: 'refresh'>
>>> cookie(presented="S1", sid="S2", stored=False, ended=True)
<Cookie.EXPIRE: 'expire'>
>>> cookie(presented="S1", sid="S1", stored=True, interrupted=True)
<Cookie.LEAVE: 'leave'>
>>> ttl_minutes(14 * 24 * 3600, setting="max_age"), ttl_minutes(None, setting="max_age")
(20160, None)
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dce_session.errors import ConfigError, SerializationError

__all__ = [
    "MAX_TTL_MINUTES",
    "Changes",
    "Cookie",
    "Snapshot",
    "canonical",
    "cookie",
    "decode",
    "half_age_passed",
    "interrupted",
    "jsonable",
    "reserved_fields",
    "ttl_minutes",
    "user_values",
]

#: The largest ttl a sid can carry (4 hex digits of minutes: about 45.5 days).
MAX_TTL_MINUTES = 0xFFFF

_JSON_SCALARS = (str, int, float, bool, type(None))

logger = logging.getLogger("dce_session")
_INTERRUPTED = ("session %s was ended by another request (a login, logout or rotation "
                "elsewhere); this request's session changes are dropped and no cookie is sent")


def ttl_minutes(lifetime: float | timedelta | None, *, setting: str) -> int | None:
    """The sid ttl for a cookie lifetime: whole minutes covering it, or None.

    ``None`` or ``0`` is a browser-session cookie (None: the manager's
    ``ttl_minutes`` applies). More than 65535 minutes, a negative or a
    non-number lifetime raise :class:`ConfigError` naming ``setting``.

    >>> ttl_minutes(timedelta(days=31), setting="PERMANENT_SESSION_LIFETIME")
    44640
    >>> ttl_minutes(61, setting="max_age")  # covers the lifetime: rounded up
    2
    >>> ttl_minutes(50 * 24 * 3600, setting="max_age")
    Traceback (most recent call last):
    ...
    dce_session.errors.ConfigError: max_age is 4320000 s; at most 65535 minutes (3932100 s)
    """
    if lifetime is None:
        return None
    if isinstance(lifetime, timedelta):
        seconds: float = lifetime.total_seconds()
    elif isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)):
        raise ConfigError(f"{setting} must be a number of seconds or a timedelta, "
                          f"got {lifetime!r}")
    else:
        seconds = lifetime
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{setting} must be >= 0 seconds, got {lifetime!r}")
    if seconds == 0:
        return None
    minutes = math.ceil(seconds / 60)
    if minutes > MAX_TTL_MINUTES:
        raise ConfigError(
            f"{setting} is {seconds:.0f} s; at most {MAX_TTL_MINUTES} minutes "
            f"({MAX_TTL_MINUTES * 60} s)")
    return minutes


def reserved_fields(manager: Any) -> frozenset[str]:
    """The bookkeeping field names of ``manager``: never session values."""
    return frozenset((manager.user_field, manager.new_sid_field, manager.server_field,
                      manager.client_field))


def jsonable(value: Any) -> Any:
    """``value`` as a JSON round trip gives it back (what a JSON serializer stores).

    Scalars come back as they are, containers as a copy (one C-speed round
    trip, cheaper than a walk in Python); tuples
    become lists and int/float/bool/None dict keys strings, as ``json.dumps``
    makes them (Django's ``JSONSerializer``). Anything ``json`` refuses raises
    :class:`SerializationError`.

    >>> jsonable({1: (2, 3), "a": None})
    {'1': [2, 3], 'a': None}
    """
    if type(value) in _JSON_SCALARS and not (type(value) is float and not math.isfinite(value)):
        return value
    try:
        return json.loads(json.dumps(value, separators=(",", ":"), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise SerializationError(f"not a JSON value: {error}") from error


def decode(raw: str) -> Any:
    """A stored JSON text as a value; ``ValueError`` when it is not JSON (NaN
    included) or nests too deep for Python."""
    try:
        return json.loads(raw, parse_constant=_refuse)
    except RecursionError as error:
        raise ValueError("a stored value nests too deep") from error


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def user_values(raw: Mapping[str, str], reserved: Iterable[str]) -> dict[str, Any]:
    """The decodable user values of a raw hash (when ``Session.data()`` met a field
    that is not JSON, another program's): bookkeeping and non-JSON fields left out.

    >>> user_values({"a": "1", "$user": "{}", "legacy": "not json"}, {"$user"})
    {'a': 1}
    """
    hidden = frozenset(reserved)
    values: dict[str, Any] = {}
    for name, text in raw.items():
        if name not in hidden:
            try:
                values[name] = decode(text)
            except ValueError:
                continue
    return values


def canonical(value: Any) -> str | None:
    """A comparable JSON text of ``value``; None when it is not JSON. Equal values
    built alike (same key order) give equal texts; a difference in key order
    alone only costs a needless write."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Changes:
    """What a request changed: values to write (``set``) and keys to remove."""

    set: dict[str, Any] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.set or self.delete)

    @property
    def keys(self) -> frozenset[str]:
        """Every key written or removed."""
        return frozenset((*self.set, *self.delete))

    @property
    def moved(self) -> dict[str, Any]:
        """The changes as ``regenerate`` / ``login(changes=)`` take them (None removes)."""
        return {**self.set, **dict.fromkeys(self.delete)}


class Snapshot:
    """The values a request loaded, kept as comparable JSON.

    ``to_store`` turns a value of the framework's into the JSON value stored
    for it (Flask's tags, Django's JSON round trip; default: as is), so the
    diff compares what would be written with what is stored: in-place edits
    count, and an equal value re-assigned is not rewritten. A loaded value
    still in the mapping (the same object, maybe edited in place) is compared
    by its JSON text first, at C speed; only values that differ, or were
    replaced, go through ``to_store``. An unchanged scalar (the same immutable
    object) is not even encoded.

    ``texts``: the stored JSON texts of the values (``Session.raw()``, free
    once the values are loaded). They stand for the loaded values, so loading
    encodes nothing; a text that another writer spaced or ordered differently
    from ours is re-encoded only if the value's own text differs from it.

    >>> loaded = {"cart": [1, 2], "n": 1}
    >>> snapshot = Snapshot(loaded, texts={"cart": "[1, 2]", "n": "1"})
    >>> loaded["cart"].append(3)
    >>> snapshot.changes(loaded).set
    {'cart': [1, 2, 3]}
    """

    __slots__ = ("_loaded", "_to_store")

    def __init__(self, stored: Mapping[str, Any] | None = None,
                 to_store: Callable[[Any], Any] | None = None,
                 texts: Mapping[str, str] | None = None) -> None:
        self._to_store = to_store
        #: key -> (loaded value, its JSON text or None, whether that text is ours)
        self._loaded: dict[str, tuple[Any, str | None, bool]]
        if texts is None:
            self._loaded = {key: (value, canonical(value), True)
                            for key, value in (stored or {}).items()}
        else:
            self._loaded = {key: (value, texts.get(key), False)
                            for key, value in (stored or {}).items()}

    def __contains__(self, key: object) -> bool:
        return key in self._loaded

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded)

    def stored_form(self, value: Any) -> Any:
        """The JSON value written for ``value``."""
        return value if self._to_store is None else self._to_store(value)

    def _is_stored(self, key: str, text: str | None) -> bool:
        """Whether ``text`` (our JSON of a value) is what the snapshot holds for ``key``."""
        value, loaded, ours = self._loaded[key]
        if text is None or loaded is None:
            return False
        if text == loaded:
            return True
        if ours:
            return False
        try:  # another writer's text: compare ours with ours
            mine = canonical(decode(loaded))
        except ValueError:
            mine = None
        self._loaded[key] = (value, mine, True)
        return text == mine

    def changes(self, current: Mapping[str, Any], *, keep: Iterable[str] = ()) -> Changes:
        """The values of ``current`` that differ from the snapshot, and the loaded
        keys ``current`` lost (``keep``: loaded keys never to delete).

        A value that is not JSON counts as changed: writing it raises
        ``SerializationError`` in the store, before anything is written.
        """
        written: dict[str, Any] = {}
        loaded = self._loaded
        for key, value in current.items():
            entry = loaded.get(key)
            if entry is not None and value is entry[0]:
                if type(value) in _JSON_SCALARS and entry[1] is not None:
                    continue  # the loaded immutable object itself
                if self._is_stored(key, canonical(value)):
                    continue  # the loaded object, its JSON unchanged
            stored = self.stored_form(value)
            if entry is None or not self._is_stored(key, canonical(stored)):
                written[key] = stored
        kept = set(keep)
        removed = [key for key in loaded if key not in current and key not in kept]
        return Changes(written, removed)

    def apply(self, changes: Changes) -> None:
        """Record that ``changes`` were written."""
        for key, value in changes.set.items():
            self._loaded[key] = (value, canonical(value), True)
        for key in changes.delete:
            self._loaded.pop(key, None)


_ABSENT: Any = object()


class Cookie(enum.Enum):
    """What a response does with the session cookie."""

    LEAVE = "leave"  #: no Set-Cookie
    SEND = "send"  #: the client must now hold another sid: send it
    REFRESH = "refresh"  #: same sid, re-sent so that its lifetime starts again
    EXPIRE = "expire"  #: this request ended the session: expire the cookie


def cookie(*, presented: str | None, sid: str, stored: bool, ended: bool = False,
           refresh: bool = False, interrupted: bool = False) -> Cookie:
    """The cookie decision at the end of a request.

    ``presented``: the cookie's value (None without one); ``sid``: the
    session's ``id`` now; ``stored``: the session is in the store now (as far
    as this request knows); ``ended``: this request ended a stored session
    (``clear()``, ``flush()``, ``destroy()``); ``refresh``: the framework's
    rule re-sends an unchanged cookie now; ``interrupted``: another request
    ended this session (a write found it gone, a rotation judgment), so the
    browser may already hold a newer cookie that no reply of ours may
    replace or expire.

    A presented sid that is unknown or malformed is left alone (it is never
    adopted either): expiring it could wipe the newer cookie another tab
    just received.
    """
    if interrupted:
        return Cookie.LEAVE
    if stored:
        if sid != presented:
            return Cookie.SEND
        return Cookie.REFRESH if refresh else Cookie.LEAVE
    if ended and presented is not None:
        return Cookie.EXPIRE
    return Cookie.LEAVE


def interrupted(presented: str | None) -> None:
    """Log that another request ended this request's session (a WARNING on the
    ``dce_session`` logger, the sid shortened): Flask's and Starlette's way of
    dropping the changes (Django raises ``SessionInterrupted`` instead)."""
    logger.warning(_INTERRUPTED, "(none)" if presented is None else f"{presented[:6]}…")


def half_age_passed(created_at: int, max_age: int | None, now: float) -> bool:
    """Starlette's refresh rule: over half of ``max_age`` has passed since ``created_at``."""
    return max_age is not None and max_age > 0 and now - created_at > max_age / 2
