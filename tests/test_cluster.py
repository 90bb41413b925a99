"""dce-session on a real local Redis Cluster (3 masters, no replicas).

The fixture starts its own cluster; missing ``redis-server``/``redis-cli`` is
a loud failure, never a skip.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
import redis.asyncio.cluster
import redis.cluster
from dce_session import RenewPolicy
from dce_session._core import generate_sid_in_slot, key_slot


def _free_port() -> int:
    """A free port below 55535 whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture(scope="module")
def cluster_nodes() -> Iterator[list[int]]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    assert server, "redis-server is needed for the cluster tests"
    assert cli, "redis-cli is needed for the cluster tests"
    folder = Path(tempfile.mkdtemp(prefix="dce-cluster-"))
    ports: list[int] = []
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(3):
            port = _free_port()
            while port in ports:
                port = _free_port()
            ports.append(port)
            node = folder / str(port)
            node.mkdir()
            processes.append(subprocess.Popen(
                [server, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(node)],
                cwd=node, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            _wait(lambda port=port: _ping(port), f"node {port} to start")
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        for port in ports:
            _wait(lambda port=port: _cluster_ok(port), f"node {port} to see the cluster ok")
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _ping(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


def _cluster_ok(port: int) -> bool:
    with redis.Redis(port=port, decode_responses=True) as client:
        return "cluster_state:ok" in client.execute_command("CLUSTER", "INFO")


def _wait(ready: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def cluster(cluster_nodes: list[int]) -> Iterator[redis.cluster.RedisCluster]:
    """A plain blocking cluster client on an emptied cluster (to inspect the store)."""
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster_nodes[0],
                                        decode_responses=True)
    client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    try:
        yield client
    finally:
        client.close()


@pytest_asyncio.fixture
async def manager(door: str, cluster: redis.cluster.RedisCluster,
                  cluster_nodes: list[int]) -> AsyncIterator[Any]:
    """The door's SessionManager over a cluster client of the door's kind."""
    if door == "sync":
        import dce_session

        client: Any = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster_nodes[0])
        try:
            yield dce_session.SessionManager(client, renew=RenewPolicy())
        finally:
            client.close()
    else:
        import dce_session.asyncio

        aclient = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=cluster_nodes[0])
        try:
            yield dce_session.asyncio.SessionManager(aclient, renew=RenewPolicy())
        finally:
            await aclient.aclose()


def test_key_slot_matches_cluster_keyslot(cluster_nodes: list[int]) -> None:
    rng = random.Random(7)
    with redis.Redis(port=cluster_nodes[0], decode_responses=True) as node:
        keys = ["", "foo", "{user1000}.following", "a{}b", "a{b}c{d}", "{", "}{x}"]
        keys += ["".join(rng.choice("ab{}:09xyzAF") for _ in range(rng.randint(1, 20)))
                 for _ in range(300)]
        for key in keys:
            assert key_slot(key) == node.execute_command("CLUSTER", "KEYSLOT", key), key


def test_sids_in_slot_land_in_the_slot(cluster_nodes: list[int]) -> None:
    with redis.Redis(port=cluster_nodes[0], decode_responses=True) as node:
        for slot in (0, 1, 8191, 16383, *random.sample(range(16384), 50)):
            sid = generate_sid_in_slot(60, 1700000000, "dcesid", slot)
            assert node.execute_command("CLUSTER", "KEYSLOT", f"dcesid:{sid}") == slot


def test_manager_knows_it_is_on_a_cluster(manager: Any) -> None:
    assert manager.cluster is True


async def test_new_set_open_get(manager: Any, cluster: Any, call: Any) -> None:
    session = manager.new()
    await call(session.set("a", 1))
    assert cluster.hget(f"dcesid:{session.id}", "a") == "1"
    assert cluster.ttl(f"dcesid:{session.id}") == 3600
    again = manager.open(session.id)
    assert await call(again.get("a")) == 1


async def test_unknown_sid_falls_back(manager: Any, cluster: Any, call: Any) -> None:
    presented = generate_sid_in_slot(60, int(time.time()), "dcesid", 5)
    session = manager.open(presented)
    await call(session.set("a", 1))
    assert session.id != presented
    assert not cluster.exists(f"dcesid:{presented}")
    assert cluster.hget(f"dcesid:{session.id}", "a") == "1"


async def test_login_moves_and_indexes(manager: Any, cluster: Any, call: Any) -> None:
    session = manager.new()
    await call(session.set("cart", [1]))
    old = session.id
    new = await call(session.login({"id": 42, "name": "x"}))
    assert new != old
    assert not cluster.exists(f"dcesid:{old}")
    assert cluster.smembers("dceusmap:42") == {new}
    assert cluster.ttl("dceusmap:42") == 604800
    assert await call(manager.open(new).get("cart")) == [1]
    again = await call(manager.open(new).login({"id": 43}))
    assert cluster.smembers("dceusmap:42") == set()
    assert cluster.smembers("dceusmap:43") == {again}
    late = manager.open(old)  # the old sid's side key shares its slot
    assert await call(late.get("cart")) is None
    assert late.replaced
    assert cluster.keyslot(f"dcesid~replaced:{{dcesid:{old}}}") == cluster.keyslot(f"dcesid:{old}")


async def test_regenerate_and_auto_login(manager: Any, cluster: Any, call: Any) -> None:
    sid = await call(manager.new().login({"id": 7}))
    session = manager.open(sid)
    kept = await call(session.regenerate({"y": 2}))
    assert cluster.exists(f"dcesid:{sid}")
    assert cluster.smembers("dceusmap:7") == {sid, kept}
    regenerated = await call(manager.open(kept).regenerate({"x": 1}, destroy_old=True))
    assert not cluster.exists(f"dcesid:{kept}")
    assert cluster.smembers("dceusmap:7") == {sid, regenerated}
    assert await call(manager.open(sid).destroy())
    auto = await call(manager.open(regenerated).auto_login())
    assert cluster.smembers("dceusmap:7") == {auto}
    assert await call(manager.open(auto).get("x")) == 1


async def test_destroy_and_logout(manager: Any, cluster: Any, call: Any) -> None:
    first = await call(manager.new().login({"id": 9}))
    keep = manager.new()
    await call(keep.set("cart", 1))
    second = await call(keep.login({"id": 9}))
    assert cluster.smembers("dceusmap:9") == {first, second}
    assert await call(manager.open(first).destroy())
    assert not cluster.exists(f"dcesid:{first}")
    assert cluster.smembers("dceusmap:9") == {second}
    assert await call(manager.open(second).logout())
    assert cluster.smembers("dceusmap:9") == set()
    assert cluster.exists(f"dcesid:{second}")


async def test_try_renew_rotates(manager: Any, cluster: Any, call: Any) -> None:
    now = int(time.time())
    old = generate_sid_in_slot(60, now - 1000, "dcesid", 1234)
    cluster.hset(f"dcesid:{old}", mapping={"$user": '{"id": 5}', "a": "1"})
    cluster.expire(f"dcesid:{old}", 3600)
    cluster.sadd("dceusmap:5", old)
    session = manager.open(old)
    assert await call(session.try_renew()) is True
    assert session.id != old
    assert key_slot(f"dcesid:{session.id}") == 1234
    assert cluster.hget(f"dcesid:{old}", "$newid") == session.id
    assert cluster.smembers("dceusmap:5") == {session.id}  # a rotated sid is no login
    assert cluster.hgetall(f"dcesid:{old}") == {"$newid": session.id}
    assert await call(manager.open(session.id).get("a")) == 1


async def test_index_operations_span_slots(manager: Any, cluster: Any, call: Any) -> None:
    sids = [await call(manager.new().login({"id": 11})) for _ in range(12)]
    assert len({key_slot(f"dcesid:{sid}") for sid in sids}) > 1
    cluster.delete(f"dcesid:{sids[0]}")
    cluster.sadd("dceusmap:11", "notasid")
    assert sorted(await call(manager.sessions_of(11))) == sorted(sids[1:])
    assert cluster.smembers("dceusmap:11") == set(sids[1:])
    assert await call(manager.sync({"id": 11, "name": "new"})) == 11
    assert await call(manager.open(sids[1]).user()) == {"id": 11, "name": "new"}
    connection = manager.connect(sids[2], "10.0.0.5:8000", "1.2.3.4:5")
    await call(connection.request().get("x"))
    connections = await call(manager.connections_of(11))
    assert connections == [(sids[2], "10.0.0.5:8000", "1.2.3.4:5")]
    assert await call(manager.logout_everywhere(11)) == 11
    assert not any(cluster.exists(f"dcesid:{sid}") for sid in sids)
    assert cluster.smembers("dceusmap:11") == set()


async def test_the_lifecycle_on_a_cluster(manager: Any, cluster: Any, call: Any) -> None:
    """SEMANTICS Part 3 on a cluster: successors are generated in the presented
    key's slot, so forwarding, rotation, the judgment and the reissue stay
    single-slot scripts; the index follows in its own steps."""
    now = [int(time.time())]
    clocked = type(manager)(manager.client, renew=RenewPolicy(), clock=lambda: now[0])
    first = clocked.new()
    await call(first.set("a", 1))
    sid = await call(first.login({"id": 8}))
    loaded = clocked.open(sid)
    assert await call(loaded.get("a")) == 1
    now[0] += 600
    rotating = clocked.open(sid)
    assert await call(rotating.try_renew()) is True
    new = rotating.id
    assert key_slot(f"dcesid:{new}") == key_slot(f"dcesid:{sid}")
    assert cluster.hgetall(f"dcesid:{sid}") == {"$newid": new}
    assert cluster.smembers("dceusmap:8") == {new}
    await call(loaded.set("b", 2))  # forwarded into the successor
    assert loaded.id == new
    assert cluster.hget(f"dcesid:{new}", "b") == "2"
    now[0] += 121  # grace over; the successor never reached the client
    cluster.expire(f"dcesid:{new}", 3600 - 100)
    cluster.expire(f"dcesid:{sid}", 3600 - 100)
    late = clocked.open(sid)
    assert await call(late.try_renew()) is True
    third = late.id
    assert third not in (sid, new)
    assert cluster.hgetall(f"dcesid:{third}") == {"a": "1", "b": "2", "$user": '{"id":8}'}
    assert not cluster.exists(f"dcesid:{new}")
    assert await call(clocked.sessions_of(8)) == [third]
    assert cluster.smembers("dceusmap:8") == {third}


@pytest.mark.parametrize("sessions", [1, 100, 1000])
def test_index_operations_cost_at_most_three_round_trips_per_node(
        cluster: Any, cluster_nodes: list[int], sessions: int,
        monkeypatch: pytest.MonkeyPatch, figures: dict[str, Any]) -> None:
    """Issue 7: SMEMBERS, one pipeline of per-session steps (one write per node),
    one SREM - whatever the number of sessions. Round trips are the writes to
    the sockets (one per command, one per pipeline and node)."""
    import dce_session

    writes = [0]
    send = redis.connection.Connection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        writes[0] += 1
        send(self, command, check_health)

    client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster_nodes[0])
    try:
        manager = dce_session.SessionManager(client)
        for _ in range(sessions):
            manager.new().login({"id": 31})
        nodes = len(client.get_primaries())
        manager.sessions_of(31)  # warm: scripts loaded on every node, connections open
        monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
        for name, operation in (
                ("sessions_of", lambda: manager.sessions_of(31)),
                ("connections_of", lambda: manager.connections_of(31)),
                ("sync", lambda: manager.sync({"id": 31, "v": 2})),
                ("logout_everywhere", lambda: manager.logout_everywhere(31))):
            writes[0] = 0
            operation()
            figures[name] = writes[0]
            assert 0 < writes[0] <= 3 * nodes
        monkeypatch.undo()
        assert cluster.scard("dceusmap:31") == 0
        assert manager.sessions_of(31) == []
    finally:
        client.close()


# -- connections and session events on the cluster (issue 9) ------------------------


def _event_subscribers(ports: list[int], channel: str) -> int:
    """Subscribers of ``channel`` over every node (classic pub/sub is per node)."""
    total = 0
    for port in ports:
        with redis.Redis(port=port, decode_responses=True) as node:
            total += int(node.pubsub_numsub(channel)[0][1])
    return total


async def test_connections_and_events_on_a_cluster(manager: Any, door: str, cluster: Any,
                                                   cluster_nodes: list[int], call: Any) -> None:
    import asyncio
    import queue
    import threading

    events: queue.Queue[Any] = queue.Queue()
    if door == "async":
        # redis-py's asyncio RedisCluster learns its slots on its first command;
        # a pubsub before that fails (KeyError in get_node_from_slot)
        await manager.client.initialize()
    stream = manager.events(poll=0.05)
    if door == "sync":
        def listen() -> None:
            for event in stream:
                events.put(event)
        listener: Any = threading.Thread(target=listen, daemon=True)
        listener.start()
    else:
        async def alisten() -> None:
            async for event in stream:
                events.put(event)
        listener = asyncio.create_task(alisten())
    deadline = time.monotonic() + 10
    while _event_subscribers(cluster_nodes, "dcesid~events") == 0:
        assert time.monotonic() < deadline, "the event stream never subscribed"
        await asyncio.sleep(0.01)
    try:
        laptop = await call(manager.new().login({"id": 77}))
        phone = await call(manager.new().login({"id": 77}))
        on_a = manager.connect(laptop, "a:1", "1.1.1.1:1")
        on_b = manager.connect(phone, "b:2", "2.2.2.2:2")
        assert await call(on_a.request().touch()) is True
        assert await call(on_b.request().touch()) is True
        assert sorted(await call(manager.connections_of(77))) == sorted([
            (laptop, "a:1", "1.1.1.1:1"), (phone, "b:2", "2.2.2.2:2")])
        await call(manager.forget_server("b:2"))
        assert await call(manager.connections_of(77)) == [(laptop, "a:1", "1.1.1.1:1")]
        await call(manager.beat("b:2"))
        assert len(await call(manager.connections_of(77))) == 2
        assert await call(manager.logout_everywhere(77)) == 2
        # on a cluster each per-slot step publishes its own event: collect until
        # every sid was told of (one event, or one per slot the sessions live in)
        told: set[str] = set()
        deadline = time.monotonic() + 5
        while told != {laptop, phone}:
            assert time.monotonic() < deadline, f"logout_everywhere told only of {told}"
            try:
                event = events.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.01)
                continue
            assert (event.kind, event.uid) == ("logout_everywhere", 77)
            assert all(event.concerns(sid) for sid in event.sids)
            told.update(event.sids)
        assert await call(manager.connections_of(77)) == []
    finally:
        if door == "sync":
            stream.close()
            listener.join(timeout=5)
        else:
            await stream.aclose()
            await asyncio.wait_for(listener, 5)


async def test_an_event_stream_first_on_a_fresh_async_cluster_client(
        cluster: redis.cluster.RedisCluster, cluster_nodes: list[int]) -> None:
    """The stream reads the slot map itself (redis-py's async pubsub needs it)."""
    import dce_session
    import dce_session.asyncio

    aclient = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=cluster_nodes[0])
    stream = dce_session.asyncio.SessionManager(aclient).events(poll=0.05)
    received: asyncio.Queue[Any] = asyncio.Queue()

    async def listen() -> None:
        async for event in stream:
            await received.put(event)

    listener = asyncio.create_task(listen())
    try:
        blocking = dce_session.SessionManager(cluster)
        session = blocking.new()
        session.set("a", 1)
        deadline = time.monotonic() + 5
        while received.empty():  # until subscribed: destroy again and again
            assert time.monotonic() < deadline, "no event within 5 s"
            assert not listener.done(), listener
            blocking.open(session.id).destroy()
            session = blocking.new()
            session.set("a", 1)
            await asyncio.sleep(0.05)
        assert (await received.get()).kind == "destroy"
    finally:
        await stream.aclose()
        await asyncio.wait_for(listener, 5)
        await aclient.aclose()


async def test_an_event_stream_on_an_unreachable_async_cluster_is_store_error() -> None:
    """The stream's first step (reading the slot map) failing is a StoreError, and
    the stream then ends: nothing listens on the port."""
    import dce_session.asyncio
    from dce_session.errors import StoreError

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    aclient = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=closed,
                                                 socket_connect_timeout=0.25)
    stream = dce_session.asyncio.SessionManager(aclient).events(poll=0.05)
    try:
        with pytest.raises(StoreError) as failure:
            await anext(aiter(stream))
        assert failure.value.__cause__ is not None
    finally:
        await aclient.aclose()


def test_a_delete_mid_migration_changes_nothing_until_it_can_run(
        cluster: redis.cluster.RedisCluster, cluster_nodes: list[int]) -> None:
    """A slot left MIGRATING (its key not moved yet): ``delete`` records its
    count in a replay key the script does not declare, which the source node
    refuses mid-migration. The script reads it before writing, so the field
    is still there; the call is sent again for a while, then StoreError.
    Once the slot is stable again, the same delete runs."""
    import dce_session
    from dce_session.errors import StoreError
    from redis.exceptions import ResponseError

    manager = dce_session.SessionManager(cluster)
    session = manager.new()
    session.update({"a": 1, "b": 2})
    slot = key_slot(session.key)
    nodes = {port: redis.Redis(port=port, decode_responses=True) for port in cluster_nodes}
    ids = {port: node.execute_command("CLUSTER", "MYID") for port, node in nodes.items()}
    source = next(port for port, node in nodes.items()
                  if node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))
    target = next(port for port in cluster_nodes if port != source)
    nodes[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    nodes[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    try:
        loaded = manager.open(session.id)
        assert loaded.get("a") == 1  # loaded: the delete is one single-key script
        with pytest.raises(StoreError) as failure:
            loaded.delete("a")
        assert isinstance(failure.value.__cause__, ResponseError)
        assert nodes[source].hgetall(session.key) == {"a": "1", "b": "2"}
    finally:
        for node in nodes.values():
            node.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
            node.close()
    assert manager.open(session.id).delete("a") is True
    assert cluster.hgetall(session.key) == {"b": "2"}
