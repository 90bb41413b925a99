"""Fixtures of the benchmarks: a throwaway redis-server and counting clients.

Independent of ``tests/conftest.py``: ``pytest benches`` runs on its own.
Every client counts what it sends (``send_packed_command`` calls), so each
benchmark can assert that ours and the floor cost the same round trips.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.metadata
import os
import platform
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from dce_session import _core
from dce_session.testing import redis_url

_SEEN: dict[str, str] = {}  # what the run learnt about its Redis, for the JSON


def _elf_sections(path: Path) -> list[str] | None:
    """Section names of a 64-bit little-endian ELF file; None for anything else."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(index: int) -> tuple[int, ...]:
        return struct.unpack_from("<IIQQQQ", data, shoff + index * shentsize)

    strings = header(shstrndx)[4]
    names = []
    for index in range(shnum):
        start = strings + header(index)[0]
        names.append(data[start:data.index(b"\0", start)].decode())
    return names


def _extension_build() -> str:
    """"release" or "debug" (DWARF sections present: an unoptimised `maturin develop`)."""
    path = Path(_core.__file__ or "")
    try:
        sections = _elf_sections(path)
    except (OSError, ValueError, struct.error):
        sections = None
    if sections is None:
        return f"unknown ({path.name})"
    return "debug" if ".debug_info" in sections else "release"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _redis_server_binary_version() -> str:
    """``v=`` of ``redis-server --version`` (when no benchmark talked to a Redis)."""
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return "?"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def pytest_sessionstart(session: Any) -> None:
    _SEEN["load_at_start"] = list(os.getloadavg())  # type: ignore[assignment]


def pytest_benchmark_update_machine_info(config: Any, machine_info: dict[str, Any]) -> None:
    """What ``report.py`` prints about the machine, recorded with the results."""
    machine_info["dce_session"] = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "redis_server": _SEEN.get("redis_version") or _redis_server_binary_version(),
        "redis_url_from_env": bool(os.environ.get("REDIS_URL")),
        "load_average_at_start": _SEEN.get("load_at_start"),
        "redis_py": importlib.metadata.version("redis"),
        "hiredis": _version("hiredis"),
        "hiredis_in_use": bool(redis.utils.HIREDIS_AVAILABLE),
        "build_profile": os.environ.get("BUILD_PROFILE") or "?",
        "pytest_benchmark": importlib.metadata.version("pytest-benchmark"),
        "extension_build": _extension_build(),
        "extension_file": str(_core.__file__),
    }


class Counter:
    """Round trips (socket writes) since the last ``reset()``, and the
    top-level commands they carried (``sent``: name -> count).

    A write is kept as sent (a reference, no copy: the same cost for every
    side) and its commands are read out of the RESP bytes only when ``sent``
    is asked for, after the timed block. Every way a client sends goes
    through ``send_packed_command``: redis-py's ``execute_command`` and
    pipelines, and ours packing a script call itself."""

    def __init__(self) -> None:
        self.count = 0
        self._writes: list[Any] = []

    def reset(self) -> None:
        self.count = 0
        self._writes.clear()

    def record(self, packed: Any) -> None:
        self.count += 1
        self._writes.append(packed)

    @property
    def sent(self) -> collections.Counter[str]:
        names: collections.Counter[str] = collections.Counter()
        for packed in self._writes:
            names.update(command_names(packed))
        return names


def command_names(packed: Any) -> list[str]:
    """The command names in one write: RESP arrays of bulk strings (a pipeline
    is several), as redis-py and hiredis pack them."""
    if isinstance(packed, str):
        data = packed.encode()
    elif isinstance(packed, (bytes, bytearray, memoryview)):
        data = bytes(packed)
    else:
        data = b"".join(bytes(part) for part in packed)
    names, at = [], 0
    while at < len(data):
        end = data.index(b"\r\n", at)
        count, at = int(data[at + 1:end]), end + 2  # *<count>
        for position in range(count):
            end = data.index(b"\r\n", at)
            size, at = int(data[at + 1:end]), end + 2  # $<size>
            if position == 0:
                names.append(data[at:at + size].decode().upper())
            at += size + 2
    return names


class CountingConnection(redis.Connection):
    """A connection that records every ``send_packed_command`` (one per round
    trip: a pipeline is one) in its ``Counter``."""

    def __init__(self, *args: Any, counter: Counter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = counter

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.counter.record(command)
        super().send_packed_command(command, check_health)


class CountingAsyncConnection(redis.asyncio.Connection):
    """The asyncio twin of :class:`CountingConnection`."""

    def __init__(self, *args: Any, counter: Counter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = counter

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.counter.record(command)
        await super().send_packed_command(command, check_health)


@pytest.fixture(scope="session")
def url() -> Iterator[str]:
    """A Redis for the whole run (``REDIS_URL``, else a fresh redis-server)."""
    with redis_url() as value:
        with redis.Redis.from_url(value) as probe:
            _SEEN["redis_version"] = str(probe.info("server")["redis_version"])
        yield value


@pytest.fixture
def counter() -> Counter:
    return Counter()


@pytest.fixture
def stats(url: str) -> Iterator[redis.Redis]:
    """A plain client for setup, checks and ``INFO commandstats`` (never counted)."""
    with redis.Redis.from_url(url) as value:
        yield value


@pytest.fixture
def client(url: str, counter: Counter) -> Iterator[redis.Redis]:
    """A blocking client on one counting connection; the db is flushed first."""
    pool = redis.ConnectionPool.from_url(
        url, connection_class=CountingConnection, counter=counter, max_connections=1
    )
    with redis.Redis(connection_pool=pool) as value:
        value.flushdb()
        yield value
    pool.disconnect()


class AsyncRig:
    """An event loop and a counting asyncio client living in it.

    ``run(coroutine)`` runs to completion in that one loop; ``close()`` closes
    the client, then the loop (``filterwarnings = error`` catches leaks).
    """

    def __init__(self, url: str, counter: Counter, max_connections: int = 1) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = redis.asyncio.ConnectionPool.from_url(
            url, connection_class=CountingAsyncConnection, counter=counter,
            max_connections=max_connections,
        )
        self.client = redis.asyncio.Redis(connection_pool=self.pool)
        self.run(self.client.flushdb())

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        try:
            self.run(self.client.aclose())
            self.run(self.pool.aclose())
        finally:
            self.loop.close()


@pytest.fixture
def rig(url: str, counter: Counter) -> Iterator[AsyncRig]:
    """One asyncio client on one counting connection (``pool_rig``: 100 connections)."""
    value = AsyncRig(url, counter)
    try:
        yield value
    finally:
        value.close()


@pytest.fixture
def pool_rig(url: str, counter: Counter) -> Iterator[AsyncRig]:
    """An asyncio client over one pool of up to 100 counting connections."""
    value = AsyncRig(url, counter, max_connections=100)
    try:
        yield value
    finally:
        value.close()


def pytest_report_header(config: Any) -> list[str]:
    """What the run measures on, printed first (``make bench`` shows it)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    hiredis = _version("hiredis")
    return [
        f"dce-session benches: {_cpu_model()}, {os.cpu_count()} cores, load average {load}",
        f"  Python {platform.python_version()}, redis-py {importlib.metadata.version('redis')}, "
        f"hiredis {hiredis or 'NOT installed'}"
        f"{' (in use)' if redis.utils.HIREDIS_AVAILABLE else ' (not in use)'}, "
        f"redis-server {_redis_server_binary_version()}, extension build {_extension_build()}",
    ]
