"""What a flow yields (one Redis round trip each) and what the replies mean.

A flow yields a :class:`ScriptCall` or a :class:`Command` and receives the
raw reply; each script's reply is decoded in exactly one place, the
``parse`` of the named type below its script (the Lua headers in ``_lua/``
state the same layout). Reply states are :class:`Outcome` values, the codes
``lib.lua`` defines.
"""

from __future__ import annotations

import codecs
import enum
import inspect
import json
from collections.abc import Callable, Generator
from typing import Any, NamedTuple, TypeVar

from redis.exceptions import ClusterError, NoScriptError, ResponseError, TryAgainError

from dce_session import _scripts
from dce_session._core import Stored
from dce_session.errors import SerializationError, StoreError

T = TypeVar("T")
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


class Pipeline(NamedTuple):
    """Many commands sent at once (redis-py pipeline, no transaction): one round
    trip, on a Redis Cluster one per node involved (each command routed by
    its key in ``keys``). The reply is a list, one item per command: its
    reply or the exception it failed with."""

    commands: tuple[tuple[Arg, ...], ...]
    keys: tuple[str, ...]


_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # redis-py's C packer, when installed (the ``hiredis`` extra)
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - the tests run with hiredis
    _hiredis_pack = None

try:  # redis-py >= 8: its OpenTelemetry metrics, recorded by execute_command
    from redis.observability.recorder import is_enabled as _observed
except ImportError:  # pragma: no cover - older redis-py records nothing
    def _observed() -> bool:
        return False


#: The methods of redis-py's client classes a caller's subclass or an
#: instrumentation (ddtrace, OpenTelemetry) may replace to see every command.
_SENDING_METHODS = ("execute_command", "_execute_command")


class Direct(NamedTuple):
    """A script call sent by the driver itself on a connection of the client's
    pool: packed in C, with the connection's ``retry`` (the client's Retry)
    disconnecting on each failure as redis-py's ``execute_command`` does,
    and released to the pool after. It skips only ``execute_command``'s
    per-command Python (argument encoding, hooks), about a tenth of a
    loopback round trip. ``of`` takes it only for a plain client (a
    single-connection client, client-side caching or another encoding than
    strict UTF-8 keep ``execute_command``); ``direct_for`` checks on every
    call that the client's sending methods are still redis-py's own
    (instrumentation added later) and that redis-py's metrics are off
    (docs/operations.md)."""

    pool: Any
    base: type  # the door's redis-py client class, whose sending methods are the plain ones
    connection_args: tuple[str, ...]  # what the pool's get_connection wants (redis-py < 5.3)
    #: redis-py < 6: a failure that is not in the connection's ``retry_on_error``
    #: is raised at once, not retried (its ``_disconnect_raise``)
    raises_unlisted: bool

    @classmethod
    def of(cls, client: Any, base: type) -> Direct | None:
        single = getattr(client, "single_connection_client", False) \
            or getattr(client, "_single_connection_client", False)
        if single or client.connection is not None or not cls.plain(client, base):
            return None
        pool = client.connection_pool
        settings = getattr(pool, "connection_kwargs", {})
        if getattr(pool, "cache", None) is not None \
                or codecs.lookup(settings.get("encoding", "utf-8")).name != "utf-8" \
                or settings.get("encoding_errors", "strict") != "strict":
            return None
        wanted = inspect.signature(pool.get_connection).parameters.get("command_name")
        needs_name = wanted is not None and wanted.default is inspect.Parameter.empty
        return cls(pool, base, ("EVALSHA",) if needs_name else (),
                   hasattr(base, "_disconnect_raise"))

    @staticmethod
    def plain(client: Any, base: type) -> bool:
        """Whether ``client`` sends through ``base``'s own methods, unwrapped."""
        kind, own = type(client), vars(client)
        return all(getattr(kind, name, None) is getattr(base, name, None) and name not in own
                   and not hasattr(getattr(kind, name, None), "__wrapped__")
                   for name in _SENDING_METHODS)

    def retried(self, connection: Any, error: BaseException) -> bool:
        """After ``connection.disconnect()``: whether redis-py's ``execute_command``
        would let its Retry send again after ``error`` (else it is raised)."""
        listed = tuple(connection.retry_on_error or ())
        return not self.raises_unlisted or isinstance(error, listed)

    @staticmethod
    def pack(connection: Any, command: tuple[Arg, ...]) -> Any:
        """``command`` as the chunks ``connection.send_packed_command`` takes."""
        if _hiredis_pack is None:
            return connection.pack_command(*command)
        return [_hiredis_pack(command)]


def direct_for(direct: Direct | None, client: Any,
               call: ScriptCall | Command) -> Direct | None:
    """``direct`` when ``call`` goes direct: a script (EVALSHA has no reply
    callback in redis-py) over a client still plain, with redis-py's metrics
    off; else None."""
    if direct is None or not isinstance(call, ScriptCall) or _observed() \
            or not Direct.plain(client, direct.base):
        return None
    return direct


def store_error(error: BaseException) -> StoreError:
    """A redis-py error as ours (raise it ``from error``)."""
    wrapped = StoreError(f"Redis failed ({type(error).__name__}): {error}")
    wrapped.__cause__ = error
    return wrapped


#: Seconds to wait before each new attempt at a call whose slot is being
#: migrated (:func:`slot_migrating`); about 0.8 s in all, on top of redis-py's
#: own TRYAGAIN attempts. The drivers sleep; the call is sent again as is.
MIGRATION_PAUSES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def slot_migrating(error: BaseException) -> bool:
    """Whether ``error`` says the call's hash slot is moving between cluster
    nodes and nothing ran, so that sending the call again is its first run:
    ``TRYAGAIN`` (a script over keys of which only some have moved yet,
    which redis-py retries briefly and then reports as ``TTL exhausted``),
    or a script that found a key it does not declare (its replay record)
    missing on the node the slot is leaving. Every script reads such keys
    before its first write (see ``write.lua``), so it stopped unchanged."""
    if isinstance(error, TryAgainError):
        return True
    if isinstance(error, ClusterError):
        return "TTL exhausted" in str(error)
    return isinstance(error, ResponseError) and "non local key" in str(error)


def batch(calls: list[ScriptCall | Command]) -> Flow[list[Any]]:
    """Run many calls in one pipeline (scripts the server had not loaded again
    with EVAL): one reply per call, or the :class:`StoreError` it failed with."""
    keys = tuple(call.keys[0] if isinstance(call, ScriptCall) else str(call.args[1])
                 for call in calls)
    replies: list[Any] = list((yield Pipeline(tuple(call.wire() for call in calls), keys)))
    again = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if again:
        fallbacks = yield Pipeline(tuple(calls[index].fallback() or () for index in again),
                                   tuple(keys[index] for index in again))
        for index, reply in zip(again, fallbacks, strict=True):
            replies[index] = reply
    return [store_error(reply) if isinstance(reply, BaseException) else reply
            for reply in replies]


Call = ScriptCall | Command | Pipeline
Flow = Generator[Call, Any, T]


def text(reply: Any) -> str:
    """A reply item as ``str``, whatever the client's ``decode_responses``; bytes
    that are not UTF-8 (another program's) as surrogate escapes, never an error."""
    return reply.decode("utf-8", "surrogateescape") if isinstance(reply, bytes) else str(reply)


def field_map(flat: list[Any]) -> dict[str, str]:
    """``[field, value, ...]`` as a dict of str (bytes as :func:`text` makes them):
    a field that is not UTF-8 is not JSON, so reading it is ``SerializationError``
    and the other fields read as usual."""
    items = [item.decode("utf-8", "surrogateescape") if type(item) is bytes else str(item)
             for item in flat]
    return dict(zip(items[::2], items[1::2], strict=True))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # built once: it is on every get


def decode_value(raw: str) -> Any:
    """A stored JSON text as a Python value; ``SerializationError`` if not JSON."""
    try:
        return _DECODER.decode(raw)
    except (ValueError, RecursionError) as error:
        raise SerializationError(f"a stored value is not JSON (or nests too deep): {error}") \
            from error


class Outcome(enum.IntEnum):
    """The lifecycle state a script found a presented key in (``lib.lua``), or
    what a write did. SEMANTICS Part 3: live, forwarding, superseded, gone;
    ENDED is a rotated sid that is dead (its successor gone or rotated, or
    judged)."""

    GONE = 0
    LIVE = 1
    FORWARDING = 2
    SUPERSEDED = 3
    ENDED = 4
    ROTATED = 5  # a rotation (or reissue) ran: the reply is the new session
    FALLBACK = 6  # a write created the fallback key (the presented sid was unknown)

    @property
    def acted(self) -> bool:
        """The reply names a session that exists and was acted on."""
        return self in (Outcome.LIVE, Outcome.FORWARDING, Outcome.ROTATED, Outcome.FALLBACK)

    @property
    def stored(self) -> Stored:
        """The state as the rotation decision (Rust) takes it."""
        return _STORED[self]


_STORED = {Outcome.GONE: Stored.GONE, Outcome.LIVE: Stored.LIVE,
           Outcome.FORWARDING: Stored.FORWARDING, Outcome.SUPERSEDED: Stored.SUPERSEDED,
           Outcome.ENDED: Stored.ENDED, Outcome.ROTATED: Stored.LIVE,
           Outcome.FALLBACK: Stored.GONE}


def _uid(item: Any) -> str | None:
    return text(item) or None


# -- OPEN, ROTATE, JUDGE: lib.lua found_reply ------------------------------------


class Found(NamedTuple):
    """``open`` / ``rotate`` / ``judge``: the state of the presented key and,
    when one was acted on, the session (sid, fields). For SUPERSEDED:
    ``sid`` is the successor and both remaining TTLs are given. For GONE:
    whether a login replaced the sid less than a grace period ago."""

    outcome: Outcome
    remaining: int
    sid: str | None = None
    fields: dict[str, str] | None = None
    successor_remaining: int = -2
    replaced: bool = False

    @classmethod
    def parse(cls, reply: list[Any]) -> Found:
        outcome = Outcome(int(reply[0]))
        if outcome.acted:
            return cls(outcome, int(reply[1]), text(reply[2]), field_map(reply[3:]))
        if outcome is Outcome.SUPERSEDED:
            return cls(outcome, int(reply[1]), text(reply[2]), None, int(reply[3]))
        return cls(outcome, int(reply[1]), replaced=len(reply) > 2 and int(reply[2]) == 1)


# -- TOUCH ---------------------------------------------------------------------------


class Touched(NamedTuple):
    """``touch``: the state, the remaining TTL before the touch, the sid acted on."""

    outcome: Outcome
    remaining: int
    sid: str | None

    @classmethod
    def parse(cls, reply: list[Any]) -> Touched:
        return cls(Outcome(int(reply[0])), int(reply[1]), text(reply[2]) or None)


# -- WRITE ---------------------------------------------------------------------------


class Written(NamedTuple):
    """``write``: where it went (LIVE, FORWARDING, FALLBACK; else nothing was
    written), fields deleted, whether the key exists after, whether a FALLBACK
    came from a sid a login replaced, the sid written, and its fields when
    asked (always when forwarded)."""

    outcome: Outcome
    deleted: int
    exists: bool
    replaced: bool
    sid: str | None
    fields: dict[str, str] | None

    @classmethod
    def parse(cls, reply: list[Any], asked: bool) -> Written:
        outcome = Outcome(int(reply[0]))
        with_fields = asked or outcome is Outcome.FORWARDING
        return cls(outcome, int(reply[1]), bool(int(reply[2])), int(reply[3]) == 1,
                   text(reply[4]) or None, field_map(reply[5:]) if with_fields else None)


# -- DESTROY, LOGOUT -----------------------------------------------------------------


class Removed(NamedTuple):
    """``destroy`` / ``logout``: the state, whether it acted (destroyed / logged
    out), the uid whose index entry went, the sid acted on, (logout) whether
    the key still exists (a session holding only its user is gone), and, when
    nothing was there, whether a login replaced the sid within grace."""

    outcome: Outcome
    done: bool
    uid: str | None
    sid: str | None
    exists: bool
    replaced: bool

    @classmethod
    def parse(cls, reply: list[Any]) -> Removed:
        return cls(Outcome(int(reply[0])), bool(int(reply[1])), _uid(reply[2]),
                   text(reply[3]) or None, len(reply) > 4 and bool(int(reply[4])),
                   len(reply) > 5 and bool(int(reply[5])))


# -- RENEW ---------------------------------------------------------------------------


class RenewStatus(enum.IntEnum):
    """What ``renew`` did."""

    REQUIRED_GONE = 0  # the session had to exist and does not: nothing written
    WRITTEN = 1
    NOTHING_TO_WRITE = 2
    NO_USER = 3  # auto_login without a user: nothing written


class Renewed(NamedTuple):
    """``renew``: its status, the state of the presented key, the uid and sid of
    the old session acted on, and the new session's fields when written."""

    status: RenewStatus
    outcome: Outcome
    old_uid: str | None
    old_sid: str | None
    fields: dict[str, str]

    @classmethod
    def parse(cls, reply: list[Any]) -> Renewed:
        return cls(RenewStatus(int(reply[0])), Outcome(int(reply[1])), _uid(reply[2]),
                   text(reply[3]) or None, field_map(reply[4:]))


# -- EACH_SESSION (cluster index steps) ---------------------------------------------


class Checked(NamedTuple):
    """``each_session``: whether the session is a live one of that uid, and for
    the 'connections' action its bindings field (raw JSON) and dce fields."""

    live: bool
    bindings: str | None = None
    server: str | None = None
    client: str | None = None

    @classmethod
    def parse(cls, reply: list[Any]) -> Checked:
        held = [None if item is None else text(item) for item in reply[1:4]]
        return cls(bool(int(reply[0])), *held)
