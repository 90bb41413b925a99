"""End to end: the fleet example (examples/fleet) on two real uvicorn processes
sharing one real Redis, driven by real websocket clients (``websockets``).

Two tabs on two servers, "send to user 42" routed to each server holding one
of their sockets, session events reaching every server, logout everywhere
closing every socket, a SIGKILLed server dropping out of ``connections_of``.
The servers beat every 0.5 s here (the shortest lapse, 3 s), so a dead one
drops out within about 4 s instead of the default 16-21 s. Delays are measured and
printed, never asserted (docs/connections.md records them). The last test
runs the same fleet on a local Redis Cluster.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
import uvicorn  # noqa: F401  (the servers need it: a missing test dep fails here, loudly)
import websockets
from dce_session import RenewPolicy, SessionManager
from dce_session.core import generate_sid
from dce_session.testing import LocalCluster
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
BEAT_EVERY = 0.5
ENDED = 4401  # the hub's close code for a socket whose session ended


def _load_fleet() -> Any:
    spec = importlib.util.spec_from_file_location("fleet_run", ROOT / "examples/fleet/run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fleet_run"] = module
    spec.loader.exec_module(module)
    return module


run = _load_fleet()


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def fleet(redis_url: str) -> Iterator[Any]:
    with run.Fleet(redis_url, _free_ports(2), beat_every=BEAT_EVERY) as started:
        yield started


@pytest.fixture
def manager(redis_url: str) -> Iterator[SessionManager]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield SessionManager(client)
    finally:
        client.close()


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Any:
    """``report(what, seconds)``: print a measured delay past pytest's capture
    (docs/connections.md records them)."""
    def show(what: str, seconds: float) -> None:
        with capsys.disabled():
            print(f"\n[measured] {what}: {seconds * 1000:.0f} ms", flush=True)
    return show


def post(url: str, body: Any = None, sid: str | None = None) -> tuple[Any, str | None]:
    """POST JSON; the reply's JSON and the session cookie it set, if any."""
    request = urllib.request.Request(url, data=json.dumps(body or {}).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    if sid is not None:
        request.add_header("cookie", f"session={sid}")
    with urllib.request.urlopen(request, timeout=10) as reply:
        cookie = SimpleCookie(reply.headers.get("set-cookie", ""))
        return json.load(reply), cookie["session"].value if "session" in cookie else None


def login(fleet: Any, port: int, uid: int) -> str:
    reply, sid = post(fleet.url(port, "/login"), {"uid": uid})
    assert reply["uid"] == uid
    assert sid
    return sid


async def open_socket(fleet: Any, port: int, sid: str | None) -> ClientConnection:
    headers = {} if sid is None else {"cookie": f"session={sid}"}
    websocket = await connect(fleet.url(port, "/ws", "ws"), additional_headers=headers,
                              open_timeout=10)
    hello = json.loads(await asyncio.wait_for(websocket.recv(), 10))
    assert hello["hello"] == f"127.0.0.1:{port}"
    return websocket


async def receive(websocket: ClientConnection) -> Any:
    return json.loads(await asyncio.wait_for(websocket.recv(), 10))


async def closed(websocket: ClientConnection) -> int | None:
    """Wait (bounded) for the server to close ``websocket``; its close code."""
    try:
        while True:
            await asyncio.wait_for(websocket.recv(), 10)
    except websockets.ConnectionClosed as closing:
        return None if closing.rcvd is None else closing.rcvd.code


def until(predicate: Any, what: str, seconds: float = 10) -> float:
    """Poll ``predicate`` until true (deadline ``seconds``); how long it took."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < seconds, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - start


async def test_two_tabs_on_two_servers_and_sending_to_the_user(fleet: Any,
                                                             manager: SessionManager) -> None:
    a, b = fleet.ports
    sid = login(fleet, a, 42)
    tab_a, tab_b = await open_socket(fleet, a, sid), await open_socket(fleet, b, sid)
    bound = manager.connections_of(42)
    assert sorted((row[0], row[1]) for row in bound) == sorted([(sid, f"127.0.0.1:{a}"),
                                                                (sid, f"127.0.0.1:{b}")])
    # "send to user 42" over http on A: A's tab directly, B's through B's channel
    reply, _ = post(fleet.url(a, "/send/42"), {"text": "hi"})
    assert reply == {"local": 1, "forwarded": [f"127.0.0.1:{b}"], "unreachable": []}
    assert await receive(tab_a) == {"from": None, "text": "hi"}
    assert await receive(tab_b) == {"from": None, "text": "hi"}
    # chat: a message sent on B's socket reaches both tabs
    await tab_b.send(json.dumps({"to": 42, "text": "yo"}))
    received = [await receive(tab_b), await receive(tab_b)]
    assert {"from": 42, "text": "yo"} in received
    assert {"sent": 2} in received
    assert await receive(tab_a) == {"from": 42, "text": "yo"}
    # closing one tab removes exactly its binding
    await tab_b.close()
    until(lambda: len(manager.connections_of(42)) == 1, "tab B's binding to go")
    assert manager.connections_of(42)[0][:2] == (sid, f"127.0.0.1:{a}")
    await tab_a.close()
    until(lambda: manager.connections_of(42) == [], "tab A's binding to go")


async def test_a_socket_without_a_live_logged_in_session_is_refused(
        fleet: Any, manager: SessionManager, store: Any) -> None:
    a, _ = fleet.ports
    anonymous = manager.new()
    anonymous.set("cart", [1])
    unknown = generate_sid(60)
    for sid in (None, "not-a-sid", unknown, anonymous.id):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await open_socket(fleet, a, sid)
        assert refused.value.response.status_code == 403, sid
    assert not store.exists(f"dcesid:{unknown}")  # never adopted
    assert store.hgetall(f"dcesid:{anonymous.id}") == {"cart": "[1]"}  # no binding left
    assert len(store.keys("dcesid:*")) == 1  # no binding-only session left behind


async def test_events_reach_every_server_and_logout_everywhere_closes_every_socket(
        fleet: Any, manager: SessionManager, report: Any) -> None:
    a, b = fleet.ports
    laptop, phone = login(fleet, a, 42), login(fleet, b, 42)
    on_a, on_b = await open_socket(fleet, a, laptop), await open_socket(fleet, b, phone)
    assert manager.sync({"id": 42, "name": "renamed"}) == 2  # from a third process
    assert await receive(on_a) == {"event": "sync"}
    assert await receive(on_b) == {"event": "sync"}
    start = time.monotonic()
    reply, _ = post(fleet.url(a, "/logout-everywhere"), sid=laptop)
    assert reply == {"ended": 2}
    assert await receive(on_a) == {"event": "logout_everywhere"}
    assert await receive(on_b) == {"event": "logout_everywhere"}
    codes = await asyncio.gather(closed(on_a), closed(on_b))
    report("logout_everywhere -> both sockets closed (2 servers)", time.monotonic() - start)
    assert codes == [ENDED, ENDED]
    until(lambda: manager.connections_of(42) == [], "the bindings to go")
    assert manager.sessions_of(42) == []


async def test_a_killed_server_drops_out_and_a_stopped_one_at_once(
        fleet: Any, manager: SessionManager, report: Any) -> None:
    a, b = fleet.ports
    sid = login(fleet, a, 42)
    on_a, on_b = await open_socket(fleet, a, sid), await open_socket(fleet, b, sid)
    assert {row[1] for row in manager.connections_of(42)} == {f"127.0.0.1:{a}",
                                                              f"127.0.0.1:{b}"}
    start = time.monotonic()
    fleet.kill(b)
    assert await closed(on_b) is None  # no close frame: the process died
    until(lambda: [row[1] for row in manager.connections_of(42)] == [f"127.0.0.1:{a}"],
          "the killed server's connection to drop out")
    report(f"SIGKILL -> connections gone (beat {BEAT_EVERY} s, lapse 3 s)",
           time.monotonic() - start)
    # the binding itself is still in the session's hash: only presence hides it
    assert len(json.loads(manager.client.hget(f"dcesid:{sid}", "$servers"))) == 2
    reply, _ = post(fleet.url(a, "/send/42"), {"text": "still here"})
    assert reply == {"local": 1, "forwarded": [], "unreachable": []}
    assert await receive(on_a) == {"from": None, "text": "still here"}
    # a clean stop: the socket is closed and the server forgotten, no lapse to wait for
    fleet.stop()
    assert await closed(on_a) in (1001, 1012)  # uvicorn's shutdown close, or the hub's
    assert manager.connections_of(42) == []
    left = json.loads(manager.client.hget(f"dcesid:{sid}", "$servers"))
    # A's binding went with its socket; the killed B's stays in the hash, unreported
    assert [server for server, _ in left.values()] == [f"127.0.0.1:{b}"]


async def test_a_rotation_moves_the_sockets_to_the_new_sid(fleet: Any, redis_url: str,
                                                          manager: SessionManager) -> None:
    a, b = fleet.ports
    sid = login(fleet, a, 42)
    on_a, on_b = await open_socket(fleet, a, sid), await open_socket(fleet, b, sid)
    later = redis.Redis.from_url(redis_url, decode_responses=True)
    try:  # another process, past the renew interval, rotates the session
        rotating = SessionManager(later, renew=RenewPolicy(),
                                  clock=lambda: time.time() + 700).open(sid)
        assert rotating.try_renew() is True
    finally:
        later.close()
    new = rotating.id
    assert new != sid
    assert await receive(on_a) == {"event": "rotate"}
    assert await receive(on_b) == {"event": "rotate"}
    assert {row[0] for row in manager.connections_of(42)} == {new}
    # the hubs now file both sockets under the new sid: its logout closes them
    assert manager.open(new).logout() is True
    assert await receive(on_a) == {"event": "logout"}
    assert await receive(on_b) == {"event": "logout"}
    assert await asyncio.gather(closed(on_a), closed(on_b)) == [ENDED, ENDED]
    until(lambda: manager.client.hget(f"dcesid:{new}", "$servers") is None,
          "both bindings to go")


async def test_a_login_elsewhere_as_another_user_moves_the_sockets_to_that_user(
        fleet: Any, manager: SessionManager) -> None:
    """The rotate event of a login names the new user: the hubs refile the
    sockets under it, so messages to that user reach them, none to the old."""
    a, b = fleet.ports
    sid = login(fleet, a, 42)
    on_a, on_b = await open_socket(fleet, a, sid), await open_socket(fleet, b, sid)
    new = manager.open(sid).login({"id": 321})  # another request, another user
    assert await receive(on_a) == {"event": "rotate"}
    assert await receive(on_b) == {"event": "rotate"}
    assert {row[0] for row in manager.connections_of(321)} == {new}
    reply, _ = post(fleet.url(a, "/send/321"), {"text": "to the new user"})
    assert reply == {"local": 1, "forwarded": [f"127.0.0.1:{b}"], "unreachable": []}
    assert await receive(on_a) == {"from": None, "text": "to the new user"}
    assert await receive(on_b) == {"from": None, "text": "to the new user"}
    reply, _ = post(fleet.url(a, "/send/42"), {"text": "to the old user"})
    assert reply == {"local": 0, "forwarded": [], "unreachable": []}
    await on_a.close()
    await on_b.close()


async def test_a_handler_that_fails_still_removes_the_binding(fleet: Any,
                                                              manager: SessionManager) -> None:
    a, b = fleet.ports
    sid = login(fleet, a, 42)
    failing, staying = await open_socket(fleet, a, sid), await open_socket(fleet, b, sid)
    assert len(manager.connections_of(42)) == 2
    await failing.send("not json")  # the example's handler raises on it
    assert await closed(failing) in (None, 1011)  # uvicorn drops it (or says 1011)
    until(lambda: len(manager.connections_of(42)) == 1, "the failed socket's binding to go")
    assert manager.connections_of(42)[0][1] == f"127.0.0.1:{b}"
    await staying.close()


# -- the same fleet on a local Redis Cluster --------------------------------------


@pytest.fixture(scope="module")
def cluster_nodes() -> Iterator[list[int]]:
    with LocalCluster(masters=3) as cluster:
        yield cluster.ports


async def test_the_fleet_on_a_cluster(cluster_nodes: list[int], report: Any) -> None:
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster_nodes[0],
                                        decode_responses=True)
    client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    manager = SessionManager(client)
    url = f"redis://127.0.0.1:{cluster_nodes[0]}/0"
    try:
        with run.Fleet(url, _free_ports(2), beat_every=BEAT_EVERY, cluster=True) as fleet:
            a, b = fleet.ports
            laptop, phone = login(fleet, a, 42), login(fleet, b, 42)
            on_a, on_b = await open_socket(fleet, a, laptop), await open_socket(fleet, b, phone)
            assert {row[0] for row in manager.connections_of(42)} == {laptop, phone}
            assert {row[1] for row in manager.connections_of(42)} == {
                f"127.0.0.1:{a}", f"127.0.0.1:{b}"}
            reply, _ = post(fleet.url(b, "/send/42"), {"text": "hi"})
            assert reply == {"local": 1, "forwarded": [f"127.0.0.1:{a}"], "unreachable": []}
            assert await receive(on_a) == {"from": None, "text": "hi"}
            assert await receive(on_b) == {"from": None, "text": "hi"}
            start = time.monotonic()
            reply, _ = post(fleet.url(a, "/logout-everywhere"), sid=laptop)
            assert reply == {"ended": 2}
            assert await receive(on_a) == {"event": "logout_everywhere"}
            assert await receive(on_b) == {"event": "logout_everywhere"}
            codes = await asyncio.gather(closed(on_a), closed(on_b))
            report("cluster: logout_everywhere -> both sockets closed", time.monotonic() - start)
            assert codes == [ENDED, ENDED]
            until(lambda: manager.connections_of(42) == [], "the bindings to go")
    finally:
        client.close()
