"""Real HTTP servers on a free loopback port, for the integrations' tests.

``uvicorn_server(app, on_shutdown)`` runs an ASGI app under uvicorn in a
thread (its own event loop; ``on_shutdown`` coroutines run in that loop
before it stops, to close asyncio redis clients there);
``wsgi_server(app)`` runs a WSGI app under werkzeug's threaded server. Both
yield the base URL. ``Gate`` lets a test hold one request inside its view
while others run: the two-tab races, driven step by step.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from werkzeug.serving import make_server

WAIT = 10.0  # seconds: a step that takes longer is a failure, never a hang


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@contextlib.contextmanager
def uvicorn_server(app: Any, on_shutdown: list[Callable[[], Awaitable[Any]]]) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of ``app`` served by uvicorn in a thread.

    ``X-Forwarded-Proto`` from the loopback is trusted (``proxy_headers``), so a
    test can present a request as having come over https through a proxy.
    """

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    for close in on_shutdown:
                        await close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await app(scope, receive, send)

    sock = _free_socket()
    config = uvicorn.Config(wrapped, lifespan="on", log_level="warning", access_log=False,
                            proxy_headers=True, forwarded_allow_ips="127.0.0.1",
                            ws="websockets-sansio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(int(WAIT * 100)):
            if server.started:
                break
            threading.Event().wait(0.01)
        else:
            raise AssertionError("uvicorn did not start")
        host, port = sock.getsockname()
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(WAIT)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@contextlib.contextmanager
def wsgi_server(app: Any) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a WSGI ``app`` under werkzeug's threaded server."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


class Gate:
    """Holds one request inside its view: ``entered`` once it is there, it
    goes on when the test calls ``release()``. ``hold()`` is what the view calls
    (blocking; in an async view: ``await anyio.to_thread.run_sync(gate.hold)``)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._release = threading.Event()

    def hold(self) -> None:
        self.entered.set()
        if not self._release.wait(WAIT):
            raise AssertionError("the test never released the gate")

    def wait_entered(self) -> None:
        if not self.entered.wait(WAIT):
            raise AssertionError("the held request never reached its view")

    def release(self) -> None:
        self._release.set()


class Background:
    """A call run in a thread; ``result()`` joins it and re-raises its error."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = function()
            except BaseException as error:  # re-raised by result()
                self._error = error

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the background request did not finish"
        if self._error is not None:
            raise self._error
        return self._value


def rotate_elsewhere(url: str, sid: str, clock: Callable[[], float]) -> str:
    """Rotate ``sid`` as another service would (``try_renew`` through a manager of
    its own, interval 600 s, by ``clock``); the successor's sid."""
    import redis
    from dce_session import RenewPolicy, SessionManager

    with redis.Redis.from_url(url) as client:
        manager = SessionManager(client, renew=RenewPolicy(interval_seconds=600), clock=clock)
        session = manager.open(sid)
        assert session.try_renew()
        return session.id
