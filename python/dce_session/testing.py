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

For fault tests the same module has ``RedisServer.kill()`` / ``restart()``
(SIGKILL, then the same port and directory: AOF or RDB files survive),
``LocalCluster`` (a throwaway Redis Cluster) and ``SentinelSetup`` (one
primary, one replica, three ``redis-sentinel`` processes), and ``command()``,
a one-shot RESP client.

A missing ``redis-server`` binary is a loud ``RuntimeError`` carrying the
install hint, never a skip: a suite that silently skips its store tests
proves nothing.

This module imports only the standard library (no ``redis``, no compiled
core), so it works before the extension is built.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

__all__ = [
    "INSTALL_HINT",
    "SENTINEL_INSTALL_HINT",
    "LocalCluster",
    "RedisServer",
    "SentinelSetup",
    "command",
    "redis_url",
]

INSTALL_HINT = (
    "redis-server was not found. Install it to run the tests:\n"
    "  Debian/Ubuntu: apt-get update && apt-get install -y redis-server\n"
    "  macOS:         brew install redis\n"
    "or set REDIS_URL to use a Redis that is already running."
)

SENTINEL_INSTALL_HINT = (
    "redis-sentinel was not found. Install it to run the Sentinel tests:\n"
    "  Debian/Ubuntu: apt-get update && apt-get install -y redis-sentinel\n"
    "  macOS:         brew install redis (it ships redis-sentinel)"
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


class ReplyError(Exception):
    """An error reply (``-ERR ...``) to :func:`command`."""


def _read_reply(reader: BinaryIO) -> Any:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("the server closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return ReplyError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(reader) for _ in range(size)]
    raise ConnectionError(f"unexpected reply line {line[:40]!r}")


def command(port: int, *args: str | int, timeout: float = 5.0) -> Any:
    """Send one command to the Redis (or Sentinel) on ``port``; its RESP2 reply.

    Strings come back as ``str``; an error reply raises :class:`ReplyError`;
    ``OSError`` when nothing answers. Standard library only, one connection
    per call: for setting servers up and looking at them, not for load.

    >>> with RedisServer() as server:
    ...     command(server.port, "SET", "k", 1), command(server.port, "GET", "k")
    ('OK', '1')
    """
    parts = [str(arg).encode() for arg in args]
    packed = b"*%d\r\n" % len(parts) + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)
    with socket.create_connection((_HOST, port), timeout=timeout) as sock:
        sock.sendall(packed)
        with sock.makefile("rb") as reader:
            reply = _read_reply(reader)
    if isinstance(reply, ReplyError):
        raise reply
    return reply


def _answers_ping(port: int) -> bool:
    """Whether a Redis on ``port`` answers ``PING`` (not ``-LOADING``: ready)."""
    try:
        return bool(command(port, "PING", timeout=0.5) == "PONG")
    except (OSError, ReplyError):
        return False


def _info(port: int, section: str) -> dict[str, str]:
    """``INFO section`` of the server on ``port`` as a dict of str."""
    text = command(port, "INFO", section)
    pairs = (line.split(":", 1) for line in str(text).splitlines() if ":" in line)
    return {key: value for key, value in pairs}


def _wait_until(ready: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll ``ready`` every 20 ms; ``RuntimeError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except (OSError, ReplyError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


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
    ``("--maxmemory", "10mb")``; ``port`` fixes the port (default: a free one).
    ``start()`` / ``stop()`` may be called directly instead of using ``with``;
    ``stop()`` may be called more than once.

    For fault tests, ``kill()`` ends the process abruptly (SIGKILL by
    default) and keeps the port and the directory, so ``restart()`` brings
    the same server back with whatever it had persisted (AOF, RDB):

    >>> with RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as server:
    ...     command(server.port, "SET", "k", "kept")
    ...     server.kill()
    ...     server.running
    ...     server.restart().running, command(server.port, "GET", "k")
    'OK'
    False
    (True, 'kept')

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
        port: int | None = None,
    ) -> None:
        self.binary = binary or "redis-server"
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._fixed_port = port
        self._port: int | None = None
        self._executable: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # -- what tests use -------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (from ``start()`` to ``stop()``; kept across ``kill()``)."""
        if self._port is None:
            raise RuntimeError("RedisServer is not running; call start() or use `with`")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def directory(self) -> Path:
        """The server's temporary working directory (from ``start()`` to ``stop()``)."""
        if self._tmp is None:
            raise RuntimeError("RedisServer is not running; call start() or use `with`")
        return Path(self._tmp.name)

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

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
        if self._process is not None or self._port is not None:
            raise RuntimeError("RedisServer is already running")
        executable = shutil.which(self.binary)
        if executable is None:
            raise RuntimeError(f"{INSTALL_HINT}\n(looked for {self.binary!r} on PATH)")
        self._executable = executable
        self._tmp = tempfile.TemporaryDirectory(prefix="dce-session-redis-")
        try:
            last_log = ""
            for _ in range(1 if self._fixed_port else _PORT_ATTEMPTS):
                port = self._fixed_port or _free_port()
                if self._launch(port):
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

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL: no shutdown, no final save) and wait for the
        exit; the port and the directory stay for ``restart()``."""
        process = self._process
        if process is None:
            raise RuntimeError("RedisServer is not running")
        if process.poll() is None:
            process.send_signal(sig)
            process.wait(timeout=30)
        self._process = None

    def restart(self) -> RedisServer:
        """Start the server again on its port and in its directory (after ``kill()``),
        and wait until it answers ``PING`` (its data loaded); returns ``self``."""
        if self._port is None or self._executable is None:
            raise RuntimeError("RedisServer was never started; call start()")
        if self.running:
            raise RuntimeError("RedisServer is already running")
        if not self._launch(self._port):
            raise RuntimeError(f"redis-server did not restart; its log:\n{self.log()}")
        return self

    def _launch(self, port: int) -> bool:
        """Run the server on ``port``; False when it exited before answering."""
        assert self._tmp is not None
        assert self._executable is not None
        directory = self._tmp.name
        command = [
            self._executable,
            "--port", str(port),
            "--bind", _HOST,
            "--dir", directory,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", "",  # stdout, which goes to the log file below
            *self.extra_args,
        ]  # fmt: skip
        with open(os.path.join(directory, _LOG_NAME), "ab") as log:
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


def _free_cluster_port(taken: Sequence[int]) -> int:
    """A free port below 55535 whose cluster bus port (+10000) is free too."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(20000, 45000)
        if port in taken:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                    probe.bind((_HOST, candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair (port, port + 10000) for a cluster node")


class LocalCluster:
    """A throwaway Redis Cluster on loopback: ``masters`` primaries (the 16384
    slots split evenly) with ``replicas`` replicas each, one ``RedisServer``
    per node, for the length of a ``with``.

    >>> with LocalCluster(masters=3) as cluster:
    ...     len(cluster.nodes), command(cluster.ports[0], "CLUSTER", "INFO").count("state:ok")
    (3, 1)

    ``extra_args`` go to every node (e.g. ``("--appendonly", "yes")`` so
    that ``kill_all()`` then ``restart_all()`` keeps the data). Nodes use
    ``--cluster-node-timeout`` ``node_timeout_ms`` (default 2000: failures
    are noticed in seconds). Needs only ``redis-server``.
    """

    def __init__(self, masters: int = 3, replicas: int = 0, extra_args: Sequence[str] = (), *,
                 node_timeout_ms: int = 2000, startup_timeout: float = 30.0) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs masters >= 1 and replicas >= 0")
        self.masters, self.replicas = masters, replicas
        self.extra_args = tuple(extra_args)
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout = startup_timeout
        self.nodes: list[RedisServer] = []

    @property
    def ports(self) -> list[int]:
        """Every node's port, the primaries first (as started)."""
        return [node.port for node in self.nodes]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, for a cluster client."""
        return [(_HOST, port) for port in self.ports]

    def start(self) -> LocalCluster:
        """Start the nodes, assign the slots, join them; wait for ``cluster_state:ok``."""
        try:
            for _ in range(self.masters * (1 + self.replicas)):
                port = _free_cluster_port([node.port for node in self.nodes])
                self.nodes.append(RedisServer(extra_args=(
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                    *self.extra_args), port=port, startup_timeout=self.startup_timeout))
                self.nodes[-1].start()
            ports = self.ports
            for epoch, port in enumerate(ports, 1):
                command(port, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
            per_master = 16384 // self.masters
            for index, port in enumerate(ports[:self.masters]):
                first = index * per_master
                last = 16383 if index == self.masters - 1 else first + per_master - 1
                command(port, "CLUSTER", "ADDSLOTSRANGE", first, last)
            for port in ports[1:]:
                command(port, "CLUSTER", "MEET", _HOST, ports[0])
            _wait_until(lambda: all(
                len(str(command(port, "CLUSTER", "NODES")).strip().splitlines()) == len(ports)
                for port in ports), "every cluster node to know every other", self.startup_timeout)
            ids = [str(command(port, "CLUSTER", "MYID")) for port in ports[:self.masters]]
            for offset, port in enumerate(ports[self.masters:]):
                command(port, "CLUSTER", "REPLICATE", ids[offset % self.masters])
            self.wait_ok()
            return self
        except BaseException:
            self.stop()
            raise

    def wait_ok(self, timeout: float | None = None) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and every
        replica's link to its primary is up."""
        def ok() -> bool:
            for node in self.nodes:
                if not node.running:
                    continue
                if "cluster_state:ok" not in str(command(node.port, "CLUSTER", "INFO")):
                    return False
                replication = _info(node.port, "replication")
                if replication.get("role") == "slave" \
                        and replication.get("master_link_status") != "up":
                    return False
            return True
        _wait_until(ok, "the cluster to be ok", timeout or self.startup_timeout)

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """``kill()`` every node: the whole cluster is down."""
        for node in self.nodes:
            if node.running:
                node.kill(sig)

    def restart_all(self) -> None:
        """``restart()`` every stopped node (same ports, same ``nodes.conf``) and wait
        for ``cluster_state:ok``."""
        for node in self.nodes:
            if not node.running:
                node.restart()
        self.wait_ok()

    def stop(self) -> None:
        """Stop every node and remove their directories."""
        for node in self.nodes:
            node.stop()
        self.nodes = []

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class SentinelSetup:
    """One primary, one replica and three ``redis-sentinel`` processes on
    loopback, for the length of a ``with``; the sentinels watch the primary
    as ``service`` (default ``"dce-primary"``, quorum 2).

    >>> with SentinelSetup() as setup:
    ...     setup.primary_port() == setup.servers[0].port, len(setup.sentinel_ports)
    (True, 3)

    A client reaches the primary through the sentinels, as in production:
    ``redis.sentinel.Sentinel(setup.sentinels).master_for(setup.service)``.
    ``failover()`` asks a sentinel for a failover (``SENTINEL FAILOVER``);
    killing the primary (``setup.server_on(setup.primary_port()).kill()``)
    makes the sentinels fail over by themselves after ``down_after_ms``
    (default 1000). ``wait_for_failover(old_port)`` waits until every
    sentinel names another primary, that server serves writes and the old
    primary, if alive, is a replica.

    Raises:
        RuntimeError: ``redis-sentinel`` or ``redis-server`` is missing (with
            the install hint), or the setup did not come up in time.
    """

    def __init__(self, *, service: str = "dce-primary", down_after_ms: int = 1000,
                 failover_timeout_ms: int = 10000, extra_args: Sequence[str] = (),
                 binary: str = "redis-sentinel", startup_timeout: float = 30.0) -> None:
        self.service = service
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        self.extra_args = tuple(extra_args)
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.servers: list[RedisServer] = []
        self.sentinel_ports: list[int] = []
        self._sentinels: list[subprocess.Popen[bytes]] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """``(host, port)`` of each sentinel, as ``redis.sentinel.Sentinel`` takes them."""
        return [(_HOST, port) for port in self.sentinel_ports]

    def start(self) -> SentinelSetup:
        """Start the servers and the sentinels; wait until each sentinel sees the
        primary, its replica and the two other sentinels."""
        executable = shutil.which(self.binary)
        if executable is None:
            raise RuntimeError(f"{SENTINEL_INSTALL_HINT}\n(looked for {self.binary!r} on PATH)")
        try:
            self._tmp = tempfile.TemporaryDirectory(prefix="dce-session-sentinel-")
            # No 5 s wait before a full sync (the default for diskless replication).
            server_args = ("--repl-diskless-sync-delay", "0", *self.extra_args)
            primary = RedisServer(extra_args=server_args).start()
            self.servers.append(primary)
            replica = RedisServer(extra_args=(
                *server_args, "--replicaof", _HOST, str(primary.port))).start()
            self.servers.append(replica)
            _wait_until(lambda: _info(replica.port, "replication").get(
                "master_link_status") == "up", "the replica to sync", self.startup_timeout)
            for index in range(3):
                self._start_sentinel(executable, Path(self._tmp.name) / f"sentinel-{index}",
                                     primary.port)
            def sentinels_see_everything() -> bool:
                for port in self.sentinel_ports:
                    if len(command(port, "SENTINEL", "SENTINELS", self.service)) != 2:
                        return False
                    if len(command(port, "SENTINEL", "REPLICAS", self.service)) != 1:
                        return False
                return True
            _wait_until(sentinels_see_everything, "the sentinels to find the replica and "
                        "each other", self.startup_timeout)
            return self
        except BaseException:
            self.stop()
            raise

    def _start_sentinel(self, executable: str, directory: Path, primary_port: int) -> None:
        directory.mkdir()
        for _ in range(_PORT_ATTEMPTS):
            port = _free_port()
            config = directory / "sentinel.conf"  # a sentinel rewrites its own config
            config.write_text("\n".join([
                f"port {port}", f"bind {_HOST}", "daemonize no", f'dir "{directory}"',
                'logfile ""', "sentinel resolve-hostnames no",
                f"sentinel monitor {self.service} {_HOST} {primary_port} 2",
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
                f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {self.service} 1", ""]))
            with open(directory / "sentinel.log", "ab") as log:
                process = subprocess.Popen([executable, str(config)], cwd=directory,
                                           stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT)
            self._sentinels.append(process)

            def up_or_exited(process: subprocess.Popen[bytes] = process, port: int = port) -> bool:
                return process.poll() is not None or _answers_ping(port)

            try:
                _wait_until(up_or_exited, f"redis-sentinel on port {port}", self.startup_timeout)
            except RuntimeError:
                raise RuntimeError(f"redis-sentinel did not start; its log:\n"
                                   f"{(directory / 'sentinel.log').read_text()}") from None
            if process.poll() is None:
                self.sentinel_ports.append(port)
                return
            self._sentinels.pop()
        raise RuntimeError(f"redis-sentinel did not start; its log:\n"
                           f"{(directory / 'sentinel.log').read_text()}")

    def primary_port(self, sentinel: int = 0) -> int:
        """The port of the primary as sentinel number ``sentinel`` names it now."""
        _host, port = command(self.sentinel_ports[sentinel], "SENTINEL",
                              "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(port)

    def server_on(self, port: int) -> RedisServer:
        """The ``RedisServer`` listening on ``port``."""
        for server in self.servers:
            if server._port == port:
                return server
        raise KeyError(port)

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: promote the replica now (no agreement needed)."""
        command(self.sentinel_ports[0], "SENTINEL", "FAILOVER", self.service)

    def failover_done(self, old_port: int) -> int | None:
        """The new primary's port once the failover away from ``old_port`` is
        complete: every sentinel names it, it is a primary, and the old primary
        (if it still runs) has been demoted to a replica. None before that.

        Until the demotion the old primary still accepts writes from clients
        connected to it; they are lost when it resyncs from the new one."""
        try:
            ports = {self.primary_port(index) for index in range(len(self.sentinel_ports))}
            if len(ports) != 1 or old_port in ports:
                return None
            (port,) = ports
            if _info(port, "replication").get("role") != "master":
                return None
            old = self.server_on(old_port)
            if old.running and _info(old_port, "replication").get("role") != "slave":
                return None
        except (OSError, ReplyError):
            return None
        return port

    def wait_for_failover(self, old_port: int, timeout: float | None = None) -> int:
        """Wait until :meth:`failover_done`; the new primary's port."""
        found: list[int] = []

        def done() -> bool:
            port = self.failover_done(old_port)
            if port is None:
                return False
            found[:] = [port]
            return True
        _wait_until(done, "the sentinels to fail over", timeout or self.startup_timeout)
        return found[0]

    def stop(self) -> None:
        """Stop the sentinels and the servers; remove the directories."""
        for process in self._sentinels:
            if process.poll() is None:
                process.terminate()
        for process in self._sentinels:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._sentinels, self.sentinel_ports = [], []
        for server in self.servers:
            server.stop()
        self.servers = []
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.cleanup()

    def __enter__(self) -> SentinelSetup:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


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
