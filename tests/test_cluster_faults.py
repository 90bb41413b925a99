"""A dead shard breaks nothing else (issue 7, item 2): on a cluster of three
primaries without replicas, one killed, every operation on a session whose
own slot is on a healthy shard succeeds even when its user index lives on
the dead one; the index upkeep that cannot be done is skipped with a WARNING
on the ``dce_session`` logger and healed by the next touch once the shard is
back. The negative control: a session on the dead shard fails with
``StoreError``. Both doors, real redis-server processes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio.cluster
import redis.cluster
from dce_session._core import key_slot
from dce_session.errors import StoreError
from dce_session.testing import LocalCluster


@pytest.fixture(scope="module")
def shards() -> Iterator[LocalCluster]:
    durable = ("--appendonly", "yes", "--appendfsync", "always")
    with LocalCluster(masters=3, extra_args=("--cluster-require-full-coverage", "no",
                                             *durable)) as cluster:
        yield cluster


def owner(slot: int) -> int:
    """Which of the three primaries serves ``slot`` (LocalCluster splits evenly)."""
    return min(slot // (16384 // 3), 2)


def uid_on(shard: int, nth: int) -> int:
    """The ``nth`` uid whose index lies on ``shard`` (each test its own user)."""
    uids = (uid for uid in range(1, 10_000) if owner(key_slot(f"dceusmap:{uid}")) == shard)
    return [next(uids) for _ in range(nth + 1)][nth]


@pytest.fixture
async def manager(door: str, shards: LocalCluster) -> Any:
    host, port = shards.startup_nodes[0]
    if door == "sync":
        import dce_session

        client: Any = redis.cluster.RedisCluster(host=host, port=port, socket_timeout=2)
        yield dce_session.SessionManager(client)
        client.close()
    else:
        import dce_session.asyncio

        client = redis.asyncio.cluster.RedisCluster(host=host, port=port, socket_timeout=2)
        yield dce_session.asyncio.SessionManager(client)
        await client.aclose()


async def test_a_dead_index_shard_never_fails_a_session_operation(
        manager: Any, call: Any, shards: LocalCluster, caplog: pytest.LogCaptureFixture,
        door: str) -> None:
    uid = uid_on(2, ["sync", "async"].index(door))
    healthy: list[str] = []
    doomed: list[str] = []
    while len(healthy) < 3 or not doomed:
        session = manager.new()
        await call(session.set("a", 1))
        sid = await call(session.login({"id": uid}))
        (doomed if owner(key_slot(f"dcesid:{sid}")) == 2 else healthy).append(sid)
    assert sorted(await call(manager.sessions_of(uid))) == sorted(healthy + doomed)
    shards.nodes[2].kill()
    try:
        with caplog.at_level(logging.WARNING, logger="dce_session"):
            first, second, third = healthy[:3]
            reading = manager.open(first)
            assert await call(reading.get("a")) == 1  # the touch's index step is skipped
            assert await call(reading.uid()) == uid
            writing = manager.open(second)
            await call(writing.set("b", 2))  # committed: never reported as failed
            assert await call(manager.open(second).get("b")) == 2
            assert await call(manager.open(third).logout()) is True  # SREM skipped
            assert await call(manager.open(third).user()) is None
        assert any("user index of uid" in record.getMessage() for record in caplog.records)
        assert all(first not in record.getMessage() for record in caplog.records)  # redacted
        with pytest.raises(StoreError):  # the control: a session on the dead shard
            await call(manager.open(doomed[0]).get("a"))
        with pytest.raises(StoreError):  # the index itself is on the dead shard
            await call(manager.sessions_of(uid))
    finally:
        shards.nodes[2].restart()
        shards.wait_ok()
    # Back: the index prunes the logged-out one and lists the rest; the next
    # touch of each re-adds what an outage left out.
    for sid in healthy:
        await call(manager.open(sid).get("a"))
    assert sorted(await call(manager.sessions_of(uid))) == sorted(
        [sid for sid in healthy + doomed if sid != healthy[2]])
