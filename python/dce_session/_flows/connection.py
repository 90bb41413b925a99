"""Connection sessions: the root of a long connection (websocket and the like)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from dce_session._core import is_valid_sid, session_key
from dce_session._flows.calls import Command, Flow
from dce_session._flows.settings import redact
from dce_session.errors import ConfigError

if TYPE_CHECKING:
    from dce_session._flows.index import ManagerCore
    from dce_session._flows.state import SessionState

S = TypeVar("S", bound="SessionState")


class ConnectionCore:
    """The root of a long connection: its sid follows its request sessions.

    ``id`` starts as the sid the connection presented (a fresh one when it is
    absent or malformed); the first request writes ``server``/``client`` into
    its session; a request session that regenerates (or is forwarded to a
    rotated sid's successor) moves ``id``.
    """

    __slots__ = ("_bound", "_generated", "_manager", "client", "id", "server")

    def __init__(self, manager: ManagerCore, sid: object, server: str,
                 client: str | None) -> None:
        if not isinstance(server, str) or not server:
            raise ConfigError(f"server must be a non-empty str, got {server!r}")
        if client is not None and not isinstance(client, str):
            raise ConfigError(f"client must be a str or None, got {client!r}")
        self._manager, self.server, self.client, self._bound = manager, server, client, False
        valid = isinstance(sid, str) and is_valid_sid(sid)
        self._generated = not valid  # our own fresh sid: its session is newborn
        self.id = str.__str__(sid) if isinstance(sid, str) and valid \
            else manager.fresh_sid(manager.ttl_minutes)

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

    def _request(self, session_type: type[S], sid: object) -> S:
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
