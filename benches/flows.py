"""The request flows and their floors: what ``bench_flows.py`` and
``bench_scaling.py`` measure, written once for both doors.

**The floor** of a flow is bare redis-py (+hiredis) doing the same job in
ONE round trip with the fewest commands: a pipeline where the client knows
every key, one MULTI/EXEC where the job must not be seen half done (a
login), a tiny Lua script where the keys depend on what is stored (the
user's index key is read from the session). The floor gets the fastest sid
we have (``dce_session.core.generate_sid``) and bare ``json.dumps`` /
``json.loads``, and it checks nothing. Each flow's ``floor_does`` says what
its floor sends and ``ours_adds`` what ours does on top, and why.

Every flow is a :class:`Flow`: ``sides(door)`` gives ``Side`` objects for
``paired.Rig``; the sides of one flow are checked by the same ``check``, so
ours and the floor must leave the same store behind and return the same
answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dce_session
import dce_session.asyncio
import redis
from dce_session.core import generate_sid, parse_sid

from benches.paired import Side
from benches.pure_python import NaiveSessionManager

TTL = 3600  # seconds: the default ttl of 60 minutes
MAPPING_TTL = 604800  # the user index' TTL floor (mapping_ttl_seconds)
UID = 42
USER = {"id": UID, "name": "Zoë"}
CART = [{"sku": f"SKU-{i}", "qty": i + 1, "price": 4.5} for i in range(5)]
RENEW = dce_session.RenewPolicy(interval_seconds=600)
DUE_AGE = 1000  # seconds: older than RENEW's interval, so try_renew rotates


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


CART_JSON = dumps(CART)
LOCALE_JSON = dumps("de-AT")
USER_JSON = dumps(USER)


def key(sid: str) -> str:
    return f"dcesid:{sid}"


def index(uid: int = UID) -> str:
    return f"dceusmap:{uid}"


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- seeding (untimed): sessions exactly as ours stores them -------------------------

def seed(stats: redis.Redis, count: int, *, user: bool = True, uid: int = UID,
         due: bool = False) -> list[str]:
    """``count`` stored sessions (cart + locale, and the user when ``user``),
    in the wire format ours writes; ``due``: sids old enough to rotate."""
    created = int(time.time()) - DUE_AGE if due else None
    sids = [generate_sid(60, created) for _ in range(count)]
    user_json = dumps({**USER, "id": uid})
    for first in range(0, count, 1000):
        with stats.pipeline(transaction=False) as pipe:
            for sid in sids[first:first + 1000]:
                fields = {"cart": CART_JSON, "locale": LOCALE_JSON}
                if user:
                    fields["$user"] = user_json
                pipe.hset(key(sid), mapping=fields)
                pipe.expire(key(sid), TTL)
            if user:
                pipe.sadd(index(uid), *sids[first:first + 1000])
                pipe.expire(index(uid), MAPPING_TTL)
            pipe.execute()
    return sids


def stored(stats: redis.Redis, sid: str) -> dict[str, str]:
    return {text(k): text(v) for k, v in stats.hgetall(key(sid)).items()}


def full_ttl(stats: redis.Redis, name: str, ttl: int = TTL) -> bool:
    return ttl - 5 <= stats.ttl(name) <= ttl


def members(stats: redis.Redis, uid: int = UID) -> set[str]:
    return {text(sid) for sid in stats.smembers(index(uid))}


# -- the floors' scripts ------------------------------------------------------------

FLOOR_LUA = {
    # KEYS session; ARGV user field, index prefix, sid
    "logout": """
local user = redis.call('HGET', KEYS[1], ARGV[1])
if not user then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', ARGV[2] .. ':' .. cjson.decode(user).id, ARGV[3])
return 1""",
    # KEYS session; ARGV user field, index prefix, sid
    "destroy": """
local user = redis.call('HGET', KEYS[1], ARGV[1])
local gone = redis.call('DEL', KEYS[1])
if user then redis.call('SREM', ARGV[2] .. ':' .. cjson.decode(user).id, ARGV[3]) end
return gone""",
    # KEYS old, new; ARGV user field, index prefix, new sid, ttl, index ttl
    "regenerate": """
local user = redis.call('HGET', KEYS[1], ARGV[1])
if redis.call('COPY', KEYS[1], KEYS[2]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[4])
if user then
  local index = ARGV[2] .. ':' .. cjson.decode(user).id
  redis.call('SADD', index, ARGV[3])
  redis.call('EXPIRE', index, ARGV[5])
end
return 1""",
    # KEYS old, new; ARGV user field, index prefix, new sid, ttl, pointer field,
    # old sid, index ttl. Reply: the session's fields (flat), empty when gone.
    "rotate": """
local data = redis.call('HGETALL', KEYS[1])
if #data == 0 then return data end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[1], ARGV[5], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
for i = 1, #data, 2 do
  if data[i] == ARGV[1] then
    local index = ARGV[2] .. ':' .. cjson.decode(data[i + 1]).id
    redis.call('SREM', index, ARGV[6])
    redis.call('SADD', index, ARGV[3])
    redis.call('EXPIRE', index, ARGV[7])
  end
end
return data""",
    # KEYS index; ARGV session prefix. Reply: the live sids; the dead leave the index.
    "sessions_of": """
local live, dead = {}, {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. ':' .. sid) == 1 then live[#live + 1] = sid
  else dead[#dead + 1] = sid end
end
for first = 1, #dead, 1000 do
  redis.call('SREM', KEYS[1], unpack(dead, first, math.min(first + 999, #dead)))
end
return live""",
    # KEYS index; ARGV session prefix, user field, user JSON. Reply: how many.
    "sync": """
local n = 0
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. ':' .. sid
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, ARGV[2], ARGV[3])
    n = n + 1
  end
end
return n""",
    # KEYS index; ARGV session prefix. Reply: how many sessions were deleted.
    "logout_everywhere": """
local sids, n = redis.call('SMEMBERS', KEYS[1]), 0
for first = 1, #sids, 1000 do
  local keys = {}
  for i = first, math.min(first + 999, #sids) do keys[#keys + 1] = ARGV[1] .. ':' .. sids[i] end
  n = n + redis.call('DEL', unpack(keys))
end
redis.call('DEL', KEYS[1])
return n""",
}


def load_scripts(stats: redis.Redis) -> dict[str, str]:
    """SCRIPT LOAD every floor script (untimed); name -> sha."""
    return {name: stats.script_load(body) for name, body in FLOOR_LUA.items()}


# -- a floor's one round trip, for either door ---------------------------------------

@dataclass(frozen=True)
class Plan:
    """One round trip: ``commands`` in a pipeline (``transaction``: in
    MULTI/EXEC), or a single command sent as is (``transaction=None``)."""

    commands: tuple[tuple[Any, ...], ...]
    transaction: bool | None = False


def execute(client: redis.Redis, plan: Plan) -> list[Any]:
    if plan.transaction is None:
        return [client.execute_command(*plan.commands[0])]
    with client.pipeline(transaction=plan.transaction) as pipe:
        for command in plan.commands:
            pipe.execute_command(*command)
        return pipe.execute()  # type: ignore[no-any-return]


async def aexecute(client: redis.asyncio.Redis, plan: Plan) -> list[Any]:
    if plan.transaction is None:
        return [await client.execute_command(*plan.commands[0])]
    async with client.pipeline(transaction=plan.transaction) as pipe:
        for command in plan.commands:
            pipe.execute_command(*command)
        return await pipe.execute()  # type: ignore[no-any-return]


# -- the flows --------------------------------------------------------------------------

@dataclass
class Door:
    """What the sides of one door run on."""

    name: str  # "sync" | "asyncio"
    client: Any  # the counting client ours and the floor share
    stats: redis.Redis  # setup and checks (not counted)
    shas: dict[str, str]

    @property
    def is_async(self) -> bool:
        return self.name == "asyncio"

    def manager(self, **settings: Any) -> Any:
        module = dce_session.asyncio if self.is_async else dce_session
        return module.SessionManager(self.client, **settings)


@dataclass
class Flow:
    """One flow: its name, the sides' builders and what the table says."""

    name: str
    ours_does: str
    floor_does: str
    ours_adds: str
    build: Callable[[Door], tuple[Side, Side]]
    n: int = 200  # operations per side per round (full run)
    naive: Callable[[Any], Any] | None = None  # (naive manager, input) -> result
    extra: Callable[[Door], list[Side]] | None = None  # more reference sides

    def sides(self, door: Door) -> list[Side]:
        """Ours, the floor and, on the blocking door, the naive reference."""
        ours, floor = self.build(door)
        sides = [ours, floor, *(self.extra(door) if self.extra else [])]
        if self.naive is not None and not door.is_async:
            manager, naive = NaiveSessionManager(door.client), self.naive
            sides.append(Side("naive", "reference",
                              "benches/pure_python.py: one command per step",
                              lambda item: naive(manager, item), prepare=ours.prepare,
                              check=ours.check))
        return sides


def _floor_side(door: Door, label: str, plan_of: Callable[[Any], Plan],
                answer: Callable[[Any, list[Any]], Any], **kwargs: Any) -> Side:
    """A floor side from its plan and the reading of its replies."""
    client = door.client
    if door.is_async:
        async def arun(item: Any) -> Any:
            return answer(item, await aexecute(client, plan_of(item)))

        return Side("floor", "floor", label, arun, **kwargs)
    return Side("floor", "floor", label,
                lambda item: answer(item, execute(client, plan_of(item))), **kwargs)


def _pair(door: Door, ours_label: str, ours: Callable[[Any], Any],
          aours: Callable[[Any], Any], floor_label: str, plan_of: Callable[[Any], Plan],
          answer: Callable[[Any, list[Any]], Any], check: Callable[[Any, Any], None],
          prepare: Callable[[int], list[Any]]) -> tuple[Side, Side]:
    return (Side("ours", "ours", ours_label, aours if door.is_async else ours,
                 prepare=prepare, check=check),
            _floor_side(door, floor_label, plan_of, answer, prepare=prepare, check=check))


# new + set ------------------------------------------------------------------------------

def new_set(door: Door) -> tuple[Side, Side]:
    manager, stats = door.manager(), door.stats

    def ours(_: Any) -> str:
        session = manager.new()
        session.set("cart", CART)
        return session.id  # type: ignore[no-any-return]

    async def aours(_: Any) -> str:
        session = manager.new()
        await session.set("cart", CART)
        return session.id  # type: ignore[no-any-return]

    client = door.client

    def floor(_: Any) -> str:
        sid = generate_sid(60)
        execute(client, Plan((("HSET", key(sid), "cart", dumps(CART)),
                              ("EXPIRE", key(sid), TTL))))
        return sid

    async def afloor(_: Any) -> str:
        sid = generate_sid(60)
        await aexecute(client, Plan((("HSET", key(sid), "cart", dumps(CART)),
                                     ("EXPIRE", key(sid), TTL))))
        return sid

    def check(_: Any, sid: str) -> None:
        assert stored(stats, sid) == {"cart": CART_JSON}
        assert full_ttl(stats, key(sid))

    return (Side("ours", "ours", "manager.new().set('cart', value)",
                 aours if door.is_async else ours, check=check),
            Side("floor", "floor", "pipeline: HSET + EXPIRE",
                 afloor if door.is_async else floor, check=check))


# open + get -----------------------------------------------------------------------------

def open_get(door: Door) -> tuple[Side, Side]:
    manager, stats = door.manager(), door.stats
    [sid] = seed(stats, 1, user=False)
    prepare = lambda n: [sid] * n  # noqa: E731

    async def aours(sid: str) -> Any:
        return await manager.open(sid).get("cart")

    def check(sid: str, cart: Any) -> None:
        assert cart == CART
        assert full_ttl(stats, key(sid))

    return _pair(
        door, "manager.open(sid).get('cart')", lambda sid: manager.open(sid).get("cart"), aours,
        "pipeline: HGETALL + EXPIRE",
        lambda sid: Plan((("HGETALL", key(sid)), ("EXPIRE", key(sid), TTL))),
        lambda sid, replies: json.loads(replies[0][b"cart"]), check, prepare)


# open + user + get ----------------------------------------------------------------------

def open_user_get(door: Door) -> tuple[Side, Side]:
    manager, stats = door.manager(), door.stats
    [sid] = seed(stats, 1)
    prepare = lambda n: [sid] * n  # noqa: E731

    def ours(sid: str) -> Any:  # the documented order: the touching read first
        session = manager.open(sid)
        cart = session.get("cart")
        return session.user(), cart

    async def aours(sid: str) -> Any:
        session = manager.open(sid)
        cart = await session.get("cart")
        return await session.user(), cart

    def answer(sid: str, replies: list[Any]) -> Any:
        fields = replies[0]
        return json.loads(fields[b"$user"]), json.loads(fields[b"cart"])

    return _pair(door, "s = manager.open(sid); s.get('cart'); s.user()", ours, aours,
                 "pipeline: HGETALL + EXPIRE",
                 lambda sid: Plan((("HGETALL", key(sid)), ("EXPIRE", key(sid), TTL))),
                 answer, _check_user_get(stats), prepare)


def _check_user_get(stats: redis.Redis) -> Callable[[str, Any], None]:
    def check(sid: str, result: Any) -> None:
        assert result == (USER, CART)
        assert full_ttl(stats, key(sid))
        assert sid in members(stats)
        assert stats.ttl(index()) >= TTL

    return check


def user_first(door: Door) -> list[Side]:
    """open+user+get with ``user()`` first: it loads without the touch, so the
    ``get()`` after it sends the touch (README: a second round trip)."""
    manager, stats = door.manager(), door.stats
    [sid] = seed(stats, 1)

    def run(sid: str) -> Any:
        session = manager.open(sid)
        return session.user(), session.get("cart")

    async def arun(sid: str) -> Any:
        session = manager.open(sid)
        return await session.user(), await session.get("cart")

    return [Side("user-first", "reference", "s = manager.open(sid); s.user(); s.get('cart')",
                 arun if door.is_async else run, prepare=lambda n: [sid] * n,
                 check=_check_user_get(stats))]


# login ----------------------------------------------------------------------------------

def login(door: Door) -> tuple[Side, Side]:
    manager, stats = door.manager(), door.stats

    async def aours(sid: str) -> str:
        return await manager.open(sid).login(USER)  # type: ignore[no-any-return]

    client = door.client

    def plan(old: str, new: str) -> Plan:
        return Plan((("RENAME", key(old), key(new)), ("HSET", key(new), "$user", dumps(USER)),
                     ("EXPIRE", key(new), TTL), ("SADD", index(), new),
                     ("EXPIRE", index(), MAPPING_TTL)), transaction=True)

    def floor(old: str) -> str:
        new = generate_sid(60)
        execute(client, plan(old, new))
        return new

    async def afloor(old: str) -> str:
        new = generate_sid(60)
        await aexecute(client, plan(old, new))
        return new

    def check(old: str, new: str) -> None:
        assert new != old
        assert stored(stats, new) == {"cart": CART_JSON, "locale": LOCALE_JSON,
                                      "$user": USER_JSON}
        assert full_ttl(stats, key(new))
        assert not stats.exists(key(old))
        assert new in members(stats)
        assert old not in members(stats)

    prepare = lambda n: seed(stats, n, user=False)  # noqa: E731
    return (Side("ours", "ours", "manager.open(sid).login(user)",
                 aours if door.is_async else (lambda sid: manager.open(sid).login(USER)),
                 prepare=prepare, check=check),
            Side("floor", "floor", "MULTI: RENAME + HSET + EXPIRE + SADD + EXPIRE index",
                 afloor if door.is_async else floor, prepare=prepare, check=check))


# logout, destroy ------------------------------------------------------------------------

def logout(door: Door) -> tuple[Side, Side]:
    manager, stats, sha = door.manager(), door.stats, door.shas["logout"]

    async def aours(sid: str) -> bool:
        return await manager.open(sid).logout()  # type: ignore[no-any-return]

    def check(sid: str, done: Any) -> None:
        assert done in (True, 1)
        assert stored(stats, sid) == {"cart": CART_JSON, "locale": LOCALE_JSON}
        assert sid not in members(stats)

    return _pair(door, "manager.open(sid).logout()", lambda sid: manager.open(sid).logout(),
                 aours, "Lua: HGET user + HDEL + SREM index",
                 lambda sid: Plan((("EVALSHA", sha, 1, key(sid), "$user", "dceusmap", sid),),
                                  None),
                 lambda sid, replies: replies[0], check, lambda n: seed(stats, n))


def destroy(door: Door) -> tuple[Side, Side]:
    manager, stats, sha = door.manager(), door.stats, door.shas["destroy"]

    async def aours(sid: str) -> bool:
        return await manager.open(sid).destroy()  # type: ignore[no-any-return]

    def check(sid: str, done: Any) -> None:
        assert done in (True, 1)
        assert not stats.exists(key(sid))
        assert sid not in members(stats)

    return _pair(door, "manager.open(sid).destroy()", lambda sid: manager.open(sid).destroy(),
                 aours, "Lua: HGET user + DEL + SREM index",
                 lambda sid: Plan((("EVALSHA", sha, 1, key(sid), "$user", "dceusmap", sid),),
                                  None),
                 lambda sid, replies: replies[0], check, lambda n: seed(stats, n))


# regenerate -----------------------------------------------------------------------------

def regenerate(door: Door) -> tuple[Side, Side]:
    manager, stats, sha, client = door.manager(), door.stats, door.shas["regenerate"], door.client

    async def aours(sid: str) -> str:
        return await manager.open(sid).regenerate()  # type: ignore[no-any-return]

    def plan(old: str, new: str) -> Plan:
        return Plan((("EVALSHA", sha, 2, key(old), key(new), "$user", "dceusmap", new, TTL,
                      MAPPING_TTL),), None)

    def floor(old: str) -> str:
        new = generate_sid(60)
        assert execute(client, plan(old, new)) == [1]
        return new

    async def afloor(old: str) -> str:
        new = generate_sid(60)
        assert await aexecute(client, plan(old, new)) == [1]
        return new

    def check(old: str, new: str) -> None:
        assert new != old
        expected = {"cart": CART_JSON, "locale": LOCALE_JSON, "$user": USER_JSON}
        assert stored(stats, new) == expected == stored(stats, old)
        assert full_ttl(stats, key(new))
        assert {old, new} <= members(stats)

    prepare = lambda n: seed(stats, n)  # noqa: E731
    return (Side("ours", "ours", "manager.open(sid).regenerate()",
                 aours if door.is_async else (lambda sid: manager.open(sid).regenerate()),
                 prepare=prepare, check=check),
            Side("floor", "floor", "Lua: HGET user + COPY + EXPIRE + SADD + EXPIRE index",
                 afloor if door.is_async else floor, prepare=prepare, check=check))


# try_renew, due -------------------------------------------------------------------------

def try_renew(door: Door) -> tuple[Side, Side]:
    manager, stats, sha, client = (door.manager(renew=RENEW), door.stats, door.shas["rotate"],
                                   door.client)

    def ours(sid: str) -> Any:
        session = manager.open(sid)
        assert session.try_renew()
        return session.id, session.get("cart")

    async def aours(sid: str) -> Any:
        session = manager.open(sid)
        assert await session.try_renew()
        return session.id, await session.get("cart")

    def plan(old: str, new: str) -> Plan:
        return Plan((("EVALSHA", sha, 2, key(old), key(new), "$user", "dceusmap", new, TTL,
                      "$newid", old, MAPPING_TTL),), None)

    def due(sid: str) -> str:
        """The floor's decision (the sid's age) and its new sid."""
        assert time.time() - parse_sid(sid)[1] >= RENEW.interval_seconds
        return generate_sid(60)

    def read(new: str, replies: list[Any]) -> Any:
        flat = replies[0]
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        return new, json.loads(fields[b"cart"])

    def floor(old: str) -> Any:
        new = due(old)
        return read(new, execute(client, plan(old, new)))

    async def afloor(old: str) -> Any:
        new = due(old)
        return read(new, await aexecute(client, plan(old, new)))

    def check(old: str, result: Any) -> None:
        new, cart = result
        assert new != old
        assert cart == CART
        assert stored(stats, new) == {"cart": CART_JSON, "locale": LOCALE_JSON,
                                      "$user": USER_JSON}
        assert stored(stats, old) == {"$newid": new}
        assert full_ttl(stats, key(new))
        assert full_ttl(stats, key(old))
        assert new in members(stats)
        assert old not in members(stats)

    prepare = lambda n: seed(stats, n, due=True)  # noqa: E731
    return (Side("ours", "ours", "s = manager.open(sid); s.try_renew(); s.get('cart')",
                 aours if door.is_async else ours, prepare=prepare, check=check),
            Side("floor", "floor", "Lua: HGETALL + RENAME + EXPIRE + HSET pointer + EXPIRE "
                 "+ SREM/SADD/EXPIRE index", afloor if door.is_async else floor,
                 prepare=prepare, check=check))


# one user's sessions: sessions_of, sync, logout_everywhere -----------------------------

def sessions_of(count: int) -> Callable[[Door], tuple[Side, Side]]:
    def build(door: Door) -> tuple[Side, Side]:
        manager, stats, sha = door.manager(), door.stats, door.shas["sessions_of"]
        uid = 1000 + count
        sids = set(seed(stats, count, uid=uid))
        prepare = lambda n: [uid] * n  # noqa: E731

        async def aours(uid: int) -> Any:
            return await manager.sessions_of(uid)

        def check(uid: int, found: Any) -> None:
            assert set(found) == sids
            assert len(found) == count

        return _pair(door, "manager.sessions_of(uid)", manager.sessions_of, aours,
                     "Lua: SMEMBERS + EXISTS per sid",
                     lambda uid: Plan((("EVALSHA", sha, 1, index(uid), "dcesid"),), None),
                     lambda uid, replies: [text(sid) for sid in replies[0]], check, prepare)
    return build


def sync(count: int) -> Callable[[Door], tuple[Side, Side]]:
    def build(door: Door) -> tuple[Side, Side]:
        manager, stats, sha = door.manager(), door.stats, door.shas["sync"]
        uid = 2000 + count
        sids = seed(stats, count, uid=uid)
        user = {**USER, "id": uid, "name": "Zoë B."}
        prepare = lambda n: [uid] * n  # noqa: E731

        async def aours(uid: int) -> Any:
            return await manager.sync(user)

        def check(uid: int, written: Any) -> None:
            assert written == count
            assert stored(stats, sids[-1])["$user"] == dumps(user)

        return _pair(door, "manager.sync(user)", lambda uid: manager.sync(user), aours,
                     "Lua: SMEMBERS + EXISTS and HSET per sid",
                     lambda uid: Plan((("EVALSHA", sha, 1, index(uid), "dcesid", "$user",
                                        dumps(user)),), None),
                     lambda uid, replies: replies[0], check, prepare)
    return build


def logout_everywhere(count: int) -> Callable[[Door], tuple[Side, Side]]:
    def build(door: Door) -> tuple[Side, Side]:
        manager, stats, sha = door.manager(), door.stats, door.shas["logout_everywhere"]
        users = iter(range(10**6, 10**7))
        sids_of: dict[int, list[str]] = {}

        def prepare(n: int) -> list[int]:
            uids = [next(users) for _ in range(n)]
            for uid in uids:
                sids_of[uid] = seed(stats, count, uid=uid)
            return uids

        async def aours(uid: int) -> Any:
            return await manager.logout_everywhere(uid)

        def check(uid: int, destroyed: Any) -> None:
            assert destroyed == count
            assert not stats.exists(index(uid), *(key(sid) for sid in sids_of.pop(uid)[:50]))

        return _pair(door, "manager.logout_everywhere(uid)", manager.logout_everywhere, aours,
                     "Lua: SMEMBERS + one DEL of every session + DEL index",
                     lambda uid: Plan((("EVALSHA", sha, 1, index(uid), "dcesid"),), None),
                     lambda uid, replies: replies[0], check, prepare)
    return build


def _naive_new_set(manager: Any) -> str:
    session = manager.new()
    session.set("cart", CART)
    return session.id  # type: ignore[no-any-return]


FLOWS: list[Flow] = [
    Flow("new+set", "write.lua, create mode (a newborn's key: no state probe)",
         "HSET + EXPIRE (pipeline)",
         "the same two commands inside a script: Lua's fixed cost per EVALSHA (~10 us on "
         "this VM, see Notes) and 10 arguments before the values (the sid and its ttl are read "
         "from the key, the manager's settings are in the script's text); in Python the "
         "field-name, reserved-field and value-contract checks (Rust encoder)", new_set,
         naive=lambda m, _: _naive_new_set(m)),
    Flow("open+get", "open.lua: HGETALL, then EXPIRE (touch) when live",
         "HGETALL + EXPIRE (pipeline)",
         "the lifecycle state read from the same HGETALL ($newid: a rotated sid forwards to "
         "its successor and is never touched, so no key outlives its rotation); Lua's fixed "
         "cost", open_get, naive=lambda m, sid: m.open(sid).get("cart")),
    Flow("open+user+get", "get() loads with the touch (open.lua); user() reads the same "
         "snapshot", "HGETALL + EXPIRE (pipeline)",
         "the index upkeep of a logged-in touch: TTL of the user index, EXPIRE only when it "
         "would expire before the session; starting with user() instead costs a second "
         "round trip (the reference row)", open_user_get, extra=user_first),
    Flow("login", "renew.lua: copy under a fresh sid, destroy the old, index the new",
         "MULTI: RENAME + HSET user + EXPIRE + SADD + EXPIRE index",
         "EXISTS of the new key (an exact replay answers as the first run); the state is "
         "read from the HGETALL of the copy; HGETALL + HSET + DEL where RENAME moves the "
         "hash (ours filters the copy); TTL of the index; PUBLISH of the rotate event (the "
         "sockets of the old sid follow it)", login, naive=lambda m, sid: m.open(sid).login(USER)),
    Flow("logout", "logout.lua", "Lua: HGET user + HDEL + SREM index",
         "replay record GET + SET (a retried logout answers as the first), EXISTS after "
         "the HDEL, PUBLISH of the logout event, the uid parsed in Lua", logout),
    Flow("destroy", "destroy.lua", "Lua: HGET user + DEL + SREM index",
         "replay record GET + SET, PUBLISH of the destroy event", destroy),
    Flow("regenerate", "renew.lua, old kept",
         "Lua: HGET user + COPY + EXPIRE + SADD + EXPIRE index",
         "EXISTS of the new key (replays); HGETALL + HSET where COPY copies (ours filters: "
         "changes, bookkeeping); TTL of the index", regenerate),
    Flow("try_renew due", "rotate.lua: load and rotate in one step; get() reads the reply",
         "Lua: HGETALL + RENAME + EXPIRE + HSET pointer + EXPIRE + SREM/SADD/EXPIRE index",
         "EXISTS of the new key (concurrent rotations converge on one sid); the state read "
         "from the same HGETALL; PUBLISH of the rotate event", try_renew),
    Flow("sessions_of 1", "sessions_of.lua", "Lua: SMEMBERS + EXISTS per sid",
         "HMGET user + pointer per sid instead of EXISTS, and the uid parsed out of the "
         "user JSON in Lua (a rotated sid, or one holding another uid, is not live)",
         sessions_of(1)),
    Flow("sessions_of 100", "sessions_of.lua", "Lua: SMEMBERS + EXISTS per sid",
         "as sessions_of 1: per sid ~1.4x the floor's Redis time (HMGET ~1.4x EXISTS; the "
         "uid compared in place when the user JSON opens with it)", sessions_of(100), n=100),
    Flow("sessions_of 1,000", "sessions_of.lua", "Lua: SMEMBERS + EXISTS per sid",
         "as sessions_of 100", sessions_of(1000), n=10,
         naive=lambda m, uid: m.sessions_of(uid)),
    Flow("sync 100", "sync.lua", "Lua: SMEMBERS + EXISTS and HSET per sid",
         "HMGET + uid check per sid (only live sessions of this uid are written), PUBLISH "
         "of the sync event", sync(100), n=30,
         naive=lambda m, uid: m.sync({**USER, "id": uid, "name": "Zoë B."})),
    Flow("logout_everywhere 100", "logout_everywhere.lua",
         "Lua: SMEMBERS + one DEL of all + DEL index",
         "HMGET + uid check per sid (only live sessions of this uid are counted), replay "
         "record GET + SET, PUBLISH of an event listing every sid", logout_everywhere(100),
         n=20),
]
