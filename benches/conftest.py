"""Fixtures of the benchmarks: a throwaway redis-server and counting clients.

Independent of ``tests/conftest.py``: ``pytest benches`` runs on its own.
Every client counts what it sends (``send_packed_command`` calls), so each
benchmark can assert that ours and the floor cost the same round trips.
"""

from __future__ import annotations

import asyncio
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


def pytest_benchmark_update_machine_info(config: Any, machine_info: dict[str, Any]) -> None:
    """What ``report.py`` prints about the machine, recorded with the results."""
    machine_info["dce_session"] = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "redis_server": _SEEN.get("redis_version") or _redis_server_binary_version(),
        "redis_url_from_env": bool(os.environ.get("REDIS_URL")),
        "redis_py": importlib.metadata.version("redis"),
        "pytest_benchmark": importlib.metadata.version("pytest-benchmark"),
        "extension_build": _extension_build(),
        "extension_file": str(_core.__file__),
    }


class Counter:
    """How many commands (round trips) were sent since the last ``reset()``."""

    def __init__(self) -> None:
        self.count = 0

    def reset(self) -> None:
        self.count = 0


class CountingConnection(redis.Connection):
    """A connection that counts every ``send_packed_command``."""

    def __init__(self, *args: Any, counter: Counter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = counter

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.counter.count += 1
        super().send_packed_command(command, check_health)


class CountingAsyncConnection(redis.asyncio.Connection):
    """The asyncio twin of :class:`CountingConnection`."""

    def __init__(self, *args: Any, counter: Counter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = counter

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.counter.count += 1
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

    def __init__(self, url: str, counter: Counter) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = redis.asyncio.ConnectionPool.from_url(
            url, connection_class=CountingAsyncConnection, counter=counter, max_connections=1
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
    value = AsyncRig(url, counter)
    try:
        yield value
    finally:
        value.close()
