"""The test helpers themselves: ``dce_session.testing`` and the conftest fixtures.

Plain redis-py only (apart from the ``make_manager`` wiring check), so these
pass whatever state the session classes are in.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
import redis
import redis.asyncio
from dce_session.testing import (
    INSTALL_HINT,
    SENTINEL_INSTALL_HINT,
    RedisServer,
    SentinelSetup,
    command,
    redis_url,
)

if TYPE_CHECKING:  # tests/ is no package: fixtures hand out the conftest objects
    from conftest import AnyRedis, ClientConfig, CommandStats, RoundTrips

Call = Callable[[Any], Awaitable[Any]]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- RedisServer -----------------------------------------------------------


def test_server_starts_answers_and_stops() -> None:
    with RedisServer() as server:
        assert server.host == "127.0.0.1"
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.running
        port, directory = server.port, server.directory
        assert directory.is_dir()
        with redis.Redis.from_url(server.url, decode_responses=True) as client:
            assert client.ping()
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
            assert client.config_get("dir") == {"dir": str(directory.resolve())}
            assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert not server.running
    assert not _port_open(port)
    assert not directory.exists()
    assert repr(server) == "<RedisServer stopped>"
    server.stop()  # idempotent


def test_two_servers_get_different_ports() -> None:
    with RedisServer() as one, RedisServer() as two:
        assert one.port != two.port


def test_start_twice_is_an_error() -> None:
    with RedisServer() as server, pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_port_is_only_known_while_running() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = RedisServer().port


def test_missing_binary_fails_loudly_with_the_install_hint() -> None:
    with pytest.raises(RuntimeError) as excinfo:
        RedisServer("dce-no-such-redis-server").start()
    message = str(excinfo.value)
    assert INSTALL_HINT in message
    assert "apt-get update && apt-get install -y redis-server" in message
    assert "brew install redis" in message
    assert "dce-no-such-redis-server" in message


def test_missing_sentinel_fails_loudly_with_the_install_hint() -> None:
    setup = SentinelSetup(binary="dce-no-such-redis-sentinel")
    with pytest.raises(RuntimeError) as excinfo:
        setup.start()
    message = str(excinfo.value)
    assert SENTINEL_INSTALL_HINT in message
    assert "apt-get install -y redis-sentinel" in message
    assert "dce-no-such-redis-sentinel" in message
    assert setup.servers == []  # nothing was left running


def test_kill_keeps_port_and_directory_and_restart_reloads_the_aof() -> None:
    with RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        port, directory, pid = server.port, server.directory, server.pid
        command(port, "SET", "k", "v")
        server.kill()
        assert not server.running
        assert server.pid is None
        assert not _port_open(port)
        assert (server.port, server.directory) == (port, directory)
        assert directory.is_dir()
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        server.restart()
        assert server.running
        assert server.pid != pid
        assert command(port, "GET", "k") == "v"
        with pytest.raises(RuntimeError, match="already running"):
            server.restart()
    assert not directory.exists()


def test_restart_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="never started"):
        RedisServer().restart()


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    server = RedisServer(extra_args=["--no-such-directive", "1"])
    with pytest.raises(RuntimeError, match="no-such-directive") as excinfo:
        server.start()
    assert "did not start" in str(excinfo.value)
    assert not server.running


def test_redis_url_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:1/3")
    with redis_url() as url:
        assert url == "redis://example.invalid:1/3"


def test_redis_url_starts_a_server_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    with redis_url() as url, redis.Redis.from_url(url) as client:
        assert client.ping()
    assert not _port_open(int(url.rsplit(":", 1)[1].split("/")[0]))


def test_session_fixture_uses_redis_url_when_set(redis_url: str) -> None:
    if "REDIS_URL" in os.environ:
        assert redis_url == os.environ["REDIS_URL"]
    else:
        assert redis_url.startswith("redis://127.0.0.1:")


def test_flushdb_runs_before_each_test_part_1(store: redis.Redis) -> None:
    assert store.dbsize() == 0
    store.set("left-behind", "1")


def test_flushdb_runs_before_each_test_part_2(store: redis.Redis) -> None:
    assert store.dbsize() == 0


# -- call, clients, doors --------------------------------------------------


async def test_call_returns_plain_values_and_awaits_awaitables(call: Call) -> None:
    async def seven() -> int:
        return 7

    assert await call(3) == 3
    assert await call(None) is None
    assert await call(seven()) == 7


async def test_both_doors_and_configs_round_trip_values(
    door: str, client_config: ClientConfig, redis_client: AnyRedis, call: Call
) -> None:
    assert isinstance(redis_client, redis.Redis) == (door == "sync")
    pool_kwargs = redis_client.connection_pool.connection_kwargs
    assert pool_kwargs["protocol"] == client_config.protocol
    assert pool_kwargs["decode_responses"] == client_config.decode_responses

    assert await call(redis_client.set("k", "välue")) is True
    got = await call(redis_client.get("k"))
    assert got == ("välue" if client_config.decode_responses else "välue".encode())

    await call(redis_client.hset("h", mapping={"a": "1"}))
    # RESP2 and RESP3 give the same shape for known commands (legacy_responses=True)
    assert await call(redis_client.hgetall("h")) == (
        {"a": "1"} if client_config.decode_responses else {b"a": b"1"}
    )
    conn = redis_client.connection_pool.get_encoder()
    assert conn.decode_responses == client_config.decode_responses


async def test_every_client_config_is_covered(client_config: ClientConfig) -> None:
    assert client_config.id in {"resp2-bytes", "resp2-str", "resp3-bytes", "resp3-str"}


async def test_the_counted_connection_class_is_used(door: str, redis_client: AnyRedis) -> None:
    connection_class = redis_client.connection_pool.connection_class
    if door == "sync":
        assert connection_class.__name__ == "CountingConnection"
        assert issubclass(connection_class, redis.Connection)
    else:
        assert connection_class.__name__ == "CountingAsyncConnection"
        assert issubclass(connection_class, redis.asyncio.Connection)


# -- round trips -----------------------------------------------------------


async def test_one_round_trip_per_command(
    redis_client: AnyRedis, round_trips: RoundTrips, call: Call
) -> None:
    assert round_trips.count == 0  # the warm-up PING was not counted
    await call(redis_client.set("a", "1"))
    assert round_trips.count == 1
    await call(redis_client.get("a"))
    await call(redis_client.hset("h", "f", "v"))
    assert round_trips.count == 3
    assert round_trips.commands == [b"SET", b"GET", b"HSET"]
    round_trips.reset()
    assert (round_trips.count, round_trips.commands) == (0, [])


@pytest.mark.parametrize("transaction", [False, True], ids=["pipeline", "multi"])
async def test_one_round_trip_per_pipeline(
    redis_client: AnyRedis, round_trips: RoundTrips, transaction: bool, call: Call
) -> None:
    pipe = redis_client.pipeline(transaction=transaction)
    pipe.set("a", "1")
    pipe.incr("n")
    pipe.get("a")
    replies = await call(pipe.execute())
    await call(pipe.reset())
    assert len(replies) == 3
    assert round_trips.count == 1


async def test_handshakes_of_new_connections_are_not_counted(
    make_client: Callable[..., AnyRedis], round_trips: RoundTrips, call: Call
) -> None:
    fresh = make_client()  # connects lazily, on its first command
    await call(fresh.get("a"))
    assert round_trips.count == 1
    assert round_trips.commands == [b"GET"]


async def test_uncounted_clients_do_not_count(
    make_client: Callable[..., AnyRedis], round_trips: RoundTrips, call: Call
) -> None:
    await call(make_client(counted=False).get("a"))
    assert round_trips.count == 0


# -- INFO commandstats -----------------------------------------------------


async def test_commandstats_shows_exactly_the_commands_sent(
    redis_client: AnyRedis, commandstats: CommandStats, call: Call
) -> None:
    commandstats.snapshot()
    assert commandstats.delta() == {}
    await call(redis_client.set("a", "1"))
    await call(redis_client.get("a"))
    await call(redis_client.get("a"))
    await call(redis_client.ping())  # housekeeping: ignored
    assert commandstats.delta() == {"get": 2, "set": 1}


async def test_commandstats_counts_a_script_and_its_reload(
    redis_client: AnyRedis,
    commandstats: CommandStats,
    store: redis.Redis,
    call: Call,
) -> None:
    store.script_flush()
    script = redis_client.register_script("return redis.call('GET', KEYS[1])")
    commandstats.snapshot()
    await call(script(keys=["a"]))  # NOSCRIPT, SCRIPT LOAD, EVALSHA again
    # the failed EVALSHA counts as a call; commands a script runs count too;
    # SCRIPT LOAD does not (IGNORED_COMMANDS: the tests' own cache_scripts)
    assert commandstats.delta() == {"evalsha": 2, "get": 1}
    commandstats.snapshot()
    await call(script(keys=["a"]))
    assert commandstats.delta() == {"evalsha": 1, "get": 1}


# -- the front-door wiring -------------------------------------------------


async def test_make_manager_builds_the_doors_manager_on_the_counted_client(
    door: str, dce: ModuleType, make_manager: Callable[..., Any], redis_client: AnyRedis
) -> None:
    assert dce.__name__ == ("dce_session" if door == "sync" else "dce_session.asyncio")
    manager = make_manager(ttl_minutes=5)
    assert isinstance(manager, dce.SessionManager)
