"""User sessions and regeneration: login (always a fresh sid), auto_login,
logout, the logged-in user (SEMANTICS Part 1, 3.4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dce_session._core import session_key
from dce_session._flows.basic import BasicFlows
from dce_session._flows.calls import (
    Flow,
    Outcome,
    Removed,
    Renewed,
    RenewStatus,
    ScriptCall,
    decode_value,
)
from dce_session._flows.settings import check_ttl, checked_mapping
from dce_session._flows.state import State
from dce_session.errors import NotLoggedIn


class UserFlows(BasicFlows):
    """The flows of user sessions and regeneration."""

    __slots__ = ()

    def _renew_flow(self, pairs: list[str], removals: list[str], ttl_minutes: int | None,
                    destroy_old: bool, needs_user: bool) -> Flow[str]:
        """Copy the session under a fresh sid (see ``_lua/renew.lua``)."""
        self._check_alive()
        if needs_user and self._state is State.UNSTORED:
            raise NotLoggedIn("auto_login() needs a logged-in session")
        ttl = self.ttl_minutes if ttl_minutes is None else check_ttl(ttl_minutes)
        manager = self._manager
        presented = self._state is State.PRESENTED
        # A presented sid's ttl is the client's word until the store knows the sid:
        # one that differs from ours is only kept for a session found stored.
        guarded = presented and ttl_minutes is None and ttl != manager.ttl_minutes
        new_sid = manager.fresh_sid(ttl, self.key)
        connection = self._connection
        moving = None if destroy_old or connection is None else \
            (connection.binding_id, connection.server, connection.client or "")
        renewed = Renewed.parse((yield ScriptCall(
            manager.scripts.renew, (self.key, session_key(manager.sid_name, new_sid)),
            (*self._header(), new_sid, int(self._state is State.STORED or guarded),
             int(destroy_old), int(needs_user),
             *self._binding_args(moving), len(pairs) // 2,
             *pairs, *removals))))
        found = renewed.outcome in (Outcome.LIVE, Outcome.FORWARDING)
        if not found and renewed.status is not RenewStatus.REQUIRED_GONE:
            self._absent()  # unknown: never adopted (a presented sid settles as newborn)
        if renewed.status is RenewStatus.REQUIRED_GONE:
            if presented:  # unknown: a newborn's renewal, of our own ttl
                self._absent()
                return (yield from self._renew_flow(pairs, removals, ttl_minutes,
                                                    destroy_old, needs_user))
            self._end()
            raise self._destroyed()
        if renewed.status is RenewStatus.NO_USER:
            raise NotLoggedIn("auto_login() needs a logged-in session")
        if destroy_old and found:
            yield from manager.index.removed(renewed.old_uid, renewed.old_sid or self.id)
        if renewed.status is RenewStatus.NOTHING_TO_WRITE:
            self._adopt(new_sid)
            self._emptied()
        else:
            self._arrived(Outcome.ROTATED, new_sid, renewed.fields)
            self._bound()
            yield from self._index_added()
        return new_sid

    def _changes(self, changes: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
        """``(field/JSON pairs to set, fields to remove)`` of a ``changes`` mapping
        (a value of None removes; every field checked)."""
        changes = dict(checked_mapping(changes) if changes is not None else {})
        manager = self._manager
        removals = [manager.writable(field) for field, value in changes.items() if value is None]
        pairs = manager.value_pairs({field: value for field, value in changes.items()
                                     if value is not None})
        return pairs, removals

    def _regenerate_flow(self, changes: Mapping[str, Any] | None, destroy_old: bool,
                         ttl_minutes: int | None) -> Flow[str]:
        pairs, removals = self._changes(changes)
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
        uid = None if document is None else document.get(self._manager.uid_field)
        valid = isinstance(uid, int) and not isinstance(uid, bool) and 0 <= uid < 2**64
        return uid if valid else None  # another writer's id out of the uid range: none

    def _login_flow(self, user: object, ttl_minutes: int | None,
                    changes: Mapping[str, Any] | None) -> Flow[str]:
        _, document = self._manager.user_document(user)
        if ttl_minutes is not None:
            check_ttl(ttl_minutes)
        pairs, removals = self._changes(changes)
        return (yield from self._renew_flow([self._manager.user_field, document, *pairs],
                                            removals, ttl_minutes, destroy_old=True,
                                            needs_user=False))

    def _auto_login_flow(self) -> Flow[str]:
        return (yield from self._renew_flow([], [], None, destroy_old=True, needs_user=True))

    def _logout_flow(self) -> Flow[bool]:
        self._check_alive()
        if self._state is State.UNSTORED:
            return False
        manager = self._manager
        removed = Removed.parse((yield ScriptCall(
            manager.scripts.logout, (self.key,),
            (*self._header(), manager.replay_record(self.key)))))
        self.replaced = self.replaced or removed.replaced
        if removed.outcome not in (Outcome.LIVE, Outcome.FORWARDING):
            ended_meanwhile = self._state is State.STORED
            self._absent()
            if ended_meanwhile:  # a write, as any other, on a session found stored
                raise self._destroyed()
            return False
        forwarded = removed.sid != self.id
        self._arrived(removed.outcome, removed.sid, None)
        if forwarded:
            self._snapshot = None
        elif self._snapshot is not None:
            self._snapshot.pop(manager.user_field, None)
        if not removed.exists:
            self._emptied()  # it held only the user: the next write creates it again
        if removed.done:
            yield from manager.index.removed(removed.uid, self.id)
        return removed.done
