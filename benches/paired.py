"""Paired, interleaved measurement: the method of every benchmark here.

A comparison has *sides* (ours, the floor, references). Each **round** runs
every side in turn, in one process, on the same Redis: ``A, B`` then
``B, A`` (the order alternates, so neither side always runs second). A side's
round prepares its inputs untimed (fresh sessions for a login, say), times
``n`` operations back to back, then checks their results untimed (every
10th and the last; all of them in the smoke run). The
**paired ratio** of a round is ``other's time / ours`` (ours' throughput over
the other's: above 1, ours is faster); the verdict comes from the **median of
the per-round paired ratios** only, and min / median / max are shown. Both
sides of a round share the same noise of the shared machine, which is what
pairing buys.

Around each timed block the harness reads ``INFO commandstats`` (Redis'
own count of the commands it ran and the microseconds spent in them) and a
counter of the client's socket writes (round trips: see ``conftest.py``).
The process' CPU time over the block (``time.process_time``) is the
client's own cost: our Python, redis-py and hiredis, not Redis' (another
process) nor the wait for it. Redis counts a script's or a MULTI's inner
commands both on their own line and inside the EVALSHA / EXEC time, so the
microseconds are those of the commands the client sent (top level), and the
commands are every command Redis ran (EVALSHA or MULTI/EXEC included).

With ``--benchmark-disable`` (the normal ``pytest`` run) every comparison
runs one short round: a smoke test of the checks, no timing kept.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

#: commandstats lines that are the harness' own (or setup), never an operation's
_OWN = {"info", "config", "flushdb", "script", "ping", "client", "hello", "select"}
CHECK_EVERY = 10  # of a round's operations, every 10th (and the last) is checked
_NESTING = {"evalsha", "eval", "evalsha_ro", "eval_ro", "exec", "fcall", "fcall_ro"}


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """``{command: (calls, usec)}`` as Redis counts them (subcommands folded)."""
    found: dict[str, tuple[int, int]] = {}
    for name, stats in client.info("commandstats").items():
        command = name.removeprefix("cmdstat_").split("|")[0]
        if command in _OWN:
            continue
        calls, usec = found.get(command, (0, 0))
        found[command] = (calls + int(stats["calls"]), usec + int(stats["usec"]))
    return found


@dataclass
class Work:
    """Redis' work over some timed operations (totals; ``per_op`` divides)."""

    ops: int = 0
    trips: int = 0  # socket writes of the client(s)
    calls: Tally[str] = field(default_factory=Tally)  # command -> calls
    usec: int = 0  # microseconds of the top-level commands
    sent: Tally[str] = field(default_factory=Tally)  # top-level commands the client sent
    cpu: float = 0.0  # seconds of this process' CPU (our Python + redis-py + hiredis)

    def add(self, before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
            sent: Tally[str], trips: int, ops: int) -> None:
        self.ops += ops
        self.trips += trips
        self.sent.update(sent)
        top = {name.lower() for name in sent}
        for name, (calls, usec) in after.items():
            delta_calls = calls - before.get(name, (0, 0))[0]
            delta_usec = usec - before.get(name, (0, 0))[1]
            if delta_calls:
                self.calls[name] += delta_calls
            # the nesting commands' time holds their inner commands' time
            nested = top & _NESTING
            if name in top and (not nested or name in nested or name == "multi"):
                self.usec += delta_usec

    def summary(self) -> dict[str, Any]:
        ops = max(self.ops, 1)
        return {
            "round_trips": self.trips / ops,
            "commands": sum(self.calls.values()) / ops,
            "by_command": {name.upper(): calls / ops
                           for name, calls in self.calls.most_common()},
            "redis_usec": self.usec / ops,
            "client_cpu_usec": self.cpu * 1e6 / ops,
        }


@dataclass
class Side:
    """One contender. ``prepare(n)`` -> n inputs (untimed); ``run(input)`` one
    operation (a coroutine function on the asyncio door); ``check(input,
    result)`` asserts that the operation did its job (untimed)."""

    name: str
    role: str  # "ours" | "floor" | "reference"
    label: str
    run: Callable[[Any], Any]
    prepare: Callable[[int], Sequence[Any]] = lambda n: [None] * n
    check: Callable[[Any, Any], None] = lambda item, result: None
    note: str = ""  # what this side does that the others skip (shown in the table)
    concurrency: int = 0  # asyncio: tasks sharing the n operations (0: awaited in turn)


@dataclass
class Measured:
    side: Side
    seconds: list[float] = field(default_factory=list)  # per operation, one per round
    work: Work = field(default_factory=Work)


class Rig:
    """Where sides run: the stats client, the round-trip counter and (asyncio)
    the event loop. ``sent`` tallies the top-level commands sent."""

    def __init__(self, stats: redis.Redis, counter: Any,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.stats, self.counter, self.loop = stats, counter, loop

    def _time(self, side: Side, items: Sequence[Any]) -> tuple[float, list[Any]]:
        if self.loop is None:
            run = side.run
            results = [None] * len(items)
            start = time.perf_counter()
            for index, item in enumerate(items):
                results[index] = run(item)
            return time.perf_counter() - start, results
        return self.loop.run_until_complete(self._atime(side, items))  # type: ignore[no-any-return]

    async def _atime(self, side: Side, items: Sequence[Any]) -> tuple[float, list[Any]]:
        run: Callable[[Any], Awaitable[Any]] = side.run
        results: list[Any] = [None] * len(items)
        if side.concurrency:
            async def worker(offset: int) -> None:
                for index in range(offset, len(items), side.concurrency):
                    results[index] = await run(items[index])

            start = time.perf_counter()
            await asyncio.gather(*(worker(k) for k in range(side.concurrency)))
            return time.perf_counter() - start, results
        start = time.perf_counter()
        for index, item in enumerate(items):
            results[index] = await run(item)
        return time.perf_counter() - start, results

    def measure(self, sides: Sequence[Side], rounds: int, n: int,
                warm: bool = True) -> list[Measured]:
        """``rounds`` interleaved rounds of ``n`` operations of every side."""
        # warm: connections (as many as a side's tasks), script caches, code paths
        for side in sides if warm else ():
            items = side.prepare(max(side.concurrency, 1))
            for item, result in zip(items, self._time(side, items)[1], strict=True):
                side.check(item, result)
        measured = [Measured(side) for side in sides]
        for number in range(rounds):
            order = measured if number % 2 == 0 else measured[::-1]
            for entry in order:
                items = entry.side.prepare(n)
                before = commandstats(self.stats)
                self.counter.reset()
                cpu = time.process_time()
                elapsed, results = self._time(entry.side, items)
                entry.work.cpu += time.process_time() - cpu
                trips, sent = self.counter.count, Tally(self.counter.sent)
                after = commandstats(self.stats)
                entry.seconds.append(elapsed / n)
                entry.work.add(before, after, sent, trips, n)
                for index, (item, result) in enumerate(zip(items, results, strict=True)):
                    if index % CHECK_EVERY == 0 or index == n - 1:
                        entry.side.check(item, result)
        return measured


def summarise(measured: list[Measured]) -> dict[str, Any]:
    """The JSON a comparison leaves for ``report.py``: every side with its
    per-round times and work, and each non-ours side's paired ratios."""
    ours = next(entry for entry in measured if entry.side.role == "ours")
    sides = []
    for entry in measured:
        times = entry.seconds
        row: dict[str, Any] = {
            "name": entry.side.name, "role": entry.side.role, "label": entry.side.label,
            "note": entry.side.note, "rounds": len(times),
            "min": min(times), "median": statistics.median(times), "max": max(times),
            "seconds": times, **entry.work.summary(),
        }
        if entry is not ours:
            ratios = [theirs / mine for theirs, mine in zip(times, ours.seconds, strict=True)]
            row["ratios"] = ratios
            row["ratio_median"] = statistics.median(ratios)
            row["ratio_min"], row["ratio_max"] = min(ratios), max(ratios)
            row["ratio_of_medians"] = statistics.median(times) / statistics.median(ours.seconds)
        sides.append(row)
    return {"sides": sides}


def record(benchmark: Any, section: str, group: str, rig: Rig, sides: Sequence[Side], *,
           rounds: int, n: int, target: float | None, smoke: tuple[int, int] = (1, 2),
           **info: Any) -> dict[str, Any]:
    """Measure ``sides`` under pytest-benchmark (one pedantic call that runs the
    whole interleaved comparison) and store the summary in ``extra_info``."""
    if benchmark.disabled:
        rounds, n = smoke
    elif os.environ.get("BENCH_QUICK"):  # development on a shared machine: a rough look
        rounds, n = 3, max(n // 10, 2)
    out: dict[str, Any] = {}

    def whole() -> None:
        out.update(summarise(rig.measure(sides, rounds, n, warm=not benchmark.disabled)))

    benchmark.group = group
    benchmark.pedantic(whole, rounds=1, iterations=1)
    benchmark.extra_info.update(kind="paired", section=section, group=group, target=target,
                                ops_per_round=n, **info, **out)
    return out
