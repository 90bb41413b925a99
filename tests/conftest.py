"""Shared fixtures: a real Redis, both front doors, and round-trip accounting.

Every test runs against a real ``redis-server`` (``$REDIS_URL`` when set, else
one started by ``dce_session.testing.RedisServer`` for the whole run); the
database is flushed before each test.

Fixtures
========
``redis_url``      session: URL of the test Redis.
``flushdb``        autouse: FLUSHDB before every test.
``client_config``  ``ClientConfig`` over decode_responses x RESP version:
                   ids ``resp2-bytes``, ``resp2-str``, ``resp3-bytes``, ``resp3-str``.
``door``           ``"sync"`` / ``"async"``: which front door the test drives.
``dce``            the door's module: ``dce_session`` or ``dce_session.asyncio``.
``round_trips``    ``RoundTrips``: ``.count`` of socket writes (one per command,
                   one per pipeline) made by counted clients; ``.reset()``.
                   Connection handshakes (HELLO, CLIENT SETINFO, ...) never count.
``redis_client``   a counted client of the door's kind (``redis.Redis`` or
                   ``redis.asyncio.Redis``) built from ``client_config``, warmed
                   up (one PING) before ``round_trips`` is reset; closed at teardown.
``make_client``    ``make_client(counted=True, **overrides)``: more such clients.
``make_manager``   ``make_manager(client=None, **kwargs)``: the door's
                   ``SessionManager(redis_client, **kwargs)``.
``call``           ``await call(x)``: awaits ``x`` if it is awaitable, else returns
                   it -- so one ``async def`` test body drives both doors.
``store``          a plain, uncounted sync client (``decode_responses=True``, RESP2)
                   for looking at what is really in Redis.
``commandstats``   ``CommandStats``: ``.snapshot()`` then ``.delta()`` ->
                   ``{"evalsha": 1}``, from ``INFO commandstats`` (server-wide:
                   ``store`` commands count too, so inspect after ``delta()``).

Example::

    async def test_set_get(make_manager, call, round_trips, commandstats):
        m = make_manager(ttl_minutes=5)
        s = m.new()
        commandstats.snapshot()
        round_trips.reset()
        await call(s.set("a", 1))
        assert round_trips.count == 1
        assert commandstats.delta() == {"evalsha": 1}
        assert await call(s.get("a")) == 1
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import pytest_asyncio
import redis
import redis.asyncio

try:
    from dce_session.testing import redis_url as _redis_url
except Exception:
    # The package (or its Rust core) is mid-change or unbuilt: its own tests will say so.
    # The helper is stdlib-only, so load it by path and keep every other test running.
    _path = Path(__file__).parents[1] / "python" / "dce_session" / "testing.py"
    _spec = importlib.util.spec_from_file_location("_dce_session_testing", _path)
    assert _spec is not None
    assert _spec.loader is not None
    _testing = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_testing)
    _redis_url = _testing.redis_url

T = TypeVar("T")

AnyRedis = redis.Redis | redis.asyncio.Redis


# -- the server ------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``$REDIS_URL``, or a throwaway redis-server for the whole run."""
    with _redis_url() as url:
        yield url


@pytest.fixture(autouse=True)
def flushdb(redis_url: str) -> None:
    """Every test starts from an empty database."""
    with redis.Redis.from_url(redis_url, protocol=2) as client:
        client.flushdb()


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    """A plain sync client, str replies, for inspecting what is in Redis."""
    client = redis.Redis.from_url(redis_url, decode_responses=True, protocol=2)
    try:
        yield client
    finally:
        client.close()


# -- client configurations -------------------------------------------------


@dataclass(frozen=True)
class ClientConfig:
    """The reply settings of the caller's redis-py client that we must support."""

    decode_responses: bool
    protocol: int

    @property
    def id(self) -> str:
        return f"resp{self.protocol}-{'str' if self.decode_responses else 'bytes'}"

    def kwargs(self) -> dict[str, Any]:
        return {"decode_responses": self.decode_responses, "protocol": self.protocol}


CLIENT_CONFIGS = [
    ClientConfig(decode_responses=decode, protocol=protocol)
    for protocol in (2, 3)
    for decode in (False, True)
]


@pytest.fixture(params=CLIENT_CONFIGS, ids=[c.id for c in CLIENT_CONFIGS])
def client_config(request: pytest.FixtureRequest) -> ClientConfig:
    config: ClientConfig = request.param
    return config


# -- round trips -----------------------------------------------------------


class RoundTrips:
    """How many times counted clients wrote to Redis (a pipeline is one)."""

    def __init__(self) -> None:
        self.count = 0
        self.commands: list[bytes] = []

    def reset(self) -> None:
        self.count = 0
        self.commands.clear()

    def record(self, packed: object) -> None:
        self.count += 1
        self.commands.append(_first_command(packed))

    def __repr__(self) -> str:
        return f"<RoundTrips count={self.count} commands={self.commands!r}>"


def _first_command(packed: object) -> bytes:
    """The first command name in a packed write, for debugging messages."""
    if isinstance(packed, str):
        data = packed.encode()
    elif isinstance(packed, (bytes, bytearray, memoryview)):
        data = bytes(packed)
    else:
        data = b"".join(bytes(part) for part in packed)  # type: ignore[attr-defined]
    # *<n>\r\n$<len>\r\n<NAME>\r\n...
    parts = data.split(b"\r\n", 3)
    return parts[2].upper() if len(parts) > 2 else data[:32]


class CountingConnection(redis.Connection):
    """A blocking connection that records each write (outside the handshake)."""

    def __init__(self, *args: Any, round_trips: RoundTrips | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # redis-py: untyped
        self.round_trips = round_trips if round_trips is not None else RoundTrips()
        self._handshaking = 0

    def on_connect_check_health(self, check_health: bool = True) -> None:
        self._handshaking += 1
        try:
            super().on_connect_check_health(check_health)
        finally:
            self._handshaking -= 1

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._handshaking:
            self.round_trips.record(command)
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class CountingAsyncConnection(redis.asyncio.Connection):
    """The asyncio twin of ``CountingConnection``."""

    def __init__(self, *args: Any, round_trips: RoundTrips | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.round_trips = round_trips if round_trips is not None else RoundTrips()
        self._handshaking = 0

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        self._handshaking += 1
        try:
            await super().on_connect_check_health(check_health)
        finally:
            self._handshaking -= 1

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._handshaking:
            self.round_trips.record(command)
        await super().send_packed_command(command, check_health)


@pytest.fixture
def round_trips() -> RoundTrips:
    return RoundTrips()


# -- INFO commandstats -----------------------------------------------------

IGNORED_COMMANDS = frozenset({"info", "config", "flushdb", "flushall", "ping", "client", "hello",
                              "script|load"})  # script|load: the tests' own cache_scripts


class CommandStats:
    """Which commands the server executed between ``snapshot()`` and ``delta()``.

    Names are lower-case as Redis reports them; subcommands keep their bar
    (``script|load``). Housekeeping commands (``IGNORED_COMMANDS``, and their
    subcommands) are left out. Server-wide: every client's commands count.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._before: dict[str, int] = {}
        self.snapshot()

    def calls(self) -> dict[str, int]:
        """Calls per command since the server started (or CONFIG RESETSTAT)."""
        info: dict[str, Any] = self._client.info("commandstats")
        calls: dict[str, int] = {}
        for key, stats in info.items():
            name = key.removeprefix("cmdstat_")
            if name in IGNORED_COMMANDS or name.split("|", 1)[0] in IGNORED_COMMANDS:
                continue
            calls[name] = int(stats["calls"])
        return calls

    def snapshot(self) -> None:
        self._before = self.calls()

    def delta(self) -> dict[str, int]:
        """Calls per command since the last ``snapshot()`` (zeros left out)."""
        now = self.calls()
        changed = {name: n - self._before.get(name, 0) for name, n in now.items()}
        return {name: n for name, n in sorted(changed.items()) if n}


@pytest.fixture
def commandstats(redis_url: str) -> Iterator[CommandStats]:
    client = redis.Redis.from_url(redis_url, decode_responses=True, protocol=2)
    try:
        yield CommandStats(client)
    finally:
        client.close()


# -- front doors -----------------------------------------------------------

DOORS = ["sync", "async"]


@pytest.fixture(params=DOORS)
def door(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def dce(door: str) -> ModuleType:
    """``dce_session`` for the sync door, ``dce_session.asyncio`` for the async one."""
    # Imported here so that fixtures not about the front doors work without them.
    if door == "sync":
        import dce_session

        return dce_session
    import dce_session.asyncio

    return dce_session.asyncio


async def call(value: Awaitable[T] | T) -> T:
    """Await ``value`` when it is awaitable (async door), else return it (sync door)."""
    if inspect.isawaitable(value):
        return await value
    return value


@pytest.fixture(name="call")
def call_fixture() -> Callable[[Any], Awaitable[Any]]:
    return call


MakeClient = Callable[..., AnyRedis]


@pytest_asyncio.fixture
async def make_client(
    redis_url: str, door: str, client_config: ClientConfig, round_trips: RoundTrips
) -> AsyncIterator[MakeClient]:
    """``make_client(counted=True, **overrides)``: a client of the door's kind."""
    made: list[AnyRedis] = []

    def make(counted: bool = True, **overrides: Any) -> AnyRedis:
        kwargs: dict[str, Any] = {**client_config.kwargs(), **overrides}
        if door == "sync":
            if counted:
                kwargs.update(connection_class=CountingConnection, round_trips=round_trips)
            pool = redis.ConnectionPool.from_url(redis_url, **kwargs)
            client: AnyRedis = redis.Redis.from_pool(pool)
        else:
            if counted:
                kwargs.update(connection_class=CountingAsyncConnection, round_trips=round_trips)
            apool = redis.asyncio.ConnectionPool.from_url(redis_url, **kwargs)
            client = redis.asyncio.Redis.from_pool(apool)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in reversed(made):
            if isinstance(client, redis.asyncio.Redis):
                await client.aclose()
            else:
                client.close()


@pytest_asyncio.fixture
async def redis_client(make_client: MakeClient, round_trips: RoundTrips) -> AnyRedis:
    """The door's counted client, connected (one PING) before ``round_trips`` resets."""
    client = make_client()
    assert await call(client.ping())
    round_trips.reset()
    return client


def cache_scripts(store: redis.Redis, manager: Any) -> Any:
    """Put ``manager``'s scripts in ``store``'s server script cache, so that
    round trips count no NOSCRIPT retry; returns ``manager``."""
    for script in manager.scripts:
        assert store.script_load(script.source) == script.sha
    return manager


@pytest.fixture
def make_manager(dce: ModuleType, redis_client: AnyRedis,
                 store: redis.Redis) -> Callable[..., Any]:
    """``make_manager(client=None, **kwargs)``: the door's ``SessionManager``,
    its scripts already in the test server's cache (:func:`cache_scripts`)."""

    def make(client: AnyRedis | None = None, **kwargs: Any) -> Any:
        return cache_scripts(store, dce.SessionManager(
            redis_client if client is None else client, **kwargs))

    return make


# -- measured figures (fault tests) -----------------------------------------

FIGURES = pytest.StashKey[dict[str, dict[str, Any]]]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A dict for what a test measured (times, counts, error types): printed in
    the run's summary and kept in the pytest cache under ``dce/figures``."""
    measured: dict[str, Any] = {}
    request.config.stash.setdefault(FIGURES, {})[request.node.nodeid] = measured
    return measured


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    measured = {test: values for test, values in config.stash.get(FIGURES, {}).items() if values}
    if not measured:
        return
    terminalreporter.section("measured figures")
    for test, values in measured.items():
        terminalreporter.write_line(f"{test}: {values}")
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
    if cache is not None:
        cache.set("dce/figures", measured)
