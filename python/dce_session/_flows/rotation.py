"""Self-regenerating sessions: ``try_renew`` (SEMANTICS Part 3).

The decision is Rust's (``renew_decision``: a pure function of the times,
the policy and the state a script reported); the scripts carry it out
atomically, re-checking the state it was made on:

* a due sid: ``rotate.lua`` loads and, when live, rotates in ONE round trip;
* a forwarding sid (rotated by another request, within grace): served by
  its successor, whose sid goes out (that same round trip);
* a superseded sid (grace over): the judgment, ``judge.lua``, a second round
  trip - compare-and-set on the pointer, so concurrent judges all end on the
  first one's outcome.
"""

from __future__ import annotations

from dce_session._core import RenewDecision, Stored, renew_decision, session_key
from dce_session._flows.calls import Flow, Found, Outcome, ScriptCall
from dce_session._flows.state import State
from dce_session._flows.user import UserFlows
from dce_session.errors import ConfigError, StoreError

#: Decisions before giving up (each one a round trip at most): a load, a
#: rotation or judgment, and a second judgment after losing a race.
_ROUNDS = 5


class RotationFlows(UserFlows):
    """The flow of ``try_renew``."""

    __slots__ = ()

    def _try_renew_flow(self) -> Flow[bool]:
        manager, policy = self._manager, self._manager.renew
        if policy is None:
            raise ConfigError("try_renew() needs SessionManager(renew=RenewPolicy(...))")
        self._check_alive()
        if self._state is State.UNSTORED:
            return True if self.newborn else self.id != self._presented
        stored: Stored | None = Stored.LIVE if self._state is State.STORED else None
        found: Found | None = None
        for _ in range(_ROUNDS):
            idle = successor_idle = 0
            if found is not None and found.outcome is Outcome.SUPERSEDED:
                idle = max(self._ttl_seconds() - found.remaining, 0)
                successor_idle = max(self._ttl_seconds() - found.successor_remaining, 0)
            decision = renew_decision(
                policy.interval_seconds, policy.original_judgment_seconds,
                policy.cloned_inactive_judgment_seconds, manager.now(), self.created_at,
                idle, stored, successor_idle)
            match decision:
                case RenewDecision.KEEP if self._state is State.PRESENTED:
                    found = yield from self._load_flow(True, judging=True)
                case RenewDecision.KEEP:
                    return self.id != self._presented
                case RenewDecision.ROTATE:
                    new_sid = manager.fresh_sid(self.ttl_minutes, self.key)
                    found = Found.parse((yield ScriptCall(
                        manager.scripts.rotate, (self.key, session_key(manager.sid_name, new_sid)),
                        (*self._header(), new_sid))))
                    if found.outcome is Outcome.ROTATED:
                        yield from self._rotated(found, self.id)
                        return True
                case RenewDecision.FOLLOW:
                    if found is not None:
                        self._arrived(found.outcome, found.sid, found.fields)
                    return True
                case RenewDecision.DESTROY | RenewDecision.REISSUE:
                    assert found is not None
                    assert found.sid is not None
                    successor = found.sid
                    found = yield from self._judge_flow(decision, successor)
                    if found.outcome is Outcome.ROTATED:
                        yield from self._rotated(found, successor)
                        return True
                case RenewDecision.REFUSE:
                    self._end()
                    raise self._destroyed()
                case RenewDecision.NEWBORN:
                    self._absent()
                    if self._state is State.ENDED:
                        raise self._destroyed()
                    return True
                case _:
                    raise AssertionError(f"impossible rotation decision {decision!r}")
            stored = None if found is None else found.outcome.stored
        raise StoreError("the session kept being rotated by other requests; try again")

    def _judge_flow(self, decision: RenewDecision, pointer: str) -> Flow[Found]:
        """Carry out a judgment of this superseded sid (``judge.lua``)."""
        manager = self._manager
        action = "destroy" if decision == RenewDecision.DESTROY else "reissue"
        new_sid = manager.fresh_sid(self.ttl_minutes, self.key)
        return Found.parse((yield ScriptCall(
            manager.scripts.judge, (self.key, session_key(manager.sid_name, new_sid)),
            (*self._header(), action, pointer, new_sid))))

    def _rotated(self, found: Found, replaced: str) -> Flow[None]:
        """This object now holds the new session a rotation or reissue made
        (``replaced``: the sid whose data moved, which leaves the index)."""
        self._arrived(Outcome.ROTATED, found.sid, found.fields)
        yield from self._index_added(replaced)
