"""Whole request flows, ours vs the floor, blocking and asyncio.

*The floor* is the same Redis commands sent by bare redis-py with no library
around them: the EVALSHA of the very script our library runs, with the very
arguments it sends (see ``_flows.py``), and only the work any caller must do
around it (a sid from ``dce_session.core.generate_sid``, the fastest we
have; the value through bare ``json.dumps``/``json.loads``; no checks). Ours
must reach ``FLOW_TARGET`` of the floor's throughput.

Each benchmark asserts, before and after timing, that ours and the floor
give the same result and that every operation cost exactly one round trip
(one ``send_packed_command`` on a counting connection). Async benchmarks run
``BATCH`` operations inside one ``run_until_complete`` of a loop owned by the
benchmark; ``extra_info["ops"]`` tells ``report.py`` to divide.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import dce_session
import dce_session.asyncio
import pytest
import redis
import redis.asyncio
from dce_session import _scripts
from dce_session.core import generate_sid

from benches import pure_python  # the naive one-command-per-step manager: an extra row

FLOW_TARGET = 0.85
BATCH = 200
ASYNC_ROUNDS = 30
TTL = 3600  # seconds: the default ttl of 60 minutes
USER = {"id": 42, "name": "Zoë"}


def _header(sid: str) -> tuple[Any, ...]:
    """The ARGV header of every session script (``SessionState._header``)."""
    return (sid, TTL, "dcesid", "$newid", 0, "$user", "id", "dceusmap", 604800, "dcesid~events")

CART = [{"sku": f"SKU-{i}", "qty": i + 1, "price": 4.5} for i in range(5)]
STORED = {
    "cart": CART,
    "locale": "de-AT",
}


def describe(benchmark: Any, group: str, label: str, role: str, *,
             target: float | None = None, ops: int = 1, round_trips: float = 1) -> None:
    benchmark.group = group
    benchmark.extra_info.update(label=label, role=role, target=target, ops=ops,
                                round_trips=round_trips)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _stored_session(client: redis.Redis) -> str:
    """A stored session (written by ours) to open; its sid."""
    session = dce_session.SessionManager(client).new()
    session.update(STORED)
    return session.login(USER)


# -- the floor: bare redis-py ------------------------------------------------------

def _open_args(sid: str) -> tuple[Any, ...]:
    """EVALSHA open.lua as ``SessionCore._load_flow`` sends it (touch=1)."""
    return (_scripts.OPEN.sha, 1, f"dcesid:{sid}", *_header(sid), 1)


def _pick(reply: list[Any], field: bytes) -> Any:
    """The JSON value of ``field`` in an open.lua reply ``[state, ttl, sid, f, v, ...]``."""
    for i in range(3, len(reply), 2):
        if reply[i] == field:
            return json.loads(reply[i + 1])
    return None


def _write_args(value: Any) -> tuple[Any, ...]:
    """EVALSHA write.lua as ``SessionCore._write_flow`` sends it for a newborn's set."""
    sid = generate_sid(60)
    return (_scripts.WRITE.sha, 1, f"dcesid:{sid}", *_header(sid), "create", "", TTL, 1, 0, "",
            "$servers", "$server", "$client", "", "", "", 1, "cart", _dumps(value))


def floor_open_get(client: redis.Redis, sid: str) -> Any:
    return _pick(client.evalsha(*_open_args(sid)), b"cart")


def floor_new_set(client: redis.Redis) -> str:
    args = _write_args(CART)
    reply = client.evalsha(*args)
    assert reply[0] == 1
    return args[3]  # type: ignore[no-any-return]


async def afloor_open_get(client: redis.asyncio.Redis, sid: str) -> Any:
    return _pick(await client.evalsha(*_open_args(sid)), b"cart")  # type: ignore[misc]


async def afloor_new_set(client: redis.asyncio.Redis) -> str:
    args = _write_args(CART)
    reply = await client.evalsha(*args)  # type: ignore[misc]
    assert reply[0] == 1
    return args[3]  # type: ignore[no-any-return]


# -- helpers -------------------------------------------------------------------------

def _snapshot(client: redis.Redis, sid: str) -> tuple[dict[bytes, bytes], bool]:
    """What a new+set left behind: the hash, and whether its TTL is the session's."""
    key = f"dcesid:{sid}"
    return client.hgetall(key), TTL - 5 <= client.ttl(key) <= TTL


def _sync_bench(benchmark: Any, counter: Any, operation: Callable[[], Any],
                round_trips: int = 1) -> Any:
    """Time ``operation``; assert every call cost ``round_trips`` round trips."""
    calls = 0

    def counted() -> Any:
        nonlocal calls
        calls += 1
        return operation()

    operation()  # warm: the connection, the script cache
    counter.reset()
    result = benchmark(counted)
    assert counter.count == calls * round_trips, (counter.count, calls)
    return result


def _async_bench(benchmark: Any, rig: Any, counter: Any,
                 operation: Callable[[], Any]) -> Any:
    """Time ``BATCH`` awaited operations per round in the rig's one loop."""
    calls = 0

    async def batch() -> Any:
        nonlocal calls
        result = None
        for _ in range(BATCH):
            result = await operation()
        calls += BATCH
        return result

    rig.run(operation())  # warm
    counter.reset()
    result = benchmark.pedantic(lambda: rig.run(batch()), rounds=ASYNC_ROUNDS,
                                warmup_rounds=1)
    assert counter.count == calls, (counter.count, calls)
    return result


# -- open + get --------------------------------------------------------------------

@pytest.mark.parametrize("side", ["ours", "floor", "naive"])
def test_open_get_sync(benchmark: Any, client: redis.Redis, counter: Any, side: str) -> None:
    sid = _stored_session(client)
    manager = dce_session.SessionManager(client)
    ours: Callable[[], Any] = lambda: manager.open(sid).get("cart")  # noqa: E731
    floor: Callable[[], Any] = lambda: floor_open_get(client, sid)  # noqa: E731
    for operation in (ours, floor):
        operation()  # warm: the connection, the script cache
        counter.reset()
        assert operation() == CART
        assert counter.count == 1
    group = "open+get, sync"
    if side == "ours":
        describe(benchmark, group, "ours: manager.open(sid).get(field)", "ours")
        assert _sync_bench(benchmark, counter, ours) == CART
    elif side == "floor":
        describe(benchmark, group, "floor: bare redis-py EVALSHA open.lua", "baseline",
                 target=FLOW_TARGET)
        assert _sync_bench(benchmark, counter, floor) == CART
    else:
        naive_manager = pure_python.NaiveSessionManager(client)
        naive: Callable[[], Any] = lambda: naive_manager.open(sid).get("cart")  # noqa: E731
        counter.reset()
        assert naive() == CART
        naive_trips = counter.count
        describe(benchmark, group, "naive: one command per step (HGET, EXPIRE, ...)",
                 "reference", round_trips=naive_trips)
        assert _sync_bench(benchmark, counter, naive, naive_trips) == CART
    assert client.ttl(f"dcesid:{sid}") > TTL - 5  # touched


@pytest.mark.parametrize("side", ["ours", "floor"])
def test_open_get_async(benchmark: Any, client: redis.Redis, rig: Any, counter: Any,
                        side: str) -> None:
    sid = _stored_session(client)
    manager = dce_session.asyncio.SessionManager(rig.client)
    ours: Callable[[], Any] = lambda: manager.open(sid).get("cart")  # noqa: E731
    floor: Callable[[], Any] = lambda: afloor_open_get(rig.client, sid)  # noqa: E731
    for operation in (ours, floor):
        rig.run(operation())  # warm: the connection, the script cache
        counter.reset()
        assert rig.run(operation()) == CART
        assert counter.count == 1
    group = "open+get, async"
    if side == "ours":
        describe(benchmark, group, "ours: await manager.open(sid).get(field)", "ours",
                 ops=BATCH)
        assert _async_bench(benchmark, rig, counter, ours) == CART
    else:
        describe(benchmark, group, "floor: bare redis.asyncio EVALSHA open.lua", "baseline",
                 target=FLOW_TARGET, ops=BATCH)
        assert _async_bench(benchmark, rig, counter, floor) == CART


# -- new + set ---------------------------------------------------------------------

def _ours_new_set(manager: dce_session.SessionManager) -> str:
    session = manager.new()
    session.set("cart", CART)
    return session.id


async def _aours_new_set(manager: dce_session.asyncio.SessionManager) -> str:
    session = manager.new()
    await session.set("cart", CART)
    return session.id


def _same_result(client: redis.Redis, ours_sid: str, floor_sid: str) -> None:
    assert ours_sid != floor_sid
    assert _snapshot(client, ours_sid) == _snapshot(client, floor_sid)
    assert _snapshot(client, ours_sid) == ({b"cart": _dumps(CART).encode()}, True)


@pytest.mark.parametrize("side", ["ours", "floor", "naive"])
def test_new_set_sync(benchmark: Any, client: redis.Redis, counter: Any, side: str) -> None:
    manager = dce_session.SessionManager(client)
    ours: Callable[[], str] = lambda: _ours_new_set(manager)  # noqa: E731
    floor: Callable[[], str] = lambda: floor_new_set(client)  # noqa: E731
    sids = []
    for operation in (ours, floor):
        operation()  # warm: the connection, the script cache
        counter.reset()
        sids.append(operation())
        assert counter.count == 1
    _same_result(client, *sids)
    group = "new+set, sync"
    if side == "ours":
        describe(benchmark, group, "ours: manager.new().set(field, value)", "ours")
        sid = _sync_bench(benchmark, counter, ours)
    elif side == "floor":
        describe(benchmark, group, "floor: bare redis-py EVALSHA write.lua", "baseline",
                 target=FLOW_TARGET)
        sid = _sync_bench(benchmark, counter, floor)
    else:
        naive_manager = pure_python.NaiveSessionManager(client)

        def naive() -> str:
            session = naive_manager.new()
            session.set("cart", CART)
            return session.id  # type: ignore[no-any-return]

        counter.reset()
        naive()
        naive_trips = counter.count
        describe(benchmark, group, "naive: one command per step (HSET, EXPIRE, ...)",
                 "reference", round_trips=naive_trips)
        sid = _sync_bench(benchmark, counter, naive, naive_trips)
    assert _snapshot(client, sid) == _snapshot(client, sids[0])


@pytest.mark.parametrize("side", ["ours", "floor"])
def test_new_set_async(benchmark: Any, client: redis.Redis, rig: Any, counter: Any,
                       side: str) -> None:
    manager = dce_session.asyncio.SessionManager(rig.client)
    ours: Callable[[], Any] = lambda: _aours_new_set(manager)  # noqa: E731
    floor: Callable[[], Any] = lambda: afloor_new_set(rig.client)  # noqa: E731
    sids = []
    for operation in (ours, floor):
        rig.run(operation())  # warm: the connection, the script cache
        counter.reset()
        sids.append(rig.run(operation()))
        assert counter.count == 1
    _same_result(client, *sids)
    group = "new+set, async"
    if side == "ours":
        describe(benchmark, group, "ours: await manager.new().set(field, value)", "ours",
                 ops=BATCH)
        sid = _async_bench(benchmark, rig, counter, ours)
    else:
        describe(benchmark, group, "floor: bare redis.asyncio EVALSHA write.lua", "baseline",
                 target=FLOW_TARGET, ops=BATCH)
        sid = _async_bench(benchmark, rig, counter, floor)
    assert _snapshot(client, sid) == _snapshot(client, sids[0])
