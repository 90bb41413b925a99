"""A throwaway ``redis-server`` for test suites (yours and ours).

Tests that claim store behaviour should run against a real Redis. This
module starts one on a free loopback port, in a temporary directory, with
persistence off, and stops it (and removes the directory) afterwards:

>>> import redis
>>> from dce_session.testing import RedisServer
>>> with RedisServer() as server, redis.Redis.from_url(server.url) as client:
...     client.set("greeting", "hello")
...     client.get("greeting")
True
b'hello'
>>> server.running
False

``redis_url()`` honours ``REDIS_URL`` when it is set (CI with a Redis
service, say) and starts a server otherwise; a pytest fixture is one line::

    import pytest
    from dce_session.testing import redis_url

    @pytest.fixture(scope="session")
    def url():
        with redis_url() as value:
            yield value

A missing ``redis-server`` binary is a loud ``RuntimeError`` carrying the
install hint, never a skip: a suite that silently skips its store tests
proves nothing.

This module imports only the standard library (no ``redis``, no compiled
core), so it works before the extension is built.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["INSTALL_HINT", "RedisServer", "redis_url"]

INSTALL_HINT = (
    "redis-server was not found. Install it to run the tests:\n"
    "  Debian/Ubuntu: apt-get update && apt-get install -y redis-server\n"
    "  macOS:         brew install redis\n"
    "or set REDIS_URL to use a Redis that is already running."
)

_HOST = "127.0.0.1"
_PORT_ATTEMPTS = 5
_LOG_NAME = "redis-server.log"


def _free_port() -> int:
    """A port that was free on the loopback interface a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    """Whether a Redis on ``port`` answers ``PING`` (no client library needed)."""
    try:
        with socket.create_connection((_HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(64)
                if not chunk:
                    return False
                reply += chunk
            # "-LOADING ..." and friends mean: not ready yet.
            return reply.startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` on a free loopback port, for the length of a ``with``.

    Example:

    >>> with RedisServer() as server:
    ...     server.url
    'redis://127.0.0.1:.../0'
    >>> RedisServer("no-such-redis-server").start()
    Traceback (most recent call last):
    ...
    RuntimeError: redis-server was not found. Install it to run the tests:
      Debian/Ubuntu: apt-get update && apt-get install -y redis-server
    ...

    ``binary`` is a name looked up on ``PATH`` or a path (default
    ``redis-server``); ``extra_args`` are appended to the command line, e.g.
    ``("--maxmemory", "10mb")``. ``start()`` / ``stop()`` may be called
    directly instead of using ``with``; ``stop()`` may be called more than once.

    Raises:
        RuntimeError: the binary is missing (with the install hint), or the
            server did not answer ``PING`` within ``startup_timeout`` seconds
            (with its log).
    """

    host: str = _HOST

    def __init__(
        self,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        *,
        startup_timeout: float = 10.0,
    ) -> None:
        self.binary = binary or "redis-server"
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # -- what tests use -------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (only while running)."""
        if self._port is None or self._process is None:
            raise RuntimeError("RedisServer is not running; call start() or use `with`")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def directory(self) -> Path:
        """The server's temporary working directory (only while running)."""
        if self._tmp is None:
            raise RuntimeError("RedisServer is not running; call start() or use `with`")
        return Path(self._tmp.name)

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        """What the server wrote to its log so far ("" when none)."""
        if self._tmp is None:
            return ""
        try:
            return (Path(self._tmp.name) / _LOG_NAME).read_text(errors="replace")
        except OSError:
            return ""

    # -- lifecycle ------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the server and wait until it answers ``PING``; returns ``self``."""
        if self._process is not None:
            raise RuntimeError("RedisServer is already running")
        executable = shutil.which(self.binary)
        if executable is None:
            raise RuntimeError(f"{INSTALL_HINT}\n(looked for {self.binary!r} on PATH)")
        self._tmp = tempfile.TemporaryDirectory(prefix="dce-session-redis-")
        try:
            last_log = ""
            for _ in range(_PORT_ATTEMPTS):
                port = _free_port()
                if self._launch(executable, port):
                    self._port = port
                    return self
                last_log = self.log()
                if "address already in use" not in last_log.lower():
                    break
            raise RuntimeError(
                f"redis-server ({executable}) did not start; its log:\n{last_log or '(empty)'}"
            )
        except BaseException:
            self.stop()
            raise

    def _launch(self, executable: str, port: int) -> bool:
        """Run the server on ``port``; False when it exited before answering."""
        assert self._tmp is not None
        directory = self._tmp.name
        command = [
            executable,
            "--port", str(port),
            "--bind", _HOST,
            "--dir", directory,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", "",  # stdout, which goes to the log file below
            *self.extra_args,
        ]  # fmt: skip
        with open(os.path.join(directory, _LOG_NAME), "wb") as log:
            self._process = subprocess.Popen(
                command,
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            if _answers_ping(port):
                return True
            time.sleep(0.02)
        self._terminate()
        raise RuntimeError(
            f"redis-server did not answer PING on {_HOST}:{port} within "
            f"{self.startup_timeout:g} s; its log:\n{self.log() or '(empty)'}"
        )

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers) and remove its directory."""
        self._terminate()
        self._port = None
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self.running else "stopped"
        return f"<RedisServer {where}>"


@contextlib.contextmanager
def redis_url(binary: str | None = None) -> Iterator[str]:
    """``$REDIS_URL`` when set, else the URL of a fresh ``RedisServer``.

    Example:

    >>> with redis_url() as url:
    ...     url.startswith(("redis://", "rediss://", "unix://"))
    True
    """
    from_env = os.environ.get("REDIS_URL")
    if from_env:
        yield from_env
        return
    with RedisServer(binary) as server:
        yield server.url
