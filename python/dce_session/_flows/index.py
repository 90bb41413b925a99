"""The user index (``dceusmap:<uid>``): its upkeep steps and the manager-wide
flows over it (sessions_of, sync, logout_everywhere, connections_of).

On a single node every script keeps the index itself, in the same step as
the session; on a Redis Cluster the index lies in another hash slot, so
:class:`ClusterIndexSteps` adds the ordered extra steps. A flow calls the
steps unconditionally; the manager picks the implementation once.
"""

from __future__ import annotations

import functools
import logging

from dce_session._core import session_key
from dce_session._flows.calls import (
    Checked,
    Command,
    Flow,
    Pipeline,
    ScriptCall,
    batch,
    text,
)
from dce_session._flows.connection import bindings_of, present
from dce_session._flows.settings import Settings, redact, uid_text
from dce_session._scripts import Script
from dce_session.errors import StoreError

log = logging.getLogger("dce_session")

Connections = list[tuple[str, str, str | None]]


class IndexSteps:
    """Single node: the scripts keep the index in the session's own step, so
    the upkeep steps are no-ops, and each index flow is one script."""

    #: The upkeep steps send something (a session's touch asks for them).
    upkeep = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def added(self, uid: str | None, sid: str, ttl_seconds: int,
              replacing: str = "") -> Flow[None]:
        """``sid`` (a live session of ``uid``) is in the index, instead of
        ``replacing`` (a rotation's old sid) when given."""
        return
        yield  # a flow that yields nothing

    def removed(self, uid: str | None, *sids: str) -> Flow[None]:
        """``sids`` are no longer sessions of ``uid``."""
        return
        yield

    def _call(self, script: Script, uid: str, *extra: str) -> ScriptCall:
        return ScriptCall(script, (f"{self.settings.user_prefix}:{uid}",), (uid, *extra))

    def sessions_of(self, uid: str) -> Flow[list[str]]:
        return [text(sid) for sid in (yield self._call(self.settings.scripts.sessions_of, uid))]

    def sync(self, uid: str, document: str) -> Flow[int]:
        return int((yield self._call(self.settings.scripts.sync, uid, document)))

    def logout_everywhere(self, uid: str) -> Flow[int]:
        record = self.settings.replay_record(f"{self.settings.user_prefix}:{uid}")
        return int((yield self._call(self.settings.scripts.logout_everywhere, uid, record)))

    def connections_of(self, uid: str) -> Flow[Connections]:
        s = self.settings
        flat, presence = yield from batch([
            self._call(s.scripts.connections_of, uid), self._presence()])
        for reply in (flat, presence):
            if isinstance(reply, StoreError):
                raise reply
        listed = [connection for sid, raw, server, client in zip(
                      flat[::4], flat[1::4], flat[2::4], flat[3::4], strict=True)
                  for connection in bindings_of(text(sid), raw, server, client)]
        return present(listed, presence, s.now())

    def _presence(self) -> Command:
        return Command(("ZRANGE", self.settings.presence_key, 0, -1, "WITHSCORES"))


def _twice(call: ScriptCall | Command) -> Flow[None]:
    """``call``, sent once more if it fails: index upkeep is idempotent, and a
    cluster fault (a connection the client itself dropped while refreshing
    its slot map, a failover) often passes on the second try."""
    try:
        yield call
    except StoreError:
        yield call


class ClusterIndexSteps(IndexSteps):
    """Redis Cluster: the index is updated in its own round trips, after the
    session's own step - the new sid added once its session is written (and
    re-added by a touch), the old sid removed once it is gone. The index is
    another slot, maybe another node: upkeep that fails twice is skipped with a
    WARNING on the ``dce_session`` logger, never failing the session's
    operation; what it leaves (a dead sid listed, a live one not yet) is
    healed by the index flows' pruning and the next touch. The index flows
    run in at most three round trips per node (see :meth:`_each`)."""

    upkeep = True

    def added(self, uid: str | None, sid: str, ttl_seconds: int,
              replacing: str = "") -> Flow[None]:
        if uid is not None:
            s = self.settings
            try:
                yield from _twice(ScriptCall(s.scripts.index_add, (f"{s.user_prefix}:{uid}",),
                                             (sid, ttl_seconds, replacing)))
            except StoreError as error:
                log.warning("user index of uid %s unavailable: session %s not listed until its "
                            "next touch (%s)", uid, redact(sid), error)

    def removed(self, uid: str | None, *sids: str) -> Flow[None]:
        if uid is not None and sids:
            try:
                yield from _twice(Command(("SREM", f"{self.settings.user_prefix}:{uid}", *sids)))
            except StoreError as error:
                log.warning("user index of uid %s unavailable: %d ended session(s) stay listed "
                            "until pruned (%s)", uid, len(sids), error)

    def _each(self, uid: str, action: str, *extra: str) -> Flow[list[tuple[str, Checked]]]:
        """SMEMBERS the index (1 round trip); one script per listed session,
        all in one pipeline (1 round trip per node: check it is still a live
        session of that uid, then act); SREM the sids found dead or logged
        out (1). ``(sid, Checked)`` of the live ones. The steps that failed
        are sent once more (one more round trip per node concerned; acting
        again changes nothing, though a step whose reply was lost after it
        ran is then counted as gone). A
        session whose node failed twice is neither acted on nor pruned:
        ``StoreError`` for the actions (sync, logout) after the rest is
        done, a WARNING for the checks."""
        s = self.settings
        index = f"{s.user_prefix}:{uid}"
        sids = sorted(text(sid) for sid in (yield Command(("SMEMBERS", index))))
        steps: list[ScriptCall | Command] = [ScriptCall(
            s.scripts.each_session, (session_key(s.sid_name, sid),),
            (uid, sid, action, *extra)) for sid in sids]
        replies = (yield from batch(steps)) if steps else []
        again = [at for at, reply in enumerate(replies) if isinstance(reply, StoreError)]
        if again:  # once more (the client has re-read the slot map): a failover, a reconnect
            for at, reply in zip(again, (yield from batch([steps[at] for at in again])),
                                 strict=True):
                replies[at] = reply
        live: list[tuple[str, Checked]] = []
        gone: list[str] = []
        failed: list[StoreError] = []
        for sid, reply in zip(sids, replies, strict=True):
            if isinstance(reply, StoreError):
                failed.append(reply)
                continue
            checked = Checked.parse(reply)
            if checked.live:
                live.append((sid, checked))
            if not checked.live or action == "logout":
                gone.append(sid)
        if gone:
            slices = range(0, len(gone), 1000)
            yield Pipeline(tuple(("SREM", index, *gone[first:first + 1000]) for first in slices),
                           (index,) * len(slices))
        if failed and action in ("sync", "logout"):
            raise StoreError(f"{action} reached {len(live)} session(s) of uid {uid}; "
                             f"{len(failed)} could not be reached: {failed[0]}") \
                from failed[0].__cause__
        if failed:
            log.warning("uid %s: %d session(s) could not be checked and are left out (%s)",
                        uid, len(failed), failed[0])
        return live

    def sessions_of(self, uid: str) -> Flow[list[str]]:
        return [sid for sid, _ in (yield from self._each(uid, "check"))]

    def sync(self, uid: str, document: str) -> Flow[int]:
        return len((yield from self._each(uid, "sync", document)))

    def logout_everywhere(self, uid: str) -> Flow[int]:
        return len((yield from self._each(uid, "logout")))

    def connections_of(self, uid: str) -> Flow[Connections]:
        s = self.settings
        live = yield from self._each(uid, "connections")
        presence = yield self._presence()
        listed = [connection for sid, checked in live for connection in bindings_of(
            sid, checked.bindings, checked.server, checked.client)]
        return present(listed, presence, s.now())


class ManagerCore(Settings):
    """Settings, the index steps and the manager-wide flows; the drivers add the client."""

    @functools.cached_property
    def index(self) -> IndexSteps:
        """The user index's upkeep and flows, chosen once for the client's kind."""
        return ClusterIndexSteps(self) if self.cluster else IndexSteps(self)

    def _sessions_of_flow(self, uid: object) -> Flow[list[str]]:
        return (yield from self.index.sessions_of(uid_text(uid)))

    def _sync_flow(self, user: object) -> Flow[int]:
        return (yield from self.index.sync(*self.user_document(user)))

    def _logout_everywhere_flow(self, uid: object) -> Flow[int]:
        return (yield from self.index.logout_everywhere(uid_text(uid)))

    def _connections_of_flow(self, uid: object) -> Flow[Connections]:
        return (yield from self.index.connections_of(uid_text(uid)))
