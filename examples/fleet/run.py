"""Start the fleet example: two uvicorn servers of ``app.py`` sharing one Redis.

    python examples/fleet/run.py                 # servers on :8001 and :8002
    python examples/fleet/run.py --ports 9001 9002 9003 --beat-every 1

With ``REDIS_URL`` unset a throwaway ``redis-server`` is started for the run
(``dce_session.testing.RedisServer``). Ctrl+C stops everything. Then, in a
shell (or open http://127.0.0.1:8001/ and http://127.0.0.1:8002/ in a browser)::

    curl -c jar -H 'content-type: application/json' -d '{"uid": 42}' localhost:8001/login
    curl -b jar -H 'content-type: application/json' -d '{"text": "hi"}' localhost:8002/send/42
    curl -b jar -X POST localhost:8002/logout-everywhere

``Fleet`` is what the end-to-end tests start too (tests/test_fleet_e2e.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from dce_session.testing import RedisServer

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"


class Fleet:
    """``len(ports)`` uvicorn processes of ``app:app`` on ``HOST``, one Redis.

    ``servers[port]`` is the process; each names itself ``127.0.0.1:<port>``
    in bindings and presence (its address). ``kill(port)`` SIGKILLs one.
    """

    def __init__(self, redis_url: str, ports: Sequence[int], beat_every: float = 5.0,
                 log_level: str = "warning", cluster: bool = False) -> None:
        self.redis_url, self.ports, self.cluster = redis_url, list(ports), cluster
        self.beat_every, self.log_level = beat_every, log_level
        self.servers: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, port: int, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://{HOST}:{port}{path}"

    def start(self) -> Fleet:
        for port in self.ports:
            env = {**os.environ, "REDIS_URL": self.redis_url, "FLEET_SERVER": f"{HOST}:{port}",
                   "FLEET_BEAT_EVERY": str(self.beat_every),
                   "FLEET_CLUSTER": "1" if self.cluster else "0"}
            self.servers[port] = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(HERE),
                 "--host", HOST, "--port", str(port), "--log-level", self.log_level,
                 "--ws", "websockets-sansio"], env=env)
        deadline = time.monotonic() + 30
        for port in self.ports:
            while not self._healthy(port):
                if self.servers[port].poll() is not None:
                    self.stop()
                    raise RuntimeError(f"the server on port {port} exited at start")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the server on port {port} did not start in 30 s")
                time.sleep(0.05)
        return self

    def _healthy(self, port: int) -> bool:
        try:
            with urllib.request.urlopen(self.url(port, "/health"), timeout=1) as reply:
                return bool(json.load(reply)["server"])
        except OSError:
            return False

    def kill(self, port: int) -> None:
        """SIGKILL one server: no clean exit, its bindings stay until its presence lapses."""
        process = self.servers.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.servers.values():
            if process.poll() is None:
                process.terminate()  # uvicorn exits cleanly: sockets closed, server forgotten
        for process in self.servers.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.servers.clear()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


@contextlib.contextmanager
def redis_for_the_fleet() -> Iterator[str]:
    """``$REDIS_URL``, or a redis-server started for the run."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with RedisServer() as server:
        print(f"started redis-server at {server.url}", flush=True)
        yield server.url


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ports", type=int, nargs="+", default=[8001, 8002])
    parser.add_argument("--beat-every", type=float, default=5.0,
                        help="presence beat, seconds (a killed server drops out after 3)")
    parser.add_argument("--cluster", action="store_true",
                        help="REDIS_URL is a node of a Redis Cluster")
    args = parser.parse_args(argv)
    if args.cluster and not os.environ.get("REDIS_URL"):
        parser.error("--cluster needs REDIS_URL: a node of a running cluster")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the fleet, then Redis
    with redis_for_the_fleet() as url, \
            Fleet(url, args.ports, args.beat_every, "info", args.cluster) as fleet:
        for port in fleet.ports:
            print(f"server {HOST}:{port}: {fleet.url(port)}"
                  f"  websocket {fleet.url(port, '/ws', 'ws')}", flush=True)
        print("Ctrl+C stops the fleet", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while all(process.poll() is None for process in fleet.servers.values()):
                time.sleep(0.5)


if __name__ == "__main__":
    main()
