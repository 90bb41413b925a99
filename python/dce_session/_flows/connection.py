"""Connection sessions: long connections (websockets and the like), one
binding per connection, the servers' presence, and session events."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import secrets
from typing import TYPE_CHECKING, Any, TypeVar

from dce_session._core import is_valid_sid, parse_sid
from dce_session._flows.calls import Command, Flow, ScriptCall, batch, text
from dce_session._flows.settings import redact
from dce_session.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from dce_session._flows.index import ManagerCore
    from dce_session._flows.state import SessionState

S = TypeVar("S", bound="SessionState")
log = logging.getLogger("dce_session")

#: Seconds between presence beats, and after which a silent server's
#: connections are no longer reported (``keep_alive``).
BEAT_SECONDS = 5.0
LAPSE_SECONDS = 15
PRESENCE_TTL = 7 * 86400  # the presence zset outlives any gap between beats


def seconds(value: object, name: str) -> float:
    """``value`` as a positive, finite number of seconds; else ``ConfigError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def server_name(server: object) -> str:
    """``server`` when it is a non-empty str; else ``ConfigError``."""
    if not isinstance(server, str) or not server:
        raise ConfigError(f"server must be a non-empty str, got {server!r}")
    return server


def lapse_for(every: float) -> int:
    """The lapse of a presence beating every ``every`` seconds: three beats."""
    return max(int(3 * every), 3)

class ConnectionCore:
    """The root of a long connection: its sid follows its request sessions.

    ``id`` starts as the sid the connection presented (a fresh one when it is
    absent or malformed). Each connection is its own binding (``binding_id``)
    in its session's hash: the first request's first store operation writes
    it (and the dce fields ``$server``/``$client``), ``disconnect()`` removes
    exactly it. A request session that regenerates (or is forwarded to a
    rotated sid's successor) moves ``id``; the bindings move with the data.
    """

    __slots__ = ("_bound", "_generated", "_manager", "binding_id", "client", "id", "server")

    def __init__(self, manager: ManagerCore, sid: object, server: str,
                 client: str | None) -> None:
        server_name(server)
        if client is not None and not isinstance(client, str):
            raise ConfigError(f"client must be a str or None, got {client!r}")
        self._manager, self.server, self.client, self._bound = manager, server, client, False
        valid = isinstance(sid, str) and is_valid_sid(sid) \
            and parse_sid(str.__str__(sid))[0] > 0  # a ttl of 0 never lived, as in open()
        self._generated = not valid  # our own fresh sid: its session is newborn
        self.id = str.__str__(sid) if isinstance(sid, str) and valid \
            else manager.fresh_sid(manager.ttl_minutes)
        #: This connection's entry in its session's bindings.
        self.binding_id = secrets.token_hex(8)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact(self.id)} on {self.server}>"

    def _request(self, session_type: type[S], sid: object) -> S:
        """A request session of ``session_type``, attached to this connection."""
        if sid is None and self._generated and not self._bound:
            session = session_type(self._manager, None, None)
            session._adopt(self.id)  # newborn under the connection's own fresh sid
        else:
            session = session_type(self._manager, self.id if sid is None else sid, None)
        session._connection = self
        if not self._bound and session.id == self.id:  # a carried sid's session is not ours
            session._binding = (self.binding_id, self.server, self.client or "")
        return session

    def _disconnect_flow(self, session_type: type[SessionState]) -> Flow[bool]:
        session = session_type(self._manager, self.id, None)
        session._binding = (self.binding_id, "", "")
        removed = yield ScriptCall(self._manager.scripts.disconnect, (session.key,),
                                   (*session._header(), *session._binding_args()))
        self._bound = False
        return bool(int(removed))


def bindings_of(sid: str, raw: Any, server: Any = None,
                client: Any = None) -> list[tuple[str, str, str | None]]:
    """``(sid, server, client)`` of each binding in a stored bindings field; a
    session bound by another dce service has only ``$server``/``$client``."""
    if raw is None:
        return [] if server is None else [
            (sid, text(server), None if client is None else text(client))]
    try:
        bindings = json.loads(text(raw))
    except ValueError:
        return []
    if not isinstance(bindings, dict):
        return []
    return [(sid, str(held[0]), None if held[1] is None else str(held[1]))
            for held in bindings.values() if isinstance(held, list) and len(held) == 2]


def present(connections: list[tuple[str, str, str | None]], presence: list[Any],
            now: int) -> list[tuple[str, str, str | None]]:
    """The connections whose server's presence has not lapsed (a server that
    never kept a presence counts as present). ``presence``: ZRANGE WITHSCORES."""
    if presence and isinstance(presence[0], list):  # RESP3: [[member, score], ...]
        presence = [item for pair in presence for item in pair]
    flat = [text(item) for item in presence]
    lapsed = {flat[i] for i in range(0, len(flat), 2) if float(flat[i + 1]) < now}
    return [connection for connection in connections if connection[1] not in lapsed]


def presence_beat(manager: ManagerCore, server: str, lapse_seconds: int) -> Flow[None]:
    """One beat of ``server``'s presence: alive for ``lapse_seconds`` more."""
    if isinstance(lapse_seconds, bool) or not isinstance(lapse_seconds, int) \
            or lapse_seconds <= 0:
        raise ConfigError(f"lapse_seconds must be a positive int, got {lapse_seconds!r}")
    yield from _presence(manager, server_name(server), manager.now() + lapse_seconds)


def _presence(manager: ManagerCore, server: str, until: int) -> Flow[None]:
    replies = yield from batch([Command(("ZADD", manager.presence_key, until, server)),
                                Command(("EXPIRE", manager.presence_key, PRESENCE_TTL))])
    for reply in replies:
        if isinstance(reply, StoreError):
            raise reply


def presence_forget(manager: ManagerCore, server: str) -> Flow[None]:
    """``server``'s presence lapsed now: its connections are no longer reported."""
    yield from _presence(manager, server_name(server), 0)


@dataclasses.dataclass(frozen=True)
class SessionEvent:
    """A change published by the script that made it (``manager.events()``).

    ``kind``: ``"destroy"``, ``"logout"``, ``"logout_everywhere"``, ``"rotate"``
    (``sid`` -> ``new_sid``) or ``"sync"``; ``sid`` / ``sids`` the sessions
    concerned, ``uid`` the user when known.

    >>> event = SessionEvent.parse('{"event":"logout","sid":"AB","uid":"7"}')
    >>> event.kind, event.uid, event.concerns("AB")
    ('logout', 7, True)
    """

    kind: str
    sid: str | None = None
    new_sid: str | None = None
    uid: int | None = None
    sids: tuple[str, ...] = ()

    @classmethod
    def parse(cls, message: Any) -> SessionEvent:
        data = json.loads(text(message))
        sids = data.get("sids")
        return cls(str(data["event"]), data.get("sid"), data.get("new_sid"),
                   None if data.get("uid") is None else int(data["uid"]),
                   tuple(sids) if isinstance(sids, list) else ())

    @classmethod
    def of(cls, data: Any) -> SessionEvent | None:
        """The event a message on the events channel holds; None, with a WARNING
        on the ``dce_session`` logger, when it holds none (another publisher's)."""
        try:
            return cls.parse(data)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as error:
            log.warning("a message on the events channel is no session event, dropped (%s)",
                        error)
            return None

    def concerns(self, sid: str) -> bool:
        """True when ``sid`` is one of the sessions this event is about."""
        return sid == self.sid or sid in self.sids


#: Seconds an event stream waits for the server's reply to its SUBSCRIBE.
SUBSCRIBE_SECONDS = 5.0


def subscribed(message: Any) -> bool:
    """Whether a pubsub ``get_message`` result is the server's SUBSCRIBE reply:
    the stream misses no event published after it. It is the first reply on
    the stream's fresh connection, so one ``get_message`` reads it."""
    return message is not None and message.get("type") == "subscribe"


def not_subscribed() -> StoreError:
    """The error of a stream whose SUBSCRIBE got no reply in time."""
    return StoreError(f"Redis did not confirm the events subscription within "
                      f"{SUBSCRIBE_SECONDS:g} s")


def received_event(message: Any) -> SessionEvent | None:
    """The event of a pubsub ``get_message`` result (None: nothing, or no event)."""
    if message is None or message.get("type") != "message":
        return None
    return SessionEvent.of(message["data"])
