"""Where Redis' time goes in our scripts (issue 10 item 3): the same work
sent as a pipeline, as a bare script, as a script with ``lib.lua``
prepended, and as ours, so that a script's fixed cost and its helpers' cost
can be told apart from the commands it runs. Only the *Redis µs* column
(``INFO commandstats``) matters here; the rounds are interleaved as
everywhere (``paired.py``).
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

import redis
from dce_session import SessionManager

from benches import flows
from benches.paired import Rig, Side, record

#: the default manager's scripts (building a manager sends nothing)
SCRIPTS = SessionManager(redis.Redis()).scripts
_SETTINGS_BLOCK = re.compile(r"^local SETTINGS = \{.*?^\}$", re.MULTILINE | re.DOTALL)
#: lib.lua with the default manager's settings written in, as its scripts have it
LIB = _SETTINGS_BLOCK.sub(lambda _: _SETTINGS_BLOCK.findall(SCRIPTS.open.source)[0],
                          (files("dce_session") / "_lua" / "lib.lua").read_text("utf-8"))
ROUNDS = 9
LOAD = "redis.call('EXPIRE', KEYS[1], 3600) return redis.call('HGETALL', KEYS[1])"
EACH = ("local n = 0 for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do {body} end "
        "return n")
CHECKS = {
    "EXISTS per sid": "n = n + redis.call('EXISTS', ARGV[1] .. ':' .. sid)",
    "HMGET user + pointer per sid": (
        "local h = redis.call('HMGET', ARGV[1] .. ':' .. sid, '$user', '$newid') "
        "if h[1] and not h[2] then n = n + 1 end"),
    "HMGET + the uid parsed (lib.lua user_id)": (
        "local h = redis.call('HMGET', ARGV[1] .. ':' .. sid, '$user', '$newid') "
        "if h[1] and not h[2] and user_id(h[1], 'id') == ARGV[2] then n = n + 1 end"),
}


def test_script_call_cost(benchmark: Any, client: redis.Redis, stats: redis.Redis,
                          counter: Any) -> None:
    [sid] = flows.seed(stats, 1, user=False)
    key, args = flows.key(sid), (sid, 3600, 0, 1)
    bare, with_lib = stats.script_load(LOAD), stats.script_load(LIB + "\n" + LOAD)
    stats.script_load(SCRIPTS.open.source)

    def pipeline(_: Any) -> Any:
        return flows.execute(client, flows.Plan((("HGETALL", key), ("EXPIRE", key, 3600))))[0]

    def evalsha(sha: str) -> Any:
        return lambda _: client.execute_command("EVALSHA", sha, 1, key, *args)

    def check(_: Any, reply: Any) -> None:
        fields = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2],
                                                                strict=True))
        assert fields[b"cart"] == flows.CART_JSON.encode()

    def check_open(_: Any, reply: Any) -> None:
        check(None, reply[3:])

    sides = [
        Side("ours", "ours", "open.lua (ours, touch=1)", evalsha(SCRIPTS.open.sha),
             check=check_open),
        Side("pipeline", "reference", "pipeline: HGETALL + EXPIRE", pipeline, check=check),
        Side("bare", "reference", "EVALSHA: HGETALL + EXPIRE, ours' 4 arguments",
             evalsha(bare), check=check),
        Side("lib", "reference", "EVALSHA: lib.lua + HGETALL + EXPIRE", evalsha(with_lib),
             check=check),
    ]
    record(benchmark, "redis-cost", "a load: script overheads", Rig(stats, counter), sides,
           rounds=ROUNDS, n=300, target=None, unit="call")


def test_index_check_cost(benchmark: Any, client: redis.Redis, stats: redis.Redis,
                          counter: Any) -> None:
    uid, count = 1042, 1000
    flows.seed(stats, count, uid=uid)
    index = flows.index(uid)
    sides = [Side("ours", "ours", "sessions_of.lua (ours)",
                  lambda _: client.execute_command(
                      "EVALSHA", SCRIPTS.sessions_of.sha, 1, index, str(uid)),
                  check=lambda _, live: _check_count(len(live), count))]
    stats.script_load(SCRIPTS.sessions_of.source)
    for label, body in CHECKS.items():
        sha = stats.script_load(LIB + "\n" + EACH.format(body=body))
        sides.append(Side(label, "reference", f"Lua: SMEMBERS + {label}",
                          lambda _, sha=sha: client.execute_command(
                              "EVALSHA", sha, 1, index, "dcesid", str(uid)),
                          check=lambda _, n: _check_count(n, count)))
    record(benchmark, "redis-cost", "sessions_of 1,000: the per-sid check",
           Rig(stats, counter), sides, rounds=ROUNDS, n=10, target=None, unit="session",
           per=count)


def _check_count(found: int, count: int) -> None:
    assert found == count
