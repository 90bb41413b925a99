"""Scaling (issue 10 item 4): one user's sessions_of / sync / logout_everywhere
at 1, 100, 1,000 and 10,000 sessions, and the asyncio door under 1, 10 and
100 concurrent tasks over one pool, each against its floor (``flows.py``),
by the paired method of ``paired.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import redis

from benches import flows
from benches.paired import Rig, record

SCALING_TARGET = 0.9
ROUNDS = 9
SIZES = [1, 100, 1000, 10_000]
OPS = {1: 100, 100: 30, 1000: 8, 10_000: 3}  # operations per side per round
BUILDERS = {"sessions_of": flows.sessions_of, "sync": flows.sync,
            "logout_everywhere": flows.logout_everywhere}
TASKS = [1, 10, 100]
CONCURRENT_OPS = 400
CONCURRENT_FLOWS = {"open+get": flows.open_get, "new+set": flows.new_set}


@pytest.fixture
def shas(stats: redis.Redis) -> dict[str, str]:
    return flows.load_scripts(stats)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("operation", list(BUILDERS))
def test_one_user(benchmark: Any, client: redis.Redis, stats: redis.Redis, counter: Any,
                  shas: dict[str, str], operation: str, size: int) -> None:
    door = flows.Door("sync", client, stats, shas)
    sides = BUILDERS[operation](size)(door)
    record(benchmark, "scaling", f"{operation} {size:,}", Rig(stats, counter), sides,
           rounds=ROUNDS, n=OPS[size], target=SCALING_TARGET, operation=operation,
           sessions=size, door="sync", smoke=(1, 1))


@pytest.mark.parametrize("tasks", TASKS)
@pytest.mark.parametrize("flow", list(CONCURRENT_FLOWS))
def test_concurrent_tasks(benchmark: Any, stats: redis.Redis, pool_rig: Any, counter: Any,
                          shas: dict[str, str], flow: str, tasks: int) -> None:
    door = flows.Door("asyncio", pool_rig.client, stats, shas)
    sides = [dataclasses.replace(side, concurrency=tasks)
             for side in CONCURRENT_FLOWS[flow](door)]
    record(benchmark, "concurrency", f"{flow}, {tasks} tasks", Rig(stats, counter, pool_rig.loop),
           sides, rounds=ROUNDS, n=CONCURRENT_OPS, target=SCALING_TARGET, flow=flow,
           tasks=tasks, door="asyncio", smoke=(1, max(tasks, 2)))
