"""Turn pytest-benchmark JSON into the Markdown page ``benches/README.md``.

Usage: ``python benches/report.py benches/results.json > benches/README.md``
(``make bench`` runs both steps). Standard library only.

The benchmarks time themselves (``paired.py``: interleaved rounds of every
side of a comparison) and leave what they measured in each benchmark's
``extra_info``: ``kind`` "paired" (sides with per-round times, paired ratios,
round trips, Redis commands and microseconds per operation) or "memory".
pytest-benchmark's own statistics (one call that ran a whole comparison) are
not used.
"""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

COMMAND = "make bench"
RAW_COMMANDS = (
    "BUILD_PROFILE=release bash scripts/setup.sh   # the extension, built --release\n"
    ".venv/bin/python -m pytest benches --benchmark-enable "
    "--benchmark-json=benches/results.json\n"
    ".venv/bin/python benches/report.py benches/results.json > benches/README.md"
)

# Written after measuring and profiling; kept here so that regenerating the
# page keeps them. Update them when the numbers move.
NOTES = """\
- **Noise.** Five engineers share this machine's 2 cores (the load average at
  the start and end of the run is under *Machine*; above 2 the Redis server
  and the client queue for a core). Single rounds swing by 2x and Redis'
  own microseconds inflate with the load; the verdicts use the median of the
  per-round paired ratios, where both sides of a round ran back to back
  under the same load, and min/max show the spread.
- **Why a flow lands below its floor: read the Redis and client CPU
  columns.** Every flow but open+user+get is one round trip on both sides,
  so the gap is (a) Redis' time in our script (*Redis µs*; the client waits
  for it in `recv`) and (b) our Python around the round trip (*client CPU
  µs* minus the floor's). cProfile of 2,000 `open(sid).logout()`: our flow
  code is a few percent of the client's time; the difference with the floor
  is the wait in `recv_into` for the script to finish.
- **A script call has a fixed cost** (*Redis' time* table): the same HGETALL
  + EXPIRE cost Redis several times more as an EVALSHA than as a pipeline,
  and a script's helpers are defined again on every call. Measured here:
  open.lua as a Redis 7 FUNCTION (helpers defined once, at FUNCTION LOAD)
  saves about 2.7 of its ~24 µs, and inlining the settings tables nothing
  measurable. So each script has only the helpers it uses; a newborn's
  first write is create.lua (HSET + EXPIRE, none of write.lua's lifecycle
  code: about 16 µs less than write.lua's 'create' mode). open.lua and
  write.lua answer the common case in a fast path placed before lib.lua's
  definitions (`--@lib`, `_scripts.py`), which run only when it does not
  answer. For open.lua that is a live session, anonymous or logged in with
  a user JSON that opens with its uid: a load drops from about 24-26 to
  12-13 µs. For write.lua it is a live anonymous session: a write costs
  about 19 µs less.
- **How each side sends.** The floor uses redis-py as a user would
  (`execute_command`, `pipeline()`). Over a plain client, ours packs its
  EVALSHA with hiredis and sends it on a connection of the same pool with
  the client's Retry (docs/operations.md, *How a script call is sent*).
  That skips `execute_command`'s per-call Python: about 10 µs of a 14-argument
  call's packing and hooks. Both sides still pay the pool's checkout and
  release and the socket calls; the *client CPU µs* column shows what is left.
- **Commands a script could drop** (*What each side sends*): login,
  regenerate and try_renew probe the state with HMGET (+ EXISTS for an
  anonymous session) before an HGETALL that holds the same fields
  (`resolve(S, fields)` already takes them); rotate and login copy with
  HGETALL + HSET + DEL where RENAME (then HSET of the user) moves the hash.
- **sessions_of / sync / logout_everywhere** pay per sid an HMGET (user +
  pointer) and the uid parsed out of the user JSON in Lua, against EXISTS for
  the floor: the *per-sid check* rows split it (HMGET vs EXISTS, then the
  parse, which costs as much as the HMGET). logout_everywhere also
  publishes one event listing every sid.
- **open+user+get** is measured in the order the README documents for one
  round trip (`get()` first, then `user()` reads the same snapshot); starting
  with `user()` loads without the touch and the `get()` after it sends
  touch.lua, a second round trip (the *user-first* reference row).
- **Memory.** Our hash is a listpack keyed by the 76-character sid (83 bytes of
  key name, against 45-64 for the peers); a logged-in session also costs
  its user-index entry (the set's bytes per session at 1,000 sessions of one
  user), which is what makes `sessions_of` / `logout_everywhere` possible:
  the peers keep no index.
"""


def us(seconds: float) -> str:
    value = seconds * 1e6
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def num(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


def verdict(ratio: float | None, target: float | None) -> str:
    if ratio is None or target is None:
        return "-"
    return "**met**" if ratio >= target else "**missed**"


def paired(data: dict[str, Any], section: str) -> list[dict[str, Any]]:
    return [b["extra_info"] for b in data["benchmarks"]
            if (b.get("extra_info") or {}).get("kind") == "paired"
            and b["extra_info"].get("section") == section]


def sides_of(entry: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ours = next(s for s in entry["sides"] if s["role"] == "ours")
    return ours, [s for s in entry["sides"] if s is not ours]


def floor_of(entry: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in entry["sides"] if s["role"] == "floor")


def ratio_cell(side: dict[str, Any]) -> str:
    return (f"**{side['ratio_median']:.2f}x** ({side['ratio_min']:.2f}-"
            f"{side['ratio_max']:.2f})")


def commands_cell(side: dict[str, Any]) -> str:
    return ", ".join(f"{name} {num(count)}" for name, count in side["by_command"].items())


def machine(data: dict[str, Any]) -> list[str]:
    info = data.get("machine_info", {})
    ours = info.get("dce_session", {})
    cpu = ours.get("cpu_model") or info.get("cpu", {}).get("brand_raw") or info.get("processor")
    build = ours.get("extension_build", "?")

    def load(values: list[float] | None) -> str:
        return ", ".join(f"{x:.2f}" for x in values) if values else "?"

    hiredis = ours.get("hiredis")
    lines = [
        f"- CPU: {cpu}, {ours.get('cores', '?')} cores; load average (1, 5, 15 min) "
        f"at the start: {load(ours.get('load_average_at_start'))}, at the end: "
        f"{load(ours.get('load_average'))}",
        f"- OS: {info.get('system', '?')} {info.get('release', '')} ({info.get('machine', '?')})",
        f"- Python: {info.get('python_implementation', '')} {info.get('python_version', '?')}",
        f"- Redis server: {ours.get('redis_server', '?')}"
        + (" (REDIS_URL)" if ours.get("redis_url_from_env") else
           " (a throwaway local redis-server, loopback TCP)"),
        f"- redis-py {ours.get('redis_py', '?')}, hiredis "
        f"{hiredis or 'NOT installed'}"
        + (" (in use: redis-py parses replies with it)" if ours.get("hiredis_in_use") else
           " (**not in use**)")
        + f", pytest-benchmark {ours.get('pytest_benchmark', '?')}",
        f"- dce_session extension: **{build}** build",
    ]
    if build == "debug":
        lines.append("- **WARNING: a debug build of the Rust extension was measured; the core's "
                     "ratios are meaningless. Run `make bench`, which builds it --release.**")
    return lines


def targets(data: dict[str, Any]) -> list[tuple[str, str, float, float]]:
    """``(section, group, ratio, target)`` of every comparison with a target."""
    found = []
    for section in ("flows", "scaling", "concurrency", "core"):
        for entry in paired(data, section):
            if entry.get("target") is None:
                continue
            for side in sides_of(entry)[1]:
                if side["role"] == "floor":
                    found.append((section, f"{entry['group']} vs {side['label']}",
                                  side["ratio_median"], entry["target"]))
    for entry in paired(data, "integrations"):
        for side in sides_of(entry)[1]:
            if side["role"] == "peer":
                found.append(("integrations", f"{entry['framework']} {entry['workload']} vs "
                              f"{side['label']}", side["ratio_median"], entry["target"]))
    return found


def flows_section(data: dict[str, Any]) -> list[str]:
    entries = paired(data, "flows")
    if not entries:
        return []
    out = [
        "## Flows vs the floor",
        "",
        "One row per flow and door. Times are each side's median round, per operation. "
        "**ratio** = the median of the per-round paired ratios floor time / ours "
        "(ours' throughput over the floor's; above 1, ours is faster), with the lowest "
        "and highest round in brackets; the verdict uses it alone. *trips*: socket "
        "writes per operation (one per round trip); *commands*: every command Redis "
        "ran per operation (EVALSHA or MULTI/EXEC included); *Redis µs*: Redis' time in "
        "the commands the client sent (`INFO commandstats` over the timed operations); "
        "*client CPU µs*: this process' CPU time per operation (our Python, redis-py, "
        "hiredis; not Redis, not the wait).",
        "",
        "| flow | door | ours µs | floor µs | ratio (min-max) | target | result | trips "
        "ours / floor | commands ours / floor | Redis µs ours / floor | client CPU µs ours "
        "/ floor |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for entry in entries:
        ours, floor = sides_of(entry)[0], floor_of(entry)
        out.append(
            f"| {entry['flow']} | {entry['door']} | {us(ours['median'])} | "
            f"{us(floor['median'])} | {ratio_cell(floor)} | >= {entry['target']:g}x | "
            f"{verdict(floor['ratio_median'], entry['target'])} | {num(ours['round_trips'])} / "
            f"{num(floor['round_trips'])} | {num(ours['commands'])} / "
            f"{num(floor['commands'])} | {ours['redis_usec']:.1f} / "
            f"{floor['redis_usec']:.1f} | {ours['client_cpu_usec']:.1f} / "
            f"{floor['client_cpu_usec']:.1f} |")
    out += [
        "",
        "### What each side sends, and what ours does on top",
        "",
        "Commands per operation as Redis counted them (blocking door; the asyncio door "
        "sends the same).",
        "",
        "| flow | ours (call) | floor (one round trip) | Redis ran for ours | what ours adds, "
        "and why |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
        if entry["door"] != "sync":
            continue
        ours = sides_of(entry)[0]
        out.append(f"| {entry['flow']} | `{ours['label']}`: {entry['ours_does']} | "
                   f"{entry['floor_does']} | {commands_cell(ours)} | {entry['ours_adds']} |")
    references = [(entry, side) for entry in entries for side in entry["sides"]
                  if side["role"] == "reference"]
    if references:
        out += [
            "",
            "### Reference rows (no target)",
            "",
            "In the same interleaved rounds: *naive* is `benches/pure_python.py`, one Redis "
            "command per step (no scripts, not atomic); *user-first* is open+user+get "
            "starting with `user()`, which loads without the touch (README).",
            "",
            "| flow | door | reference | ours µs | its µs | ours' speed-up (min-max) | trips "
            "ours / its |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for entry, side in references:
            ours = sides_of(entry)[0]
            out.append(f"| {entry['flow']} | {entry['door']} | `{side['label']}` | "
                       f"{us(ours['median'])} | {us(side['median'])} | {ratio_cell(side)} | "
                       f"{num(ours['round_trips'])} / {num(side['round_trips'])} |")
    return [*out, ""]


def scaling_section(data: dict[str, Any]) -> list[str]:
    entries = paired(data, "scaling")
    out: list[str] = []
    if entries:
        out += [
            "## Scaling: one user's sessions",
            "",
            "Blocking door; *per session* = per operation / sessions. Same columns as above.",
            "",
            "| operation | sessions | ours µs/op | floor µs/op | ours µs/session | floor "
            "µs/session | ratio (min-max) | result | commands ours / floor | Redis µs ours "
            "/ floor |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
        ]
        for entry in entries:
            ours, floor = sides_of(entry)[0], floor_of(entry)
            size = entry["sessions"]
            out.append(
                f"| {entry['operation']} | {size:,} | {us(ours['median'])} | "
                f"{us(floor['median'])} | {us(ours['median'] / size)} | "
                f"{us(floor['median'] / size)} | {ratio_cell(floor)} | "
                f"{verdict(floor['ratio_median'], entry['target'])} | "
                f"{num(ours['commands'])} / {num(floor['commands'])} | "
                f"{ours['redis_usec']:.1f} / {floor['redis_usec']:.1f} |")
        out.append("")
    entries = paired(data, "concurrency")
    if entries:
        out += [
            "## Scaling: concurrent tasks on the asyncio door",
            "",
            "400 operations per round shared by N tasks over one connection pool (up to 100 "
            "connections), ours and the floor on the same pool; µs = wall time / operations "
            "(so, inverse throughput).",
            "",
            "| flow | tasks | ours µs/op | floor µs/op | ratio (min-max) | result | trips ours "
            "/ floor | Redis µs ours / floor |",
            "|---|---:|---:|---:|---:|---|---:|---:|",
        ]
        for entry in entries:
            ours, floor = sides_of(entry)[0], floor_of(entry)
            out.append(
                f"| {entry['flow']} | {entry['tasks']} | {us(ours['median'])} | "
                f"{us(floor['median'])} | {ratio_cell(floor)} | "
                f"{verdict(floor['ratio_median'], entry['target'])} | "
                f"{num(ours['round_trips'])} / {num(floor['round_trips'])} | "
                f"{ours['redis_usec']:.1f} / {floor['redis_usec']:.1f} |")
        out.append("")
    return out


def redis_cost_section(data: dict[str, Any]) -> list[str]:
    entries = paired(data, "redis-cost")
    if not entries:
        return []
    out = [
        "## Redis' time: what a script costs",
        "",
        "`bench_redis_cost.py`: the same work sent in different ways, interleaved; *Redis µs* "
        "from `INFO commandstats` (for a script, its whole EVALSHA), per call or per session. "
        "It separates a script call's fixed cost and `lib.lua`'s (prepended to every script, "
        "its helpers defined on every call) from the commands themselves.",
        "",
        "| what | way | Redis µs | client µs (wall) | commands |",
        "|---|---|---:|---:|---|",
    ]
    for entry in entries:
        per = entry.get("per", 1)
        for side in entry["sides"]:
            out.append(f"| {entry['group']} | {side['label']} | "
                       f"{side['redis_usec'] / per:.2f} per {entry.get('unit', 'call')} | "
                       f"{us(side['median'])} | {commands_cell(side)} |")
    return [*out, ""]


def memory_section(data: dict[str, Any]) -> list[str]:
    found = [b["extra_info"] for b in data["benchmarks"]
             if (b.get("extra_info") or {}).get("kind") == "memory"]
    if not found:
        return []
    entry = found[0]
    stores = entry["stores"]
    values = ", ".join(f"`{k}`" for k in entry["data"]["values"])
    user = json.dumps(entry["data"]["user"], ensure_ascii=False)
    out = [
        "## Memory per session",
        "",
        f"One typical session: a logged-in user (`{user}`) "
        f"and five small values ({values}), stored by each library through its own front "
        "door with its defaults, read back, then `MEMORY USAGE key SAMPLES 0` (bytes, key "
        "name and Redis' overhead included).",
        "",
        "| store | key | encoding | bytes per session | + user index per session | total |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, store in stores.items():
        key = next(iter(store["keys"]))
        shown = key if len(key) <= 40 else key[:36] + "..."
        index = store.get("index_per_session")
        total = store["session_bytes"] + (index or 0)
        label = f"{name} {store['version']}".strip()
        out.append(f"| {label} | `{shown}` ({len(key)} chars) | {store['encoding']} | "
                   f"{store['session_bytes']} | {f'{index:.0f}' if index else '-'} | "
                   f"{total:.0f} |")
    return [*out, ""]


def core_section(data: dict[str, Any]) -> list[str]:
    entries = paired(data, "core")
    if not entries:
        return []
    out = [
        "## Rust core vs pure Python",
        "",
        "`bench_sid.py`: `dce_session.core` against `benches/pure_sid.py` (each first "
        "asserts that both give the same answers and refuse the same inputs). Each timed "
        "operation is 1,000 calls; times are per call. Speed-up = the median of the "
        "per-round paired ratios pure / ours.",
        "",
        "| group | side | role | µs per call (median round) | speed-up of ours (min-max) | "
        "target | result |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for entry in entries:
        calls = entry.get("calls_per_op", 1)
        for side in entry["sides"]:
            role = {"floor": "baseline"}.get(side["role"], side["role"])
            ratio = ratio_cell(side) if "ratio_median" in side else "(ours)"
            target = entry["target"] if side["role"] == "floor" else None
            out.append(f"| {entry['group']} | {side['label']} | {role} | "
                       f"{us(side['median'] / calls)} | {ratio} | "
                       f"{f'>= {target:g}x' if target else '-'} | "
                       f"{verdict(side.get('ratio_median'), target)} |")
    return [*out, ""]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def session_only(ours: dict[str, Any], peer: dict[str, Any],
                 baseline: dict[str, Any]) -> tuple[float, float, float] | None:
    """Per round, (peer - no session) / (ours - no session): the session's own cost
    compared; (median, min, max) over the rounds, None when a round has ours at or
    below the baseline."""
    ratios = []
    for mine, theirs, none in zip(ours["seconds"], peer["seconds"], baseline["seconds"],
                                  strict=True):
        if mine <= none:
            return None
        ratios.append((theirs - none) / (mine - none))
    return _median(ratios), min(ratios), max(ratios)


def integrations_section(data: dict[str, Any]) -> list[str]:
    """``bench_integrations.py``: ours against each framework's usual Redis session."""
    entries = paired(data, "integrations")
    if not entries:
        return []
    out = [
        "## Integrations vs peers",
        "",
        "`benches/bench_integrations.py`: each framework served in-process with no session, "
        "with ours and with its usual Redis session (starsessions, Flask-Session, Django's "
        "cache engine over django-redis), on the same Redis, in interleaved rounds. Times are "
        "each side's median round, per request. **ratio** = ours' throughput over the "
        "peer's, each relative to the framework with no session (= the peer's time over "
        "ours in the same round): the **median of the per-round paired ratios**, lowest and "
        "highest round in brackets; the verdict uses it alone. *session only*: the same on "
        "each side's time minus the no-session time of that round. *trips*: round trips "
        "per request; *commands*: every command Redis ran per request; *Redis µs*: Redis' "
        "time in the commands the clients sent; *client CPU µs*: this process' CPU per "
        "request (the framework, the session layer, redis-py).",
        "",
        "| framework | workload | peer | no session µs | ours µs | peer µs | ratio (min-max) "
        "| session only (min-max) | target | result | trips ours / peer | commands ours / "
        "peer | Redis µs ours / peer | client CPU µs ours / peer |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for entry in entries:
        ours = next(s for s in entry["sides"] if s["role"] == "ours")
        peer = next(s for s in entry["sides"] if s["role"] == "peer")
        none = next(s for s in entry["sides"] if s["role"] == "baseline")
        own = session_only(ours, peer, none)
        own_cell = "-" if own is None else f"{own[0]:.2f}x ({own[1]:.2f}-{own[2]:.2f})"
        out.append(
            f"| {entry['framework']} | {entry['workload']} | {peer['label']} | "
            f"{us(none['median'])} | {us(ours['median'])} | {us(peer['median'])} | "
            f"{ratio_cell(peer)} | {own_cell} | >= {entry['target']:g}x | "
            f"{verdict(peer['ratio_median'], entry['target'])} | "
            f"{num(ours['round_trips'])} / {num(peer['round_trips'])} | "
            f"{num(ours['commands'])} / {num(peer['commands'])} | "
            f"{ours['redis_usec']:.1f} / {peer['redis_usec']:.1f} | "
            f"{ours['client_cpu_usec']:.0f} / {peer['client_cpu_usec']:.0f} |")
    out += [
        "",
        "Commands per request as Redis counted them:",
        "",
        "| framework | workload | ours | peer |",
        "|---|---|---|---|",
    ]
    for entry in entries:
        ours = next(s for s in entry["sides"] if s["role"] == "ours")
        peer = next(s for s in entry["sides"] if s["role"] == "peer")
        out.append(f"| {entry['framework']} | {entry['workload']} | {commands_cell(ours)} | "
                   f"{commands_cell(peer)} |")
    return [*out, ""]


def render(data: dict[str, Any]) -> str:
    when = data.get("datetime", "")
    with contextlib.suppress(ValueError):
        when = datetime.fromisoformat(when.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    commit = data.get("commit_info", {})
    checked = targets(data)
    missed = [row for row in checked if row[2] < row[3]]
    out = [
        "# Benchmarks",
        "",
        "Generated by `benches/report.py` from `benches/results.json`; do not edit by hand.",
        "",
        f"- Date: {when}",
        f"- Commit: `{str(commit.get('id', '?'))[:12]}`"
        + (" (with uncommitted changes)" if commit.get("dirty") else ""),
        "",
        "## Machine",
        "",
        *machine(data),
        "",
        "## Command",
        "",
        f"`{COMMAND}`, which runs:",
        "",
        "```sh",
        RAW_COMMANDS,
        "```",
        "",
        "## Method",
        "",
        "- Every comparison runs its sides in **interleaved rounds in one process** "
        "(`benches/paired.py`): round 1 times ours then the floor, round 2 the floor then "
        "ours, and so on; each side's inputs (fresh sessions for a login, a user's 1,000 "
        "sessions) are made untimed before its block, and its results checked untimed "
        "after it. Both sides of a comparison are checked by the same function: same "
        "answer, same store left behind (hash, TTL, user index).",
        "- **ratio** = the **median of the per-round paired ratios** (floor time / ours in "
        "the same round: ours' throughput over the floor's). The verdict comes from that "
        "alone; the lowest and highest round's ratio are shown with it.",
        "- **The floor** is bare redis-py (+hiredis) doing the same job in one round trip "
        "with the fewest commands (a pipeline, a MULTI/EXEC, or a tiny Lua script where "
        "keys depend on what is stored), with the fastest sid we have and bare "
        "`json.dumps`/`json.loads`, checking nothing; see `benches/flows.py`.",
        "- Round trips are counted on the client (socket writes of a counting connection); "
        "Redis' commands and microseconds come from `INFO commandstats` read around each "
        "timed block (a script's or a MULTI's inner commands are listed on their own, and "
        "their time is inside EVALSHA's / EXEC's, which is what *Redis µs* counts).",
        "- In the normal `pytest` run (`--benchmark-disable`) every comparison runs one "
        "short round: the checks run, nothing is timed.",
        "",
        "## Verdicts",
        "",
        f"{len(checked) - len(missed)} of {len(checked)} targets met in this run"
        + (", every one." if not missed else "; missed:"),
        "",
    ]
    for section, group, ratio, target in missed:
        out.append(f"- {section}: {group}: {ratio:.2f}x (target >= {target:g}x)")
    if missed:
        out.append("")
    out += flows_section(data)
    out += scaling_section(data)
    out += redis_cost_section(data)
    out += memory_section(data)
    out += core_section(data)
    out += integrations_section(data)
    out += ["## Notes", "", NOTES]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = json.loads(Path(argv[1]).read_text())
    sys.stdout.write(render(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
