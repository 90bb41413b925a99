"""Every operation of dce-session, written once, with no I/O.

An operation is a generator (a *flow*): it yields a :class:`ScriptCall` or a
:class:`Command` - one Redis round trip - receives the reply, and finally
returns the operation's result. The blocking driver (``session.py``) and the
asyncio driver (``asyncio.py``) only send what a flow yields and feed the
reply back; nothing here knows which of them runs it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, NamedTuple, TypeVar

from dce_session import _scripts
from dce_session._core import (
    encode_fields,
    encode_value,
    generate_sid,
    generate_sid_in_slot,
    is_valid_sid,
    key_slot,
    parse_sid,
    renew_decision,
    session_key,
    user_key,
)
from dce_session.errors import (
    ConfigError,
    InvalidField,
    InvalidUser,
    NotLoggedIn,
    ReservedField,
    SerializationError,
    SessionDestroyed,
    StoreError,
)

T = TypeVar("T")
S = TypeVar("S", bound="SessionCore")
Arg = str | int


class ScriptCall(NamedTuple):
    """Run a Lua script: one round trip."""

    script: _scripts.Script
    keys: tuple[str, ...]
    args: tuple[Arg, ...]

    def wire(self) -> tuple[Arg, ...]:
        """The command to send: EVALSHA."""
        return ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)

    def fallback(self) -> tuple[Arg, ...] | None:
        """The command to send instead on NOSCRIPT: EVAL with the source (built only then)."""
        return ("EVAL", self.script.source, len(self.keys), *self.keys, *self.args)


class Command(NamedTuple):
    """Send one plain Redis command: one round trip."""

    args: tuple[Arg, ...]

    def wire(self) -> tuple[Arg, ...]:
        """The command to send."""
        return self.args

    def fallback(self) -> tuple[Arg, ...] | None:
        """No fallback: a plain command's error is final."""
        return None


Call = ScriptCall | Command
Flow = Generator[Call, Any, T]


def text(reply: Any) -> str:
    """A reply item as ``str``, whatever the client's ``decode_responses``."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def field_map(flat: list[Any]) -> dict[str, str]:
    """``[field, value, ...]`` as a dict of str."""
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # built once: it is on every get


def decode_value(raw: str) -> Any:
    """A stored JSON text as a Python value; ``SerializationError`` if not JSON."""
    try:
        return _DECODER.decode(raw)
    except ValueError as error:
        raise SerializationError(f"a stored value is not JSON: {error}") from error


def check_field(field: object) -> str:
    """A field name: a ``str`` encodable as UTF-8 (a ``str`` subclass counts as its text)."""
    if not isinstance(field, str):
        raise InvalidField(f"field names are str, not {type(field).__name__}")
    name = str.__str__(field)
    try:
        name.encode()
    except UnicodeEncodeError as error:
        raise InvalidField("a field name must be valid UTF-8 (it has a lone surrogate)") from error
    return name


def redact(sid: str) -> str:
    """A sid as it may appear in a message: its first 6 characters."""
    return f"{sid[:6]}…"


def user_document(user: object) -> tuple[str, str]:
    """``(uid as decimal text, user JSON)`` of a user of any supported shape."""
    document: Any
    if isinstance(user, Mapping):
        document = dict(user)
        uid = document.get("id")
    else:
        uid = getattr(user, "id", None)
        if dataclasses.is_dataclass(user) and not isinstance(user, type):
            document = dataclasses.asdict(user)
        elif callable(getattr(user, "model_dump", None)):
            document = user.model_dump(mode="json")  # type: ignore[attr-defined]
        elif hasattr(user, "__dict__"):
            document = dict(vars(user))
        else:
            raise InvalidUser(f"a user is a mapping or an object, not {type(user).__name__}")
        document.setdefault("id", uid)
    index_key = user_key("", uid)  # raises InvalidUser for a bad id
    return index_key[1:], encode_value(document)


def uid_text(uid: object) -> str:
    """A uid as the decimal text keys use; ``InvalidUser`` if not in [0, 2**64)."""
    return user_key("", uid)[1:]


@dataclasses.dataclass(frozen=True)
class RenewPolicy:
    """Settings of self-regenerating sessions (``SessionManager(renew=...)``).

    >>> RenewPolicy(interval_seconds=300).original_judgment_seconds
    120
    """

    interval_seconds: int = 600
    original_judgment_seconds: int = 120
    cloned_inactive_judgment_seconds: int = 60

    def __post_init__(self) -> None:
        for name in ("interval_seconds", "original_judgment_seconds",
                     "cloned_inactive_judgment_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"RenewPolicy.{name} must be a positive int, got {value!r}")


def _check_ttl(ttl_minutes: object) -> int:
    if isinstance(ttl_minutes, bool) or not isinstance(ttl_minutes, int) \
            or not 1 <= ttl_minutes <= 0xFFFF:
        raise ConfigError(f"ttl_minutes must be an int in 1..65535, got {ttl_minutes!r}")
    return ttl_minutes


def _check_name(setting: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{setting} must be a non-empty str, got {value!r}")
    return value


class ManagerCore:
    """Settings and the manager-wide flows; the drivers add the client."""

    _client_types: tuple[type, ...] = ()
    _cluster_types: tuple[type, ...] = ()

    def __init__(
        self,
        client: Any,
        *,
        ttl_minutes: int = 60,
        sid_name: str = "dcesid",
        user_prefix: str = "dceusmap",
        user_field: str = "$user",
        new_sid_field: str = "$newid",
        server_field: str = "$server",
        client_field: str = "$client",
        mapping_ttl_seconds: int = 604800,
        user_loader: Callable[[dict[str, Any]], Any] | None = None,
        renew: RenewPolicy | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(client, self._client_types):
            names = " or ".join(f"{t.__module__}.{t.__qualname__}" for t in self._client_types)
            raise ConfigError(f"this SessionManager needs a {names}, not {type(client).__name__}")
        self.client = client
        #: True on a Redis Cluster: the user index then lies in another hash
        #: slot than the sessions, and flows update it in steps of their own.
        self.cluster = isinstance(client, self._cluster_types)
        self.ttl_minutes = _check_ttl(ttl_minutes)
        self.sid_name = _check_name("sid_name", sid_name)
        self.user_prefix = _check_name("user_prefix", user_prefix)
        fields = {name: _check_name(name, value) for name, value in (
            ("user_field", user_field), ("new_sid_field", new_sid_field),
            ("server_field", server_field), ("client_field", client_field))}
        if len(set(fields.values())) != len(fields):
            raise ConfigError(f"the bookkeeping fields must differ: {fields}")
        self.user_field, self.new_sid_field = user_field, new_sid_field
        self.server_field, self.client_field = server_field, client_field
        if isinstance(mapping_ttl_seconds, bool) or not isinstance(mapping_ttl_seconds, int) \
                or mapping_ttl_seconds <= 0:
            raise ConfigError(
                f"mapping_ttl_seconds must be a positive int, got {mapping_ttl_seconds!r}")
        self.mapping_ttl_seconds = mapping_ttl_seconds
        for setting, value in (("user_loader", user_loader), ("clock", clock)):
            if value is not None and not callable(value):
                raise ConfigError(f"{setting} must be callable, got {value!r}")
        if renew is not None and not isinstance(renew, RenewPolicy):
            raise ConfigError(f"renew must be a RenewPolicy, got {renew!r}")
        self.user_loader = user_loader
        self.renew = renew
        self.clock: Callable[[], float] = clock or time.time
        self.bookkeeping = frozenset(fields.values())

    def writable(self, field: object) -> str:
        """A field name a write may use: not one of the bookkeeping fields."""
        name = check_field(field)
        if name in self.bookkeeping:
            raise ReservedField(f"{name!r} is a bookkeeping field: only login, rotation and "
                                "connections write it; nothing was written")
        return name

    def value_pairs(self, mapping: object) -> list[str]:
        """``[field, JSON, ...]`` of a mapping of values to write (fields checked)."""
        try:
            pairs = encode_fields(mapping)
        except SerializationError:
            raise
        except TypeError as error:
            raise InvalidField(str(error)) from error
        for name in pairs[::2]:
            self.writable(name)
        return pairs

    def fresh_sid(self, ttl_minutes: int, near: str | None = None) -> str:
        """A new sid of ``ttl_minutes`` created now (by the manager's clock).

        On a cluster, ``near`` (a key) puts the new session key in the same
        hash slot, so that one script may touch both.
        """
        if self.cluster and near is not None:
            return generate_sid_in_slot(ttl_minutes, int(self.clock()), self.sid_name,
                                        key_slot(near))
        return generate_sid(ttl_minutes, int(self.clock()))

    @property
    def script_prefix(self) -> str:
        """The user prefix as scripts take it: empty on a cluster (no index in scripts)."""
        return "" if self.cluster else self.user_prefix

    def user_args(self) -> tuple[str, str, int]:
        """The user field, user prefix and index TTL floor, as scripts take them."""
        return self.user_field, self.script_prefix, self.mapping_ttl_seconds

    def uid_of(self, fields: Mapping[str, str] | None) -> str | None:
        """The uid (decimal text) of the user stored in ``fields``, if any."""
        raw = None if fields is None else fields.get(self.user_field)
        if raw is None:
            return None
        try:
            document = json.loads(raw)
        except ValueError:
            return None
        uid = document.get("id") if isinstance(document, dict) else None
        if isinstance(uid, bool) or not isinstance(uid, int) or not 0 <= uid < 2 ** 64:
            return None
        return str(uid)

    def index_add_flow(self, uid: str | None, sid: str, ttl_seconds: int) -> Flow[None]:
        """Cluster only: put ``sid`` in user ``uid``'s index (its own slot)."""
        if self.cluster and uid is not None:
            yield ScriptCall(_scripts.INDEX_ADD, (f"{self.user_prefix}:{uid}",),
                             (sid, ttl_seconds, self.mapping_ttl_seconds))

    def index_remove_flow(self, uid: str | None, *sids: str) -> Flow[None]:
        """Cluster only: take ``sids`` out of user ``uid``'s index."""
        if self.cluster and uid is not None and sids:
            yield Command(("SREM", f"{self.user_prefix}:{uid}", *sids))

    def _cluster_index_flow(self, uid: str, action: str, *extra: Arg) -> Flow[list[Any]]:
        """Cluster: the index flows as per-slot steps. SMEMBERS the index; one
        script per listed session (check it still holds the user, then act);
        SREM the sids found dead or logged out. Replies of the live ones."""
        index = f"{self.user_prefix}:{uid}"
        members = yield Command(("SMEMBERS", index))
        live: list[Any] = []
        gone: list[str] = []
        for member in sorted(text(sid) for sid in members):
            reply = yield ScriptCall(_scripts.EACH_SESSION, (session_key(self.sid_name, member),),
                                     (uid, self.user_field, action, *extra))
            if int(reply[0]):
                live.append((member, *reply[1:]))
            if not int(reply[0]) or action == "logout":
                gone.append(member)
        for first in range(0, len(gone), 1000):
            yield Command(("SREM", index, *gone[first:first + 1000]))
        return live

    def _index_flow(self, script: _scripts.Script, uid: object, *extra: Arg) -> Flow[Any]:
        uid = uid_text(uid)
        if self.cluster:
            action = {"sessions_of": "check", "sync": "sync", "logout_everywhere": "logout",
                      "connections_of": "connections"}[script.name]
            live = yield from self._cluster_index_flow(uid, action, *extra)
            if script.name == "sessions_of":
                return [sid for sid, *_ in live]
            if script.name == "connections_of":
                return [item for sid, server, client in live if server is not None
                        for item in (sid, server, client)]
            return len(live)
        return (yield ScriptCall(script, (f"{self.user_prefix}:{uid}",),
                                 (uid, self.sid_name, self.user_field, *extra)))

    def _sessions_of_flow(self, uid: object) -> Flow[list[str]]:
        return [text(sid) for sid in (yield from self._index_flow(_scripts.SESSIONS_OF, uid))]

    def _sync_flow(self, user: object) -> Flow[int]:
        uid, document = user_document(user)
        return int((yield from self._index_flow(_scripts.SYNC, int(uid), document)))

    def _logout_everywhere_flow(self, uid: object) -> Flow[int]:
        return int((yield from self._index_flow(_scripts.LOGOUT_EVERYWHERE, uid)))

    def _connections_of_flow(self, uid: object) -> Flow[list[tuple[str, str, str | None]]]:
        flat = yield from self._index_flow(_scripts.CONNECTIONS_OF, uid,
                                           self.server_field, self.client_field)
        return [(text(sid), text(server), None if client is None else text(client))
                for sid, server, client in zip(flat[::3], flat[1::3], flat[2::3], strict=True)]


class ConnectionCore:
    """The root of a long connection: its sid follows its request sessions.

    ``id`` starts as the sid the connection presented (a fresh one when it is
    absent or malformed); the first request writes ``server``/``client`` into
    its session; a request session that regenerates moves ``id``.
    """

    __slots__ = ("_bound", "_generated", "_manager", "client", "id", "server")

    def __init__(self, manager: ManagerCore, sid: object, server: str,
                 client: str | None) -> None:
        if not isinstance(server, str) or not server:
            raise ConfigError(f"server must be a non-empty str, got {server!r}")
        if client is not None and not isinstance(client, str):
            raise ConfigError(f"client must be a str or None, got {client!r}")
        self._manager, self.server, self.client, self._bound = manager, server, client, False
        self._generated = not is_valid_sid(sid)  # our own fresh sid: its session is newborn
        self.id = manager.fresh_sid(manager.ttl_minutes) if self._generated else str(sid)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact(self.id)} on {self.server}>"

    def _binding(self) -> list[str]:
        """The fields the first request writes: where this connection is held."""
        if self._bound:
            return []
        pairs = [self._manager.server_field, self.server]
        if self.client is not None:
            pairs += (self._manager.client_field, self.client)
        return pairs

    def _request(self, session_type: type[S], sid: str | None) -> S:
        """A request session of ``session_type``, attached to this connection."""
        if sid is None and self._generated and not self._bound:
            session = session_type(self._manager, None, None)
            session._adopt(self.id)  # newborn under the connection's own fresh sid
        else:
            session = session_type(self._manager, self.id if sid is None else sid, None)
        session._connection = self
        session._pending = self._binding()
        return session

    def _disconnect_flow(self) -> Flow[bool]:
        manager = self._manager
        removed = yield Command(("HDEL", session_key(manager.sid_name, self.id),
                                 manager.server_field, manager.client_field))
        self._bound = False
        return int(removed) > 0


class SessionCore:
    """One session's state and flows; the drivers add the public methods.

    State: ``_fields`` is the snapshot of the stored hash (``None`` until an
    opened session's first store operation); ``_stored`` says the key is
    known to exist; ``_dead`` that this object saw it destroyed (writes then
    raise :class:`SessionDestroyed`); ``_touched`` that the TTL was refreshed.
    """

    __slots__ = ("_connection", "_dead", "_fields", "_idle", "_manager", "_pending", "_stored",
                 "_touched", "created_at", "id", "key", "newborn", "ttl_minutes")

    def __init__(self, manager: ManagerCore, presented: object, ttl_minutes: int | None) -> None:
        self._manager = manager
        self._connection: ConnectionCore | None = None
        self._pending: list[str] = []
        self._stored = self._dead = self._touched = False
        # Seconds the stored session had been idle when this object first saw it,
        # before anything touched it (the rotation judgment needs it).
        self._idle: int | None = None
        self._fields: dict[str, str] | None
        if presented is not None and is_valid_sid(presented):
            self._adopt(str(presented))
            if self.ttl_minutes:  # a ttl of 0 never lived: treated as malformed
                self._fields, self.newborn = None, False
                return
        self._become_newborn(manager.ttl_minutes if ttl_minutes is None else ttl_minutes)

    def __repr__(self) -> str:
        state = "dead" if self._dead else "stored" if self._stored else \
            "unloaded" if self._fields is None else "new"
        return f"<{type(self).__name__} {redact(self.id)} {state}>"

    @property
    def manager(self) -> ManagerCore:
        """The manager this session belongs to (its settings: fields, prefixes, ttl)."""
        return self._manager

    @property
    def stored(self) -> bool:
        """True when this object knows the session is in the store (found or written)."""
        return self._stored and not self._dead

    @property
    def destroyed(self) -> bool:
        """True when this object saw the session end (destroy, or found it gone)."""
        return self._dead

    # -- state changes -------------------------------------------------------

    def _adopt(self, sid: str) -> None:
        self.id = sid
        if self._connection is not None:
            self._connection.id = sid
        self.key = session_key(self._manager.sid_name, sid)
        self.ttl_minutes, self.created_at = parse_sid(sid)

    def _become_newborn(self, ttl_minutes: int | None = None) -> None:
        self._adopt(self._manager.fresh_sid(
            self._manager.ttl_minutes if ttl_minutes is None else _check_ttl(ttl_minutes)))
        self.newborn, self._fields, self._stored = True, {}, False

    def _missing(self) -> None:
        """The key turned out not to exist."""
        if self._stored or self._dead:
            self._dead, self._stored, self._fields = True, False, {}
        elif self._fields is None:
            self._become_newborn()

    def _moved_to(self, sid: str, flat: list[Any]) -> None:
        """The session now lives under ``sid`` with these fields."""
        self._adopt(sid)
        self._fields, self._stored, self._touched, self._dead = field_map(flat), True, True, False
        self._idle = 0

    def _saw_remaining(self, remaining: int) -> None:
        """The store reported the key's TTL before this object touched it."""
        if self._idle is None and remaining >= 0:
            self._idle = max(self._ttl_seconds() - remaining, 0)

    def _bound(self) -> None:
        """The connection binding in ``_pending`` has been written."""
        if self._pending and self._connection is not None:
            self._connection._bound, self._pending = True, []

    def _destroyed(self) -> SessionDestroyed:
        return SessionDestroyed(f"session {redact(self.id)} was destroyed; nothing written")

    def _ttl_seconds(self) -> int:
        return self.ttl_minutes * 60

    def _key_args(self) -> tuple[Arg, ...]:
        return self.id, self._ttl_seconds()

    # -- flows -----------------------------------------------------------------

    def _load_flow(self, touch: bool) -> Flow[None]:
        flat = yield ScriptCall(_scripts.OPEN, (self.key,),
                                (*self._key_args(), int(touch), *self._manager.user_args()))
        if flat:
            self._fields, self._stored = field_map(flat[1:]), True
            self._saw_remaining(int(flat[0]))
            self._touched = self._touched or touch
            if touch:
                yield from self._manager.index_add_flow(
                    self._manager.uid_of(self._fields), self.id, self._ttl_seconds())
        else:
            self._missing()

    def _fields_flow(self, touch: bool) -> Flow[dict[str, str]]:
        """The snapshot, loading it (one round trip) or touching once as needed."""
        if self._pending:  # a connection's binding rides on its first request's first operation
            yield from self._write_flow([], [], touch)
        elif self._fields is None:
            yield from self._load_flow(touch)
        elif touch and self._stored and not self._touched:
            yield from self._touch_flow()
        assert self._fields is not None
        return self._fields

    def _get_flow(self, field: object, default: Any, touch: bool) -> Flow[Any]:
        name = check_field(field)
        raw = (yield from self._fields_flow(touch)).get(name)
        return default if raw is None else decode_value(raw)

    def _raw_flow(self) -> Flow[dict[str, str]]:
        return dict((yield from self._fields_flow(False)))

    def _touch_flow(self) -> Flow[bool]:
        remaining = int((yield ScriptCall(_scripts.TOUCH, (self.key,),
                                          (*self._key_args(), *self._manager.user_args()))))
        self._touched = True
        if remaining != -2:
            self._stored = True
            self._saw_remaining(remaining)
            yield from self._manager.index_add_flow(
                self._manager.uid_of(self._fields), self.id, self._ttl_seconds())
            return True
        self._missing()
        return False

    def _write_flow(self, pairs: list[str], deletions: list[str], touch: bool) -> Flow[int]:
        """HSET ``pairs`` and HDEL ``deletions`` in one step; how many were deleted."""
        if self._dead:
            raise self._destroyed()
        pairs = self._pending + pairs
        if self._fields is not None and not self._stored and not pairs:
            return 0  # nothing stored, nothing to delete
        manager = self._manager
        mode = "existing" if self._stored else "fallback" if self._fields is None else "create"
        fallback = manager.fresh_sid(manager.ttl_minutes, self.key) if mode == "fallback" else ""
        wants_touch = touch and not self._touched
        keys = (self.key, session_key(manager.sid_name, fallback)) if fallback else (self.key,)
        reply = yield ScriptCall(_scripts.WRITE, keys, (
            mode, *self._key_args(), fallback, manager.ttl_minutes * 60,
            int(wants_touch), int(self._fields is None),
            *manager.user_args(), len(pairs) // 2, *pairs, *deletions))
        status, deleted, exists = int(reply[0]), int(reply[1]), int(reply[2])
        if status == 1:
            self._saw_remaining(int(reply[3]))
        if status == 0:
            self._missing()
            raise self._destroyed()
        if status == 2:
            self._adopt(fallback)
            self.newborn = True
        if self._fields is None:
            self._fields = field_map(reply[4:])
        else:
            self._fields.update(zip(pairs[::2], pairs[1::2], strict=True))
            for field in deletions:
                self._fields.pop(field, None)
        self._stored = bool(exists)
        self._touched = self._touched or touch or status == 2 or mode == "create"
        self._bound()
        if wants_touch and exists:
            yield from manager.index_add_flow(manager.uid_of(self._fields), self.id,
                                              self._ttl_seconds())
        return deleted

    def _set_flow(self, mapping: object, touch: bool,
                  deletions: Iterable[object] = ()) -> Flow[None]:
        pairs = self._manager.value_pairs(mapping)
        removals = [self._manager.writable(field) for field in deletions]
        if pairs or removals:
            yield from self._write_flow(pairs, removals, touch)

    def _load_raw_flow(self, mapping: Mapping[str, str]) -> Flow[None]:
        pairs: list[str] = []
        for field, value in mapping.items():
            if not isinstance(value, str):
                raise SerializationError(f"load() takes str values, not {type(value).__name__}")
            pairs += (self._manager.writable(field), value)
        if pairs:
            yield from self._write_flow(pairs, [], False)

    def _delete_flow(self, field: object, touch: bool) -> Flow[bool]:
        return bool((yield from self._write_flow([], [self._manager.writable(field)], touch)))

    def _data_flow(self) -> Flow[dict[str, Any]]:
        fields = yield from self._fields_flow(True)
        hidden = self._manager.bookkeeping
        return {name: decode_value(raw) for name, raw in fields.items() if name not in hidden}

    def _ttl_passed_flow(self) -> Flow[int | None]:
        remaining = int((yield Command(("TTL", self.key))))
        if remaining < 0:
            self._missing()
            return None
        self._stored = True
        return max(self._ttl_seconds() - remaining, 0)

    def _cluster_uid_flow(self) -> Flow[str | None]:
        """Cluster only: the uid whose index entry a removal must drop in a later
        step (the index lies in another slot); reads the user when not loaded."""
        manager = self._manager
        if not manager.cluster:
            return None
        if self._fields is not None:
            return manager.uid_of(self._fields)
        user = yield Command(("HGET", self.key, manager.user_field))
        return manager.uid_of(None if user is None else {manager.user_field: text(user)})

    def _destroy_flow(self) -> Flow[bool]:
        manager = self._manager
        uid = yield from self._cluster_uid_flow()
        existed = yield ScriptCall(_scripts.DESTROY, (self.key,),
                                   (self.id, manager.user_field, manager.script_prefix))
        if int(existed) or self._stored:
            self._dead, self._stored, self._fields = True, False, {}
        else:
            self._missing()  # never stored: nothing ended (an unknown sid settles as newborn)
        yield from manager.index_remove_flow(uid, self.id)
        return bool(int(existed))

    def _renew_flow(self, pairs: list[str], removals: list[str], ttl_minutes: int | None,
                    destroy_old: bool, needs_user: bool) -> Flow[str]:
        """Copy the session under a fresh sid (see ``_lua/renew.lua``)."""
        if self._dead:
            raise self._destroyed()
        if needs_user and self._fields is not None and not self._stored \
                and self._manager.user_field not in self._fields:
            raise NotLoggedIn("auto_login() needs a logged-in session")
        pairs = self._pending + pairs
        ttl = self.ttl_minutes if ttl_minutes is None else _check_ttl(ttl_minutes)
        manager = self._manager
        old_uid = new_uid = None
        if manager.cluster:
            # The index is another slot: add the new sid before the move (so a
            # crash never leaves a live session unlisted), remove the old after.
            if self._fields is None:
                yield from self._load_flow(False)
            old_uid = manager.uid_of(self._fields)
            changes = dict(zip(pairs[::2], pairs[1::2], strict=True))
            new_fields = {**(self._fields or {}), **changes}
            for field in removals:
                new_fields.pop(field, None)
            new_uid = manager.uid_of(new_fields)
        new_sid = manager.fresh_sid(ttl, self.key)  # after any load: it may change the key
        if manager.cluster:
            yield from manager.index_add_flow(new_uid, new_sid, ttl * 60)
        old_sid = self.id
        keys = (self.key, session_key(manager.sid_name, new_sid))
        reply = yield ScriptCall(_scripts.RENEW, keys, (
            self.id, new_sid, ttl * 60, int(self._stored), int(destroy_old), int(needs_user),
            *manager.user_args(), manager.new_sid_field, len(pairs) // 2, *pairs, *removals))
        status, old_existed = int(reply[0]), int(reply[1])
        if self._fields is None and not old_existed and status != 0:
            # The presented sid was unknown: never adopted, the session is newborn.
            if status == 3:
                self._missing()
            self.newborn = True
        if manager.cluster:
            if status != 1:
                yield from manager.index_remove_flow(new_uid, new_sid)
            if destroy_old and status != 0:
                yield from manager.index_remove_flow(old_uid, old_sid)
        if status == 0:
            self._missing()
            raise self._destroyed()
        if status == 3:
            raise NotLoggedIn("auto_login() needs a logged-in session")
        if status == 2:
            self._adopt(new_sid)
            self._fields, self._stored = {}, False
        else:
            self._moved_to(new_sid, reply[2:])
            self._bound()
        return new_sid

    def _regenerate_flow(self, changes: Mapping[str, Any] | None, destroy_old: bool,
                         ttl_minutes: int | None) -> Flow[str]:
        changes = dict(changes or {})
        manager = self._manager
        removals = [manager.writable(field) for field, value in changes.items() if value is None]
        pairs = manager.value_pairs({field: value for field, value in changes.items()
                                     if value is not None})
        return (yield from self._renew_flow(pairs, removals, ttl_minutes, destroy_old=destroy_old,
                                            needs_user=False))

    def _user_document_flow(self) -> Flow[dict[str, Any] | None]:
        raw = (yield from self._fields_flow(False)).get(self._manager.user_field)
        if raw is None:
            return None
        document = decode_value(raw)
        return document if isinstance(document, dict) else None

    def _user_flow(self) -> Flow[Any]:
        document = yield from self._user_document_flow()
        loader = self._manager.user_loader
        return document if document is None or loader is None else loader(document)

    def _uid_flow(self) -> Flow[int | None]:
        document = yield from self._user_document_flow()
        uid = None if document is None else document.get("id")
        return uid if isinstance(uid, int) and not isinstance(uid, bool) else None

    def _login_flow(self, user: object, ttl_minutes: int | None) -> Flow[str]:
        _, document = user_document(user)
        if ttl_minutes is not None:
            _check_ttl(ttl_minutes)
        return (yield from self._renew_flow([self._manager.user_field, document], [], ttl_minutes,
                                            destroy_old=True, needs_user=False))

    def _auto_login_flow(self) -> Flow[str]:
        return (yield from self._renew_flow([], [], None, destroy_old=True, needs_user=True))

    def _logout_flow(self) -> Flow[bool]:
        if self._dead:
            raise self._destroyed()
        if self._fields is not None and not self._stored:
            return False
        manager = self._manager
        uid = yield from self._cluster_uid_flow()
        was_in = yield ScriptCall(_scripts.LOGOUT, (self.key,),
                                  (self.id, manager.user_field, manager.script_prefix))
        if int(was_in) == -1:
            self._missing()
            return False
        if self._fields is not None:
            self._fields.pop(manager.user_field, None)
        if int(was_in):
            yield from manager.index_remove_flow(uid, self.id)
        return bool(int(was_in))

    def _try_renew_flow(self) -> Flow[bool]:
        """Rotate the sid when due (see SEMANTICS.md, self-regenerating sessions)."""
        manager, policy = self._manager, self._manager.renew
        if policy is None:
            raise ConfigError("try_renew() needs SessionManager(renew=RenewPolicy(...))")
        if self._dead:
            raise self._destroyed()
        fields = yield from self._fields_flow(True)
        if self.newborn:
            return True
        if self._dead or not self._stored:
            raise self._destroyed()
        pointer = fields.get(manager.new_sid_field)
        successor: tuple[str, int, dict[str, str] | None] | None = None  # state, idle, fields
        for _ in range(4):
            successor_created = None
            if pointer is not None:  # a pointer that is not a sid counts as a rotation long ago
                successor_created = parse_sid(pointer)[1] if is_valid_sid(pointer) else 0
            state, idle, successor_fields = successor or (None, 0, None)
            decision = renew_decision(
                policy.interval_seconds, policy.original_judgment_seconds,
                policy.cloned_inactive_judgment_seconds, int(manager.clock()), self.created_at,
                self._idle or 0, successor_created, state, idle)
            if decision == "keep":
                return False
            if decision == "read_successor" and pointer is not None:
                successor = yield from self._read_successor_flow(pointer)
            elif decision == "follow" and pointer is not None and successor_fields is not None:
                self._adopt(pointer)
                self._fields, self._stored, self._touched = successor_fields, True, True
                return True
            elif decision == "destroy":
                yield from self._destroy_flow()
                raise self._destroyed()
            else:  # rotate, reissue
                new_sid = manager.fresh_sid(self.ttl_minutes, self.key)
                reissued = pointer if decision == "reissue" else None
                uid = manager.uid_of(self._fields)
                yield from manager.index_add_flow(uid, new_sid, self._ttl_seconds())
                keys: tuple[str, ...] = (self.key, session_key(manager.sid_name, new_sid))
                if reissued:
                    keys += (session_key(manager.sid_name, reissued),)
                reply = yield ScriptCall(_scripts.ROTATE, keys, (
                    self.id, new_sid, self._ttl_seconds(), manager.new_sid_field, pointer or "",
                    *manager.user_args(), reissued or ""))
                status = int(reply[0])
                if status != 1:
                    yield from manager.index_remove_flow(uid, new_sid)
                elif reissued:
                    yield from manager.index_remove_flow(uid, reissued)
                if status == 0:
                    self._missing()
                    raise self._destroyed()
                if status == 1:
                    self._adopt(new_sid)
                    self._fields, self._stored, self._touched = field_map(reply[1:]), True, True
                    return True
                pointer, successor = text(reply[1]) or None, None
        raise StoreError("the session kept being rotated by other requests; try again")

    def _read_successor_flow(self, sid: str) -> Flow[tuple[str, int, dict[str, str] | None]]:
        """``(state, idle seconds, fields)`` of the session a rotated one points to."""
        if not is_valid_sid(sid):
            return "missing", 0, None
        ttl_seconds = parse_sid(sid)[0] * 60
        flat = yield ScriptCall(_scripts.OPEN, (session_key(self._manager.sid_name, sid),),
                                (sid, ttl_seconds, 1, *self._manager.user_args()))
        if not flat:
            return "missing", 0, None
        fields = field_map(flat[1:])
        yield from self._manager.index_add_flow(self._manager.uid_of(fields), sid, ttl_seconds)
        state = "superseded" if self._manager.new_sid_field in fields else "live"
        return state, max(ttl_seconds - int(flat[0]), 0), fields
