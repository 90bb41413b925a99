"""Concurrency and retries (issue 3): logins racing with writes, and lost replies.

* (a) a login racing with writes to the same sid: every write that returned
  is in the session that survives (or, for a write on a never-loaded object
  that found the sid gone, in the fresh session it fell back to, reported by
  ``id``/``newborn``); the others raised ``SessionDestroyed``; the old key is
  never recreated. Threads on the sync door, ``asyncio.gather`` on the async
  one; each worker has its own ``open(sid)`` and starts on a barrier.
* (b) concurrent logins of one sid.
* (c) the negative control: the same race against the one-command-per-step
  baseline (``benches/pure_python.py``) must be caught by the same check.
* (d) retries: the server runs a script, the reply is lost, redis-py's
  ``Retry`` sends it again: the result is that of one execution.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
from dce_session.errors import SessionDestroyed
from redis.backoff import NoBackoff
from redis.retry import Retry

ROUNDS = 20
WRITERS = 8
USER = {"id": 7, "name": "racer"}


def _load_baseline() -> Any:
    path = Path(__file__).resolve().parents[1] / "benches" / "pure_python.py"
    spec = importlib.util.spec_from_file_location("_dce_pure_python_baseline", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pure_python = _load_baseline()


# -- running workers together -------------------------------------------------------

Outcome = tuple[str, Any]  # ("ok", result) or ("error", exception)


def run_threads(jobs: list[Callable[[], Any]]) -> list[Outcome]:
    """Run each job in its own thread, all released at once by a barrier."""
    barrier = threading.Barrier(len(jobs))
    outcomes: list[Outcome] = [("error", RuntimeError("did not run"))] * len(jobs)

    def work(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = ("ok", jobs[index]())
        except Exception as error:
            outcomes[index] = ("error", error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


async def run_tasks(jobs: list[Callable[[], Any]]) -> list[Outcome]:
    """Run each job (a coroutine function) as a task, all released at once."""
    start = asyncio.Event()
    ready = 0

    async def work(job: Callable[[], Any]) -> Outcome:
        nonlocal ready
        ready += 1
        await start.wait()
        try:
            return "ok", await job()
        except Exception as error:
            return "error", error

    tasks = [asyncio.ensure_future(work(job)) for job in jobs]
    while ready < len(jobs):
        await asyncio.sleep(0)
    start.set()
    return list(await asyncio.gather(*tasks))


async def run_together(door: str, jobs: list[Callable[[], Any]]) -> list[Outcome]:
    if door == "sync":
        return await asyncio.to_thread(run_threads, jobs)
    return await run_tasks(jobs)


# -- the property, as one check shared with the negative control ---------------------


def race_violations(store: Any, old: str, login: Outcome, writers: list[Any],
                    outcomes: list[Outcome]) -> list[str]:
    """What went wrong in one login-vs-writes round (empty: nothing).

    ``writers[i]`` wrote ``k{i}`` = ``i``; ``outcomes[i]`` is how that ended.
    """
    problems: list[str] = []
    if store.exists(f"dcesid:{old}"):
        problems.append(f"the old key was recreated: {sorted(store.hgetall(f'dcesid:{old}'))}")
    if login[0] != "ok":
        return [*problems, f"login failed: {login[1]!r}"]
    survivor = store.hgetall(f"dcesid:{login[1]}")
    if survivor.get("seed") != "1" or "$user" not in survivor:
        problems.append(f"the surviving session lost its data: {sorted(survivor)}")
    for i, (writer, (status, result)) in enumerate(zip(writers, outcomes, strict=True)):
        field = f"k{i}"
        if status == "error":
            if not isinstance(result, SessionDestroyed):
                problems.append(f"{field}: unexpected {result!r}")
            elif field in survivor:
                problems.append(f"{field}: reported destroyed but written")
        elif writer.id != old:
            # a never-loaded object found the sid gone: it fell back to a fresh
            # session (no adoption), holds the write there and says so
            fallback = store.hgetall(f"dcesid:{writer.id}")
            if not getattr(writer, "newborn", False) or fallback.get(field) != str(i):
                problems.append(f"{field}: moved to {writer.id[:6]} without the write")
        elif survivor.get(field) != str(i):
            problems.append(f"{field}: reported written, lost")
    return problems


def assert_no_stray_keys(store: Any, sessions: set[str]) -> None:
    assert set(store.keys("dcesid:*")) == {f"dcesid:{sid}" for sid in sessions}


# -- (a) a login racing with writes -------------------------------------------------


@pytest.mark.parametrize("loaded", [True, False], ids=["loaded", "lazy"])
async def test_login_racing_with_writes_loses_nothing(door, make_manager, call, store, loaded):
    manager = make_manager()
    for _ in range(ROUNDS):
        store.flushdb()
        seed = manager.new()
        await call(seed.set("seed", 1))
        old = seed.id
        login_session = manager.open(old)
        writers = [manager.open(old) for _ in range(WRITERS)]
        if loaded:  # each object has found the session stored: writes need it to exist
            for session in [login_session, *writers]:
                assert await call(session.get("seed")) == 1
        jobs = [lambda s=login_session: s.login(USER)]
        jobs += [lambda i=i, s=s: s.set(f"k{i}", i) for i, s in enumerate(writers)]
        outcomes = await run_together(door, jobs)
        problems = race_violations(store, old, outcomes[0], writers, outcomes[1:])
        assert problems == []
        new = outcomes[0][1]
        assert store.smembers("dceusmap:7") == {new}
        if loaded:  # nothing falls back: one session exists, the survivor
            assert all(s.id == old for s in writers)
            assert_no_stray_keys(store, {new})


# -- (b) concurrent logins of one sid ---------------------------------------------------


@pytest.mark.parametrize("loaded", [True, False], ids=["loaded", "lazy"])
async def test_concurrent_logins_of_one_sid(door, make_manager, call, store, loaded):
    """Each login draws its own new sid; the first to run moves the data.

    Objects that found the session stored (``loaded``): the later logins raise
    ``SessionDestroyed`` and write nothing, so exactly one new session exists.
    Never-loaded objects cannot tell "destroyed a moment ago" from "never
    existed" (an unknown sid is newborn, not an error): their login succeeds
    with a fresh session holding just the user. Either way the data is in
    exactly one new session, every sid login returned is a live logged-in
    session, and the old key is gone.
    """
    manager = make_manager()
    for _ in range(ROUNDS // 2):
        store.flushdb()
        seed = manager.new()
        await call(seed.update({"seed": 1, "cart": ["x"]}))
        old = seed.id
        sessions = [manager.open(old) for _ in range(6)]
        if loaded:
            for session in sessions:
                assert await call(session.uid()) is None
        outcomes = await run_together(
            door, [lambda s=s: s.login(USER) for s in sessions])
        assert store.exists(f"dcesid:{old}") == 0
        won = [result for status, result in outcomes if status == "ok"]
        lost = [result for status, result in outcomes if status == "error"]
        assert all(isinstance(error, SessionDestroyed) for error in lost), lost
        with_data = [sid for sid in won if store.hget(f"dcesid:{sid}", "seed") == "1"]
        assert len(with_data) == 1
        assert store.hgetall(f"dcesid:{with_data[0]}") == {
            "seed": "1", "cart": '["x"]', "$user": '{"id":7,"name":"racer"}'}
        for sid in won:
            assert store.hget(f"dcesid:{sid}", "$user") == '{"id":7,"name":"racer"}'
        assert store.smembers("dceusmap:7") == set(won)
        assert_no_stray_keys(store, set(won))
        if loaded:
            assert len(won) == 1
            assert len(lost) == len(sessions) - 1
        else:
            assert len(won) == len(sessions)


# -- (c) the negative control ---------------------------------------------------------


def widen(step: str) -> None:
    """Give other threads a chance between the baseline's commands (race window only)."""
    del step
    time.sleep(0.002)


def test_negative_control_the_naive_login_loses_writes(redis_url, store):
    """The check of (a) catches the baseline's lost writes and resurrections."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        manager = pure_python.NaiveSessionManager(client, pause=widen)
        caught: list[str] = []
        for _ in range(ROUNDS):
            store.flushdb()
            seed = manager.new()
            seed.set("seed", 1)
            old = seed.id
            login_session = manager.open(old)
            writers = [manager.open(old) for _ in range(WRITERS)]
            jobs = [lambda s=login_session: s.login(USER)]
            jobs += [lambda i=i, s=s: s.set(f"k{i}", i) for i, s in enumerate(writers)]
            outcomes = run_threads(jobs)
            caught += race_violations(store, old, outcomes[0], writers, outcomes[1:])
        assert caught, "the race check did not catch the naive implementation"
        assert any("lost" in problem or "recreated" in problem for problem in caught)
    finally:
        client.close()


def test_the_baseline_is_the_same_model_when_nothing_races(redis_url, store):
    """Without a race the baseline passes the same check (it is a fair control)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        manager = pure_python.NaiveSessionManager(client)
        seed = manager.new()
        seed.set("seed", 1)
        writers = [manager.open(seed.id) for _ in range(3)]
        for i, writer in enumerate(writers):
            writer.set(f"k{i}", i)
        login_session = manager.open(seed.id)
        new = login_session.login(USER)
        outcomes: list[Outcome] = [("ok", None)] * len(writers)
        assert race_violations(store, seed.id, ("ok", new), writers, outcomes) == []
        assert manager.sessions_of(7) == [new]
        assert store.ttl("dceusmap:7") > 0
    finally:
        client.close()


# -- (d) retries after a lost reply ------------------------------------------------------


class LostReply:
    """Arms a connection class to drop one reply after the server executed the command."""

    def __init__(self) -> None:
        self.armed = 0
        self.fired = 0

    def drop(self) -> bool:
        if self.armed:
            self.armed -= 1
            self.fired += 1
            return True
        return False


def lossy_connection_class(door: str, lost: LostReply) -> type:
    """A connection that, when armed, reads a reply and then fails as if it never came."""
    if door == "sync":
        class LossyConnection(redis.Connection):
            def read_response(self, *args: Any, **kwargs: Any) -> Any:
                reply = super().read_response(*args, **kwargs)  # the server ran it
                if lost.drop():
                    raise redis.ConnectionError("reply lost (test)")
                return reply

        return LossyConnection

    class AsyncLossyConnection(redis.asyncio.Connection):
        async def read_response(self, *args: Any, **kwargs: Any) -> Any:
            reply = await super().read_response(*args, **kwargs)
            if lost.drop():
                raise redis.ConnectionError("reply lost (test)")
            return reply

    return AsyncLossyConnection


@pytest.fixture
async def lossy(door, make_client, make_manager, call) -> tuple[Any, LostReply]:
    """A manager whose client retries (``Retry(NoBackoff(), 3)``) over a lossy connection."""
    lost = LostReply()
    retry = Retry(NoBackoff(), 3) if door == "sync" else \
        redis.asyncio.retry.Retry(NoBackoff(), 3)
    client = make_client(counted=False, connection_class=lossy_connection_class(door, lost),
                         retry=retry)
    assert await call(client.ping())  # connected: the handshake is behind us
    return make_manager(client), lost


async def test_a_retried_login_makes_one_session(lossy, call, store):
    manager, lost = lossy
    seed = manager.new()
    await call(seed.update({"cart": ["a"], "n": 1}))
    old = seed.id
    session = manager.open(old)
    lost.armed = 1
    new = await call(session.login(USER))
    assert lost.fired == 1  # the first reply was read and thrown away: the server ran it
    assert session.id == new
    assert store.keys("dcesid:*") == [f"dcesid:{new}"]
    assert store.hgetall(f"dcesid:{new}") == {
        "cart": '["a"]', "n": "1", "$user": '{"id":7,"name":"racer"}'}
    assert store.smembers("dceusmap:7") == {new}
    assert await call(session.get("n")) == 1


async def test_a_retried_auto_login_makes_one_session(lossy, call, store):
    manager, lost = lossy
    first = manager.new()
    await call(first.set("n", 1))
    logged = await call(first.login(USER))
    session = manager.open(logged)
    assert await call(session.uid()) == 7
    lost.armed = 1
    new = await call(session.auto_login())
    assert lost.fired == 1
    assert store.keys("dcesid:*") == [f"dcesid:{new}"]
    assert store.smembers("dceusmap:7") == {new}


@pytest.mark.parametrize("start", ["newborn", "opened", "loaded", "unknown sid"])
async def test_a_retried_write_lands_once(lossy, call, store, start):
    manager, lost = lossy
    if start == "newborn":
        session = manager.new()
    elif start == "unknown sid":
        session = manager.open(manager.new().id)  # valid, never stored: falls back
    else:
        seed = manager.new()
        await call(seed.set("seed", 1))
        session = manager.open(seed.id)
        if start == "loaded":
            assert await call(session.get("seed")) == 1
    presented = session.id
    lost.armed = 1
    await call(session.set("n", [1, 2]))
    assert lost.fired == 1
    assert store.keys("dcesid:*") == [f"dcesid:{session.id}"]
    assert store.hget(f"dcesid:{session.id}", "n") == "[1,2]"
    assert store.ttl(f"dcesid:{session.id}") > 0
    assert (session.id != presented) == (start == "unknown sid")


async def test_a_retried_regenerate_makes_one_new_session(lossy, call, store):
    manager, lost = lossy
    seed = manager.new()
    await call(seed.set("n", 1))
    logged = await call(seed.login(USER))
    session = manager.open(logged)
    lost.armed = 1
    new = await call(session.regenerate({"extra": True}))
    assert lost.fired == 1
    assert new != logged
    assert set(store.keys("dcesid:*")) == {f"dcesid:{logged}", f"dcesid:{new}"}
    assert store.hgetall(f"dcesid:{new}") == {
        "n": "1", "extra": "true", "$user": '{"id":7,"name":"racer"}'}
    assert store.smembers("dceusmap:7") == {logged, new}


# -- (e) exact replays (SEMANTICS 3.6): state, result and object state -----------------


async def test_a_retried_delete_reports_the_first_result(lossy, call, store):
    manager, lost = lossy
    seed = manager.new()
    await call(seed.update({"a": 1, "b": 2}))
    session = manager.open(seed.id)
    lost.armed = 1
    assert await call(session.delete("a")) is True
    assert lost.fired == 1
    assert store.hgetall(f"dcesid:{seed.id}") == {"b": "2"}
    assert await call(session.delete("a")) is False  # a new call: the field is gone


@pytest.mark.parametrize("loaded", [False, True])
async def test_a_retried_destroy_reports_the_first_result(lossy, call, store, loaded):
    manager, lost = lossy
    seed = manager.new()
    await call(seed.login(USER))
    session = manager.open(seed.id)
    if loaded:
        assert await call(session.uid()) == 7
    lost.armed = 1
    assert await call(session.destroy()) is True
    assert lost.fired == 1
    assert session.destroyed
    assert not session.newborn  # never turned into a newborn by the replay
    with pytest.raises(SessionDestroyed):
        await call(session.set("x", 1))
    assert store.keys("dcesid:*") == []
    assert not store.exists("dceusmap:7")


async def test_a_retried_logout_reports_the_first_result(lossy, call, store):
    manager, lost = lossy
    seed = manager.new()
    sid = await call(seed.login(USER))
    session = manager.open(sid)
    lost.armed = 1
    assert await call(session.logout()) is True
    assert lost.fired == 1
    assert await call(session.user()) is None
    assert store.smembers("dceusmap:7") == set()
    assert store.hgetall(f"dcesid:{sid}") == {}


async def test_a_retried_logout_everywhere_reports_the_first_count(lossy, call, store):
    manager, lost = lossy
    for _ in range(3):
        await call(manager.new().login(USER))
    lost.armed = 1
    assert await call(manager.logout_everywhere(7)) == 3
    assert lost.fired == 1
    assert store.keys("dcesid:*") == []
    assert await call(manager.logout_everywhere(7)) == 0  # a new call: nothing left


async def test_without_a_lost_reply_nothing_is_replayed(lossy, call):
    """The control: the same calls twice, no retry: the second sees the first's work."""
    manager, lost = lossy
    seed = manager.new()
    await call(seed.update({"a": 1}))
    session = manager.open(seed.id)
    assert await call(session.delete("a")) is True
    assert await call(session.delete("a")) is False
    assert lost.fired == 0
