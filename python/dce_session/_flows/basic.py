"""Basic sessions: load, read, write, touch, destroy (SEMANTICS Part 1 and 3).

Every flow acts through the presented key's lifecycle state as its script
found it: a live key, or the successor of a forwarding one (SEMANTICS 3.1);
anything else reads as unknown (``State.PRESENTED`` becomes newborn) or, for
an object that had found it stored, as ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dce_session._core import session_key
from dce_session._flows.calls import (
    Flow,
    Found,
    Outcome,
    Removed,
    ScriptCall,
    Touched,
    Written,
    decode_value,
)
from dce_session._flows.settings import check_field, checked_mapping
from dce_session._flows.state import SessionState, State
from dce_session.errors import SerializationError

_WRITE_MODE = {State.STORED: "existing", State.PRESENTED: "fallback", State.UNSTORED: "create"}


class BasicFlows(SessionState):
    """The flows of a basic session."""

    __slots__ = ()

    def _settle_found(self, found: Found, touch: bool, judging: bool = False) -> Flow[bool]:
        """Settle this object on what a load found; True when a session was.
        ``judging`` (try_renew): a rotated sid is left to the judgment."""
        if not found.outcome.acted:
            self.replaced = self.replaced or found.replaced
            if not judging or found.outcome is Outcome.GONE:
                self._absent()
            return False
        self._arrived(found.outcome, found.sid, found.fields)
        if touch and found.outcome is Outcome.LIVE:
            self._touched = True
            yield from self._index_added()
        return True

    def _load_flow(self, touch: bool, judging: bool = False) -> Flow[Found]:
        found = Found.parse((yield ScriptCall(self._manager.scripts.open, (self.key,),
                                              (*self._header(), int(touch)))))
        yield from self._settle_found(found, touch, judging)
        return found

    def _fields_flow(self, touch: bool) -> Flow[dict[str, str]]:
        """The snapshot, loading it (one round trip) or touching once as needed."""
        if self._binding:  # a connection's binding rides on its first request's first operation
            yield from self._write_flow([], [], touch)
        elif self._snapshot is None:  # touched already (or forwarded): a load without
            yield from self._load_flow(touch and not self._touched)
        elif touch and self._state is State.STORED and not self._touched:
            yield from self._touch_flow()
        if self._snapshot is None:  # a touch forwarded to the successor: read it
            yield from self._load_flow(False)
        assert self._snapshot is not None
        return self._snapshot

    def _get_flow(self, field: object, default: Any, touch: bool) -> Flow[Any]:
        name = check_field(field)
        raw = (yield from self._fields_flow(touch)).get(name)
        return default if raw is None else decode_value(raw)

    def _raw_flow(self) -> Flow[dict[str, str]]:
        return dict((yield from self._fields_flow(False)))

    def _data_flow(self) -> Flow[dict[str, Any]]:
        fields = yield from self._fields_flow(True)
        hidden = self._manager.bookkeeping
        return {name: decode_value(raw) for name, raw in fields.items() if name not in hidden}

    def _unwritten_newborn(self) -> bool:
        """A newborn of our own fresh sid that nothing wrote yet: no key can exist
        (a connection's newborn shares its sid with other request objects)."""
        return self.newborn and self._state is State.UNSTORED and self._connection is None

    def _touch_flow(self) -> Flow[bool]:
        if self._binding:  # a connection's first request: the binding rides along
            self._touched = False
            yield from self._write_flow([], [], True)
            return self._state is State.STORED
        if self._unwritten_newborn():
            return False
        touched = Touched.parse((yield ScriptCall(self._manager.scripts.touch, (self.key,),
                                                  self._header())))
        self._touched = True
        if not touched.outcome.acted:
            self._absent()
            return False
        forwarded = touched.sid != self.id
        self._arrived(touched.outcome, touched.sid, None)
        if forwarded:
            self._snapshot = None  # the snapshot was the old sid's: reload on the next read
        if touched.outcome is Outcome.LIVE:
            yield from self._index_added()
        return True

    def _write_flow(self, pairs: list[str], deletions: list[str], touch: bool,
                    counted: bool = False) -> Flow[int]:
        """HSET ``pairs`` and HDEL ``deletions`` in one step; how many were deleted
        (``counted``: the caller returns that count, so a replay must see it)."""
        self._check_alive()
        if self._state is State.UNSTORED and not pairs and not self._binding:
            return 0  # nothing stored, nothing to delete
        manager = self._manager
        # A lone binding (a connection's first read) never creates a session
        # for a presented sid the store does not hold.
        lone_binding = not pairs and not deletions and self._state is State.PRESENTED
        mode = "existing" if lone_binding else _WRITE_MODE[self._state]
        fallback = manager.fresh_sid(manager.ttl_minutes, self.key) if mode == "fallback" else ""
        wants_touch = touch and not self._touched
        asked = self._snapshot is None or self._binding is not None
        record = manager.replay_record(self.key) if counted else ""
        keys = (self.key, session_key(manager.sid_name, fallback)) if fallback else (self.key,)
        if mode == "create" and not deletions and self._binding is None:
            call = ScriptCall(manager.scripts.create, keys, tuple(pairs))  # HSET + EXPIRE only
        else:
            call = ScriptCall(manager.scripts.write, keys, (
                *self._header(), mode, fallback, int(wants_touch), int(asked), record,
                *self._binding_args(), len(pairs) // 2, *pairs, *deletions))
        written = Written.parse((yield call), asked)
        if not written.outcome.acted:
            if lone_binding:
                self._absent()  # unknown: newborn, and the binding rides on its next write
                return 0
            self._end()
            raise self._destroyed()
        before = self._snapshot
        self._arrived(written.outcome, written.sid, written.fields)
        self.replaced = self.replaced or written.replaced
        if written.fields is None and before is not None:
            before.update(zip(pairs[::2], pairs[1::2], strict=True))
            for field in deletions:
                before.pop(field, None)
        if not written.exists:
            self._emptied()
        self._touched = self._touched or touch or mode == "create" \
            or written.outcome is Outcome.FALLBACK
        self._bound()
        if wants_touch and written.exists and written.outcome is not Outcome.FORWARDING:
            yield from self._index_added()
        return written.deleted

    def _set_flow(self, mapping: object, touch: bool,
                  deletions: Iterable[object] = ()) -> Flow[None]:
        pairs = self._manager.value_pairs(mapping)
        removals = self._manager.removals(deletions)
        if pairs or removals:
            yield from self._write_flow(pairs, removals, touch)

    def _load_raw_flow(self, mapping: Mapping[str, str]) -> Flow[None]:
        pairs: list[str] = []
        for field, value in checked_mapping(mapping).items():
            if not isinstance(value, str):
                raise SerializationError(f"load() takes str values, not {type(value).__name__}")
            pairs += (self._manager.writable(field), value)
        if pairs:
            yield from self._write_flow(pairs, [], False)

    def _delete_flow(self, field: object, touch: bool) -> Flow[bool]:
        return bool((yield from self._write_flow([], [self._manager.writable(field)], touch,
                                                 counted=True)))

    def _ttl_passed_flow(self) -> Flow[int | None]:
        if self._unwritten_newborn():
            return None
        found = Touched.parse((yield ScriptCall(self._manager.scripts.ttl, (self.key,),
                                                self._header())))
        if not found.outcome.acted:
            self._absent()
            return None
        if found.sid != self.id:
            self._snapshot = None  # the snapshot was the old sid's: reload on the next read
        self._arrived(found.outcome, found.sid, None)
        if found.remaining < 0:  # stored without a TTL (another writer's key): never idle
            return 0
        return max(self._ttl_seconds() - found.remaining, 0)

    def _destroy_flow(self) -> Flow[bool]:
        removed = Removed.parse((yield ScriptCall(
            self._manager.scripts.destroy, (self.key,),
            (*self._header(), self._manager.replay_record(self.key)))))
        self.replaced = self.replaced or removed.replaced
        if removed.done:
            self._end()
            yield from self._manager.index.removed(removed.uid, removed.sid or self.id)
        else:
            self._absent()  # never stored: nothing ended (an unknown sid settles as newborn)
        return removed.done
