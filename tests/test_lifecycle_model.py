"""A model-based test of SEMANTICS Part 3 (Hypothesis ``RuleBasedStateMachine``).

Random interleavings of open/get/set/update/delete/login/logout/regenerate/
try_renew/destroy/logout_everywhere/sync over several session objects (some
loaded long before others act) and several sids, with a controllable clock,
against a plain in-memory model of the lifecycle: which sids are live (and
their fields), which are rotated (and into what, when), which were judged.
Every rule predicts its outcome from the model and checks it; after every
step the invariants compare the whole store with the model: no acknowledged
write lost, no rotated or ended sid holding data or a user, every key with a
TTL, the index listing exactly the live logged-in sessions.

The blocking door only: the flows are shared by both doors (the asyncio
driver is a few lines, exercised by every other test module).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from dce_session import RenewPolicy, SessionManager
from dce_session.core import parse_sid, session_key
from dce_session.errors import SessionDestroyed
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

INTERVAL, GRACE, INACTIVE = 600, 120, 60
#: Interleavings per run (``MODEL_EXAMPLES=2000`` for a longer search).
EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "100"))
UIDS = [1, 2, 3]
FIELDS = ["a", "b", "c"]


def key(sid: str) -> str:
    return session_key("dcesid", sid)


def user_json(uid: int, version: int = 0) -> str:
    return json.dumps({"id": uid, "v": version}, separators=(",", ":"))


@dataclass
class Handle:
    """A session object and what the model says it knows."""

    session: Any
    state: str  # presented | unstored | stored | ended (dce_session._flows.state.State)


class Lifecycle(RuleBasedStateMachine):
    client: redis.Redis

    def __init__(self) -> None:
        super().__init__()
        self.client.flushdb()
        self.now = 1_800_000_000
        self.manager = SessionManager(self.client, renew=RenewPolicy(
            interval_seconds=INTERVAL, original_judgment_seconds=GRACE,
            cloned_inactive_judgment_seconds=INACTIVE), clock=lambda: self.now)
        self.live: dict[str, dict[str, str]] = {}
        self.rotated: dict[str, str] = {}  # old sid -> successor
        self.judged: set[str] = set()
        self.handles: list[Handle] = []
        self.known: list[str] = []  # every sid that was ever stored, for open()
        self.steps = 0

    # -- the model --------------------------------------------------------------------------

    def resolve(self, sid: str) -> tuple[str, str | None]:
        """SEMANTICS Part 3: the state of ``sid`` and the session an operation acts on."""
        if sid in self.live:
            return "live", sid
        if sid in self.rotated:
            successor = self.rotated[sid]
            if successor in self.live:
                if self.now - parse_sid(successor)[1] <= GRACE:
                    return "forwarding", successor
                return "superseded", successor
            return "ended", None
        if sid in self.judged:
            return "ended", None
        return "gone", None

    def target(self, handle: Handle) -> str | None:
        state, at = self.resolve(handle.session.id)
        return at if state in ("live", "forwarding") else None

    def store_live(self, sid: str, fields: dict[str, str]) -> None:
        if fields:
            self.live[sid] = fields
            if sid not in self.known:
                self.known.append(sid)
        else:
            self.live.pop(sid, None)

    def handle(self, index: int) -> Handle:
        return self.handles[index % len(self.handles)]

    # -- rules: making objects -------------------------------------------------------------

    @initialize()
    def two_users_with_loaded_requests(self) -> None:
        """Start from two logged-in sessions, each with a request that loaded it."""
        for uid in UIDS[:2]:
            session = self.manager.new()
            session.set("a", uid)
            sid = session.login({"id": uid, "v": 0})
            self.store_live(sid, {"a": json.dumps(uid), "$user": user_json(uid)})
            loaded = self.manager.open(sid)
            assert loaded.get("a") == uid
            self.handles += [Handle(session, "stored"), Handle(loaded, "stored")]

    @rule()
    def new(self) -> None:
        self.handles.append(Handle(self.manager.new(), "unstored"))

    @precondition(lambda self: self.known)
    @rule(index=st.integers(0, 50))
    def open_known(self, index: int) -> None:
        sid = self.known[index % len(self.known)]
        self.handles.append(Handle(self.manager.open(sid), "presented"))

    @precondition(lambda self: self.known)
    @rule(index=st.integers(0, 50))
    def fresh_read(self, index: int) -> None:
        """A new request reads a sid: the data of the session it resolves to, or nothing."""
        sid = self.known[index % len(self.known)]
        session = self.manager.open(sid)
        data = session.data()
        state, at = self.resolve(sid)
        event(f"fresh read of a {state} sid")
        if state in ("live", "forwarding"):
            assert session.id == at
            assert data == {k: json.loads(v) for k, v in self.live[at].items() if k != "$user"}
            expected = self.live[at].get("$user")
            assert session.user() == (None if expected is None else json.loads(expected))
        else:
            assert session.newborn
            assert data == {}
            assert session.user() is None

    # -- rules: writes ------------------------------------------------------------------------

    def write(self, handle: Handle, sets: dict[str, int], deletions: list[str]) -> None:
        at = self.target(handle)
        session = handle.session
        event(f"write by a {handle.state} object to a {self.resolve(session.id)[0]} sid")
        if not sets and not deletions:
            session.update(sets)  # nothing to write: no store call
            return
        if handle.state == "ended" or (handle.state == "stored" and at is None):
            with pytest.raises(SessionDestroyed):
                session.update(sets, delete=deletions)
            handle.state = "ended"
            return
        if handle.state == "unstored" and not sets:
            session.update(sets, delete=deletions)  # nothing stored: nothing to do
            return
        session.update(sets, delete=deletions)
        if at is None:  # a presented sid unknown to the store (newborn) or a newborn's own key
            assert handle.state == "unstored" or session.newborn
            fields: dict[str, str] = {}
        else:
            assert session.id == at
            fields = self.live[at]
        fields = {**fields, **{k: json.dumps(v) for k, v in sets.items()}}
        for field in deletions:
            fields.pop(field, None)
        self.store_live(session.id, fields)
        handle.state = "stored" if fields else "unstored"

    @precondition(lambda self: self.handles)
    @rule(index=st.integers(0, 50), field=st.sampled_from(FIELDS), value=st.integers(0, 9))
    def set(self, index: int, field: str, value: int) -> None:
        self.write(self.handle(index), {field: value}, [])

    @precondition(lambda self: self.handles)
    @rule(index=st.integers(0, 50),
          sets=st.dictionaries(st.sampled_from(FIELDS), st.integers(0, 9), max_size=2),
          deletions=st.lists(st.sampled_from(FIELDS), max_size=2, unique=True))
    def update(self, index: int, sets: dict[str, int], deletions: list[str]) -> None:
        self.write(self.handle(index), {k: v for k, v in sets.items() if k not in deletions},
                   deletions)

    # -- rules: users ------------------------------------------------------------------------

    @precondition(lambda self: self.handles)
    @rule(index=st.integers(0, 50), uid=st.sampled_from(UIDS))
    def login(self, index: int, uid: int) -> None:
        handle = self.handle(index)
        at = self.target(handle)
        presented = handle.session.id
        if handle.state == "ended" or (handle.state == "stored" and at is None):
            with pytest.raises(SessionDestroyed):
                handle.session.login({"id": uid, "v": 0})
            handle.state = "ended"
            return
        new = handle.session.login({"id": uid, "v": 0})
        assert new == handle.session.id != presented
        fields = dict(self.live.pop(at, {})) if at is not None else {}
        if at is not None and at != presented:
            del self.rotated[presented]  # login through a forwarding sid ends it too
        fields["$user"] = user_json(uid)
        self.store_live(new, fields)
        handle.state = "stored"

    @precondition(lambda self: self.handles)
    @rule(index=st.integers(0, 50))
    def logout(self, index: int) -> None:
        handle = self.handle(index)
        at = self.target(handle)
        if handle.state == "ended" or (handle.state == "stored" and at is None):
            with pytest.raises(SessionDestroyed):  # a write, as any other
                handle.session.logout()
            handle.state = "ended"
            return
        if handle.state == "unstored":
            assert handle.session.logout() is False
            return
        was_in = at is not None and "$user" in self.live[at]
        assert handle.session.logout() is was_in
        if at is None:
            handle.state = "unstored"
            return
        assert handle.session.id == at
        fields = {k: v for k, v in self.live[at].items() if k != "$user"}
        self.store_live(at, fields)
        handle.state = "stored" if fields else "unstored"

    @precondition(lambda self: self.handles)
    @rule(index=st.integers(0, 50))
    def regenerate(self, index: int) -> None:
        handle = self.handle(index)
        at = self.target(handle)
        if handle.state == "ended" or (handle.state == "stored" and at is None):
            with pytest.raises(SessionDestroyed):
                handle.session.regenerate()
            handle.state = "ended"
            return
        new = handle.session.regenerate()
        fields = dict(self.live[at]) if at is not None else {}
        self.store_live(new, fields)
        handle.state = "stored" if fields else "unstored"

    @precondition(lambda self: self.handles)
    @rule(index=st.integers(0, 50))
    def destroy(self, index: int) -> None:
        handle = self.handle(index)
        at = self.target(handle)
        presented = handle.session.id
        assert handle.session.destroy() is (at is not None)
        if at is not None:
            del self.live[at]
            if at != presented:
                del self.rotated[presented]
            handle.state = "ended"
        elif handle.state == "stored":
            handle.state = "ended"
        elif handle.state == "presented":
            handle.state = "unstored"
            assert handle.session.newborn

    @precondition(lambda self: self.known)
    @rule(index=st.integers(0, 50))
    def request_with_renew(self, index: int) -> None:
        """A new request presenting a known sid runs try_renew first (as the
        integrations do); it stays around as a loaded object."""
        handle = Handle(self.manager.open(self.known[index % len(self.known)]), "presented")
        self.handles.append(handle)
        self.renew(handle)

    @precondition(lambda self: self.handles)
    @rule(index=st.integers(0, 50))
    def rotate_under(self, index: int) -> None:
        """Another request rotates the sid an existing object holds (it is due)."""
        held = self.handle(index).session.id
        self.now += INTERVAL
        handle = Handle(self.manager.open(held), "presented")
        self.handles.append(handle)
        self.renew(handle)

    @precondition(lambda self: self.handles)
    @rule(index=st.integers(0, 50), field=st.sampled_from(FIELDS), value=st.integers(0, 9))
    def straddling_write(self, index: int, field: str, value: int) -> None:
        """An object writes after another request rotated its sid (SEMANTICS 3.1)."""
        handle = self.handle(index)
        self.rotate_under(index)
        self.write(handle, {field: value}, [])

    @precondition(lambda self: self.handles)
    @rule(index=st.integers(0, 50))
    def try_renew(self, index: int) -> None:
        self.renew(self.handle(index))

    def renew(self, handle: Handle) -> None:
        session = handle.session
        if handle.state == "ended":
            with pytest.raises(SessionDestroyed):
                session.try_renew()
            return
        if handle.state == "unstored":
            assert isinstance(session.try_renew(), bool)
            return
        presented = session.id
        due = self.now - session.created_at >= INTERVAL
        if handle.state == "stored" and not due:
            session.try_renew()  # the object knows it is live and young: no store call
            return
        state, at = self.resolve(presented)
        event(f"try_renew on a {state} sid")
        if state == "live" and not due:
            assert session.try_renew() is False
            handle.state = "stored"
        elif state == "live":
            assert session.try_renew() is True
            self.live[session.id] = self.live.pop(presented)
            self.known.append(session.id)
            self.rotated[presented] = session.id
            handle.state = "stored"
        elif state == "forwarding":
            assert session.try_renew() is True
            assert session.id == at
            handle.state = "stored"
        elif state == "superseded":
            try:
                assert session.try_renew() is True
            except SessionDestroyed:  # the client moved on (real idle times decide)
                del self.rotated[presented]
                self.judged.add(presented)
                handle.state = "ended"
            else:
                assert at is not None
                self.live[session.id] = self.live.pop(at)
                self.known.append(session.id)
                self.rotated[presented] = session.id
                handle.state = "stored"
        elif state == "ended" or handle.state == "stored":
            with pytest.raises(SessionDestroyed):
                session.try_renew()
            handle.state = "ended"
        else:  # gone, presented: newborn
            assert session.try_renew() is True
            assert session.newborn
            handle.state = "unstored"

    # -- rules: the manager ---------------------------------------------------------------

    def sessions_of_model(self, uid: int) -> set[str]:
        return {sid for sid, fields in self.live.items()
                if "$user" in fields and json.loads(fields["$user"])["id"] == uid}

    @rule(uid=st.sampled_from(UIDS))
    def logout_everywhere(self, uid: int) -> None:
        ended = self.sessions_of_model(uid)
        assert self.manager.logout_everywhere(uid) == len(ended)
        for sid in ended:
            del self.live[sid]

    @rule(uid=st.sampled_from(UIDS), version=st.integers(1, 9))
    def sync(self, uid: int, version: int) -> None:
        synced = self.sessions_of_model(uid)
        assert self.manager.sync({"id": uid, "v": version}) == len(synced)
        for sid in synced:
            self.live[sid]["$user"] = user_json(uid, version)

    @rule(seconds=st.sampled_from([1, 30, GRACE, GRACE + 1]))
    def advance(self, seconds: int) -> None:
        self.now += seconds

    @rule()
    def advance_an_interval(self) -> None:
        self.now += INTERVAL

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def the_store_is_the_model(self) -> None:
        self.steps += 1
        client = self.client
        for sid, fields in self.live.items():
            assert client.hgetall(key(sid)) == fields, "an acknowledged write was lost"
        for old, successor in self.rotated.items():
            assert client.hgetall(key(old)) == {"$newid": successor}, \
                "a rotated sid holds data"
        for sid in self.judged:
            assert client.hgetall(key(sid)) == {"$newid": ""}
        expected = {key(sid) for sid in (*self.live, *self.rotated, *self.judged)}
        assert set(client.keys("dcesid:*")) == expected, "a key was adopted or resurrected"
        for name in client.keys("dce*"):
            assert client.ttl(name) > 0, f"{name} has no TTL"

    @invariant()
    def the_index_lists_the_live_logged_in_sessions(self) -> None:
        for uid in UIDS:
            assert set(self.manager.sessions_of(uid)) == self.sessions_of_model(uid)
            assert self.client.smembers(f"dceusmap:{uid}") == self.sessions_of_model(uid)


def test_the_lifecycle_against_its_model(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        Lifecycle.client = client
        run_state_machine_as_test(Lifecycle, settings=settings(
            max_examples=EXAMPLES, stateful_step_count=50, deadline=None,
            suppress_health_check=[HealthCheck.too_slow]))
