"""How the drivers send a manager's scripts (``calls.Direct``): over a plain
client, on a connection of the caller's pool with the client's Retry, the
connection released after every call; over any other client (a subclass
with its own ``execute_command``, a single-connection client, another
encoding), through the client's ``execute_command``. Real redis-server; the
dropped sends are a connection class of the caller's pool, as a caller
could configure."""

from __future__ import annotations

import asyncio
from typing import Any

import dce_session
import dce_session.asyncio
import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from dce_session.testing import RedisServer
from redis.backoff import NoBackoff


class DropsSends(redis.Connection):
    """Drops the next ``DropsSends.drops`` sends as a broken socket would."""

    drops = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if DropsSends.drops:
            DropsSends.drops -= 1
            self.disconnect()
            raise redis.ConnectionError("the connection dropped (simulated)")
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class AsyncDropsSends(redis.asyncio.Connection):
    """The asyncio twin of ``DropsSends``."""

    drops = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if AsyncDropsSends.drops:
            AsyncDropsSends.drops -= 1
            await self.disconnect()
            raise redis.ConnectionError("the connection dropped (simulated)")
        await super().send_packed_command(command, check_health)


@pytest.fixture(scope="module")
def server() -> Any:
    with RedisServer() as running:
        yield running


@pytest.mark.parametrize(("drops", "written"), [(0, True), (2, True), (3, False)])
def test_the_clients_retry_resends_a_dropped_call(server: RedisServer, drops: int,
                                                  written: bool) -> None:
    """Two retries (the client's Retry) cover two dropped sends, not three: then
    StoreError wraps redis-py's error and nothing was written. One connection
    in the pool: each call released it, failed or not."""
    pool = redis.ConnectionPool.from_url(server.url, connection_class=DropsSends,
                                         max_connections=1,
                                         retry=redis.retry.Retry(NoBackoff(), 2))
    with redis.Redis.from_pool(pool) as client:
        manager = dce_session.SessionManager(client)
        assert manager.direct is not None
        session = manager.new()
        DropsSends.drops = drops
        if written:
            session.set("cart", ["apple"])
        else:
            with pytest.raises(dce_session.StoreError) as raised:
                session.set("cart", ["apple"])
            assert isinstance(raised.value.__cause__, redis.ConnectionError)
        assert DropsSends.drops == 0
        assert bool(client.exists(session.key)) is written
        for _ in range(3):  # the one connection is back in the pool each time
            again = manager.new()
            again.set("n", 1)
            assert manager.open(again.id).get("n") == 1


@pytest.mark.parametrize(("drops", "written"), [(0, True), (2, True), (3, False)])
def test_the_async_clients_retry_resends_a_dropped_call(server: RedisServer, drops: int,
                                                        written: bool) -> None:
    async def main() -> None:
        pool = redis.asyncio.ConnectionPool.from_url(
            server.url, connection_class=AsyncDropsSends, max_connections=1,
            retry=redis.asyncio.retry.Retry(NoBackoff(), 2))
        client = redis.asyncio.Redis.from_pool(pool)
        try:
            manager = dce_session.asyncio.SessionManager(client)
            assert manager.direct is not None
            session = manager.new()
            AsyncDropsSends.drops = drops
            if written:
                await session.set("cart", ["apple"])
            else:
                with pytest.raises(dce_session.asyncio.StoreError) as raised:
                    await session.set("cart", ["apple"])
                assert isinstance(raised.value.__cause__, redis.ConnectionError)
            assert AsyncDropsSends.drops == 0
            assert bool(await client.exists(session.key)) is written
            for _ in range(3):
                again = manager.new()
                await again.set("n", 1)
                assert await manager.open(again.id).get("n") == 1
        finally:
            await client.aclose()

    asyncio.run(main())


class Recording(redis.Redis):
    """A caller's subclass with its own execute_command (instrumentation)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]))
        return super().execute_command(*args, **options)


def test_a_subclass_with_its_own_execute_command_sees_every_call(server: RedisServer) -> None:
    with Recording.from_url(server.url) as client:
        manager = dce_session.SessionManager(client)
        assert manager.direct is None
        session = manager.new()
        session.set("cart", ["apple"])
        assert manager.open(session.id).get("cart") == ["apple"]
        assert client.sent == ["EVALSHA", "EVALSHA"]


@pytest.mark.parametrize("settings", [{"single_connection_client": True},
                                      {"encoding": "latin-1"}],
                         ids=["single-connection", "latin-1"])
def test_other_clients_send_through_execute_command(server: RedisServer,
                                                    settings: dict[str, Any]) -> None:
    with redis.Redis.from_url(server.url, **settings) as client:
        manager = dce_session.SessionManager(client)
        assert manager.direct is None
        session = manager.new()
        session.set("cart", ["apple"])
        assert manager.open(session.id).get("cart") == ["apple"]


def test_a_script_flushed_meanwhile_is_sent_again_with_its_source(server: RedisServer) -> None:
    with redis.Redis.from_url(server.url) as client:
        manager = dce_session.SessionManager(client)
        assert manager.direct is not None
        session = manager.new()
        session.set("cart", ["apple"])
        client.script_flush()
        assert manager.open(session.id).get("cart") == ["apple"]
        assert client.script_exists(manager.scripts.open.sha) == [True]
