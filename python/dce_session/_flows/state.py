"""One session object's lifecycle state, as one value, and its transitions.

:class:`State` is what this object knows of its session (SEMANTICS Part 3 is
what the *store* holds; the scripts report it as ``calls.Outcome``). The
transitions live here, so that every flow settles an object the same way:

* ``PRESENTED`` - a client's sid, not checked yet (``open()`` does no I/O).
  Found live or forwarding: ``STORED`` (a forwarded object adopts the
  successor's sid). Found anything else: unknown, so *newborn*: a fresh sid,
  ``UNSTORED`` - a client-supplied sid is never adopted.
* ``UNSTORED`` - nothing stored under ``id`` yet (``new()``, a newborn, or a
  session whose last field was deleted): the next write creates the key.
* ``STORED`` - this object found or wrote the key. Found gone (or rotated
  past grace) later: ``ENDED``.
* ``ENDED`` - this object saw the session end (destroy, login elsewhere,
  logout_everywhere, a judgment): writes raise ``SessionDestroyed``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from dce_session._core import is_valid_sid, parse_sid, session_key
from dce_session._flows.calls import Arg, Outcome
from dce_session._flows.settings import check_ttl, redact
from dce_session.errors import SessionDestroyed

if TYPE_CHECKING:
    from dce_session._flows.connection import ConnectionCore
    from dce_session._flows.index import ManagerCore


class State(enum.Enum):
    """What a session object knows of its session (see the module docstring)."""

    PRESENTED = "presented"
    UNSTORED = "unstored"
    STORED = "stored"
    ENDED = "ended"


class SessionState:
    """A session's identity, its :class:`State`, the snapshot of its fields, and
    the transitions between states. The flows (``basic``, ``user``,
    ``rotation``) build on it; the drivers add the public methods."""

    __slots__ = (
        "_binding",
        "_connection",
        "_manager",
        "_presented",
        "_snapshot",
        "_state",
        "_touched",
        "created_at",
        "id",
        "key",
        "newborn",
        "replaced",
        "ttl_minutes",
    )

    def __init__(self, manager: ManagerCore, presented: object, ttl_minutes: int | None) -> None:
        self._manager = manager
        self._connection: ConnectionCore | None = None
        #: The connection binding (id, server, client) that rides on the first
        #: store operation of a connection's request (connections).
        self._binding: tuple[str, str, str] | None = None
        #: The snapshot of the stored hash; None until loaded.
        self._snapshot: dict[str, str] | None = None
        #: The TTL was refreshed by this object (sessions touch once).
        self._touched = False
        self._presented: str | None = None
        #: The presented sid was replaced by a login elsewhere, within grace.
        self.replaced = False
        if isinstance(presented, str) and is_valid_sid(presented):
            sid = str.__str__(presented)
            ttl, _ = parse_sid(sid)
            if ttl:  # a ttl of 0 never lived: treated as malformed
                self._presented = sid
                self._adopt(sid)
                self._state, self.newborn = State.PRESENTED, False
                return
        self._become_newborn(manager.ttl_minutes if ttl_minutes is None else ttl_minutes)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact(self.id)} {self._state.value}>"

    @property
    def manager(self) -> ManagerCore:
        """The manager this session belongs to (its settings: fields, prefixes, ttl)."""
        return self._manager

    @property
    def stored(self) -> bool:
        """True when this object knows the session is in the store (found or written)."""
        return self._state is State.STORED

    @property
    def destroyed(self) -> bool:
        """True when this object saw the session end (destroy, or found it gone)."""
        return self._state is State.ENDED

    # -- transitions -------------------------------------------------------------

    def _adopt(self, sid: str) -> None:
        """The session is now ``sid`` (a rotation, a regeneration, forwarding)."""
        self.id = sid
        if self._connection is not None:
            self._connection.id = sid
        self.key = session_key(self._manager.sid_name, sid)
        self.ttl_minutes, self.created_at = parse_sid(sid)

    def _become_newborn(self, ttl_minutes: int | None = None) -> None:
        self._adopt(self._manager.fresh_sid(
            self._manager.ttl_minutes if ttl_minutes is None else check_ttl(ttl_minutes)))
        self.newborn, self._snapshot, self._state = True, {}, State.UNSTORED

    def _arrived(self, outcome: Outcome, sid: str | None, fields: dict[str, str] | None) -> None:
        """The store holds this session under ``sid`` (``fields``: its snapshot,
        None when the reply did not carry it). A forwarded or rotated session
        is not touched again by this object: the successor's idle time is
        what the rotation judgment reads."""
        if sid is not None and sid != self.id:
            self._adopt(sid)
        if outcome is Outcome.FALLBACK:
            self.newborn = True
        if outcome in (Outcome.FORWARDING, Outcome.ROTATED):
            self._touched = True
        self._state = State.STORED
        if fields is not None:
            self._snapshot = fields

    def _absent(self) -> None:
        """The store has no session for this object (gone, or a rotated sid that
        reads as unknown): a presented sid becomes newborn, a stored one ends."""
        if self._state is State.PRESENTED:
            self._become_newborn()
        elif self._state is State.STORED:
            self._end()

    def _end(self) -> None:
        self._state, self._snapshot = State.ENDED, {}

    def _emptied(self) -> None:
        """The last field went: nothing is stored, the next write creates the key."""
        self._state, self._snapshot = State.UNSTORED, {}

    def _bound(self) -> None:
        """The connection binding has been written."""
        if self._binding and self._connection is not None:
            self._connection._bound, self._binding = True, None

    def _destroyed(self) -> SessionDestroyed:
        return SessionDestroyed(f"session {redact(self.id)} was destroyed; nothing written")

    def _check_alive(self) -> None:
        if self._state is State.ENDED:
            raise self._destroyed()

    # -- what scripts take ------------------------------------------------------------

    def _ttl_seconds(self) -> int:
        return self.ttl_minutes * 60

    def _header(self) -> tuple[Arg, ...]:
        """The ARGV every session script starts with (``lib.lua`` session_header)."""
        return (self._manager.forward_since(),)

    def _binding_args(self, binding: tuple[str, str, str] | None = None) -> tuple[Arg, ...]:
        """The binding block of write/renew/disconnect (``lib.lua`` binding_args):
        ``binding``, else the one riding on this operation."""
        return binding or self._binding or ("", "", "")

    def _uid(self, fields: dict[str, str] | None = None) -> str | None:
        return self._manager.uid_of(self._snapshot if fields is None else fields)

    def _index_added(self, replacing: str = "") -> Any:
        """Cluster: this session, when logged in, in its user's index (a touch
        keeps the entry; ``replacing``: the sid it took over from), in a step
        after its script. A single node's scripts did it: nothing (the user
        JSON is not even parsed)."""
        index = self._manager.index
        return index.added(self._uid(), self.id, self._ttl_seconds(), replacing) \
            if index.upkeep else ()
