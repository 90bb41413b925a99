"""Every request flow against its floor, blocking and asyncio (issue 10 item 1).

The flows, their floors and what ours does on top are in ``flows.py``; the
method (interleaved rounds, median of the paired ratios, commandstats and
round trips per operation) in ``paired.py``. Each flow is checked by one
function for both sides: same answer, same store left behind.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from benches import flows
from benches.paired import Rig, record

FLOW_TARGET = 0.9  # ours' throughput / the floor's, median of the paired rounds
ROUNDS = 15


@pytest.fixture
def shas(stats: redis.Redis) -> dict[str, str]:
    return flows.load_scripts(stats)


@pytest.mark.parametrize("flow", flows.FLOWS, ids=[flow.name for flow in flows.FLOWS])
def test_flow_sync(benchmark: Any, client: redis.Redis, stats: redis.Redis, counter: Any,
                   shas: dict[str, str], flow: flows.Flow) -> None:
    door = flows.Door("sync", client, stats, shas)
    sides = flow.sides(door)
    record(benchmark, "flows", f"{flow.name}, sync", Rig(stats, counter), sides,
           rounds=ROUNDS, n=flow.n, target=FLOW_TARGET, flow=flow.name, door="sync",
           ours_does=flow.ours_does, floor_does=flow.floor_does, ours_adds=flow.ours_adds)


@pytest.mark.parametrize("flow", flows.FLOWS, ids=[flow.name for flow in flows.FLOWS])
def test_flow_async(benchmark: Any, client: redis.Redis, stats: redis.Redis, rig: Any,
                    counter: Any, shas: dict[str, str], flow: flows.Flow) -> None:
    door = flows.Door("asyncio", rig.client, stats, shas)
    sides = flow.sides(door)
    record(benchmark, "flows", f"{flow.name}, asyncio", Rig(stats, counter, rig.loop), sides,
           rounds=ROUNDS, n=flow.n, target=FLOW_TARGET, flow=flow.name, door="asyncio",
           ours_does=flow.ours_does, floor_does=flow.floor_does, ours_adds=flow.ours_adds)
