"""How the drivers send a manager's scripts (``calls.Direct``): over a plain
client, on a connection of the caller's pool with the client's Retry, the
connection released after every call; over any other client (a subclass
with its own ``execute_command``, a single-connection client, another
encoding), through the client's ``execute_command``. Real redis-server; the
dropped sends are a connection class of the caller's pool, as a caller
could configure."""

from __future__ import annotations

import asyncio
import functools
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
    """Two retries (the client's Retry, for the errors it lists) cover two
    dropped sends, not three: then
    StoreError wraps redis-py's error and nothing was written. One connection
    in the pool: each call released it, failed or not."""
    pool = redis.ConnectionPool.from_url(server.url, connection_class=DropsSends,
                                         max_connections=1, retry_on_error=[redis.ConnectionError],
                                         retry=redis.retry.Retry(NoBackoff(), 2))
    with redis.Redis.from_pool(pool) as client:
        manager = dce_session.SessionManager(client)
        assert manager.direct is not None
        session = manager.new()
        client.ping()  # connected: the drops meet the call, not the handshake
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
            retry_on_error=[redis.ConnectionError], retry=redis.asyncio.retry.Retry(NoBackoff(), 2))
        client = redis.asyncio.Redis.from_pool(pool)
        try:
            manager = dce_session.asyncio.SessionManager(client)
            assert manager.direct is not None
            session = manager.new()
            await client.ping()
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


@pytest.mark.parametrize("drops", [1, 3])
@pytest.mark.parametrize("retry_on_error", [None, [redis.ConnectionError]])
def test_a_dropped_call_ends_as_through_execute_command(
        server: RedisServer, drops: int, retry_on_error: list[type] | None) -> None:
    """The direct send and the client's own ``execute_command`` (a subclass of
    redis-py's client) meet the same dropped sends with the same outcome,
    whatever this redis-py retries (before 6, only ``retry_on_error``)."""
    outcomes = []
    for client_class in (redis.Redis, Recording):
        pool = redis.ConnectionPool.from_url(
            server.url, connection_class=DropsSends, retry=redis.retry.Retry(NoBackoff(), 2),
            **({} if retry_on_error is None else {"retry_on_error": retry_on_error}))
        with client_class.from_pool(pool) as client:
            manager = dce_session.SessionManager(client)
            assert (manager.direct is None) == (client_class is Recording)
            session = manager.new()
            client.ping()
            DropsSends.drops = drops
            try:
                session.set("cart", ["apple"])
                outcome = "written"
            except dce_session.StoreError as error:
                outcome = type(error.__cause__).__name__
            DropsSends.drops = 0
            outcomes.append((outcome, bool(client.exists(session.key))))
    direct, through_execute_command = outcomes
    assert direct == through_execute_command
    if retry_on_error or drops > 2:  # redis-py retries listed errors in every version
        assert direct[0] == ("written" if drops == 1 else "ConnectionError")


def test_instrumentation_added_later_sees_every_call(server: RedisServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracer that wraps redis-py's ``execute_command`` after the manager was
    made (an app's start-up order) sees the manager's calls from then on."""
    seen: list[str] = []
    plain = redis.Redis.execute_command

    @functools.wraps(plain)
    def traced(self: redis.Redis, *args: Any, **options: Any) -> Any:
        seen.append(str(args[0]))
        return plain(self, *args, **options)

    with redis.Redis.from_url(server.url) as client:
        manager = dce_session.SessionManager(client)
        session = manager.new()
        session.set("cart", ["apple"])
        assert seen == []  # plain: sent directly
        monkeypatch.setattr(redis.Redis, "execute_command", traced)
        assert manager.open(session.id).get("cart") == ["apple"]
        assert seen == ["EVALSHA"]


def test_an_async_single_connection_client_keeps_its_connection() -> None:
    """Every call on the client's one connection: the only client the server has."""
    async def main(server: RedisServer) -> None:
        client = redis.asyncio.Redis.from_url(server.url, single_connection_client=True)
        try:
            manager = dce_session.asyncio.SessionManager(client)
            assert manager.direct is None
            await client.client_setname("mine")
            session = manager.new()
            await session.set("cart", ["apple"])
            assert await manager.open(session.id).get("cart") == ["apple"]
            assert [entry["name"] for entry in await client.client_list()] == ["mine"]
        finally:
            await client.aclose()

    with RedisServer() as own:
        asyncio.run(main(own))
