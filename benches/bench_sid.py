"""The Rust core vs pure Python: sid generation, parsing, validation, encoding.

Every benchmark first asserts that the sides agree, so a fast wrong answer
cannot win. All sides of a group run in interleaved rounds (``paired.py``):
each round times ``CALLS`` calls of every side in turn, and ours' speed-up
over a side is the median of the per-round ratios. Roles: "ours", "floor"
(a pure-Python baseline ours must beat by the group's target) and
"reference" (shown, no target).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from dce_session import core
from dce_session.errors import InvalidSid, SerializationError

from benches import pure_sid
from benches.paired import Rig, Side, record

SID_TARGET = 3.0
# encode_value was chosen by measurement: it must at least match json.dumps
# plus the checks the value contract needs.
ENCODE_TARGET = 1.0

VALID = core.generate_sid(60, created_at=0x65600000)
SAMPLES: list[object] = [
    VALID,
    VALID.lower(),
    VALID + "0" * 8,  # 84 chars: the longest creation second
    "",
    "not a sid",
    VALID[:75],  # one hex short
    VALID + "0" * 9,  # one too long
    VALID[:-1] + "G",
    VALID[:-1] + "٣",  # a non-ASCII digit
    "+" + VALID[1:],
    VALID + " ",
    "A" * 1_000_000,
    None,
    12345,
]

SMALL = {"id": 42, "name": "Zoë"}
MEDIUM = {
    "cart": [
        {"sku": f"SKU-{i:04}", "qty": i % 5 + 1, "price": 9.5 + i, "gift": i % 7 == 0,
         "note": None if i % 3 else "fragile ✓"}
        for i in range(20)
    ],
    "locale": "de-AT",
    "flags": [True, False, None],
    "visits": 2**40,
}


CALLS = 1000  # calls per timed operation (the loop's cost is shared by every side)
ROUNDS = 15
OPS = 20  # timed operations per side per round


class _NoRedis:
    """The Rig's counter and stats for sides that never talk to Redis."""

    count = 0
    sent: dict[str, int] = {}  # noqa: RUF012

    def reset(self) -> None:
        pass

    def info(self, section: str) -> dict[str, Any]:
        return {}


def _side(label: str, role: str, function: Callable[..., Any], *args: Any) -> Side:
    def run(_: Any) -> Any:
        result = None
        for _ in range(CALLS):
            result = function(*args)
        return result

    return Side(label, {"baseline": "floor"}.get(role, role), label, run)


def compare(benchmark: Any, group: str, sides: list[Side], target: float | None) -> None:
    none = _NoRedis()
    record(benchmark, "core", group, Rig(none, none), sides, rounds=ROUNDS,  # type: ignore[arg-type]
           n=OPS, target=target, calls_per_op=CALLS, smoke=(1, 1))


# -- generation ----------------------------------------------------------------

GENERATORS: dict[str, tuple[Callable[[int], str], str, float | None]] = {
    "ours (Rust, OS CSPRNG)": (core.generate_sid, "ours", None),
    "pure: reference scheme (SHA-256 of time + random word)":
        (pure_sid.reference_sid, "baseline", SID_TARGET),
    "pure: secrets.token_hex(32)": (pure_sid.secrets_sid, "baseline", SID_TARGET),
}


def test_sid_generate(benchmark: Any) -> None:
    for generate, _role, _target in GENERATORS.values():
        sids = {generate(60) for _ in range(1000)}
        assert len(sids) == 1000
        for sid in sids:
            assert core.parse_sid(sid)[0] == 60 == pure_sid.parse_sid(sid)[0]
            assert sid == sid.upper()
            assert len(sid) == 76
    compare(benchmark, "sid-generate",
            [_side(label, role, generate, 60)
             for label, (generate, role, _t) in GENERATORS.items()],
            SID_TARGET)


# -- parsing and validation --------------------------------------------------


def _outcome(parse: Callable[[object], tuple[int, int]], sid: object) -> tuple[int, int] | None:
    try:
        return parse(sid)
    except (InvalidSid, pure_sid.InvalidSid):
        return None


PARSERS: dict[str, tuple[Callable[[object], tuple[int, int]], str, float | None]] = {
    "ours (Rust)": (core.parse_sid, "ours", None),
    "pure: regex + int(..., 16)": (pure_sid.parse_sid, "baseline", SID_TARGET),
}


def test_sid_parse(benchmark: Any) -> None:
    for parse, _role, _target in PARSERS.values():
        for sid in SAMPLES:
            assert _outcome(parse, sid) == _outcome(core.parse_sid, sid), repr(sid)[:40]
        assert parse(VALID) == (60, 0x65600000)
    compare(benchmark, "sid-parse",
            [_side(label, role, parse, VALID) for label, (parse, role, _t) in PARSERS.items()],
            SID_TARGET)


VALIDATORS: dict[str, tuple[Callable[[object], bool], str, float | None]] = {
    "ours (Rust)": (core.is_valid_sid, "ours", None),
    "pure: regex": (pure_sid.is_valid_sid, "baseline", SID_TARGET),
}


def test_sid_validate(benchmark: Any) -> None:
    expected = [True, True, True] + [False] * (len(SAMPLES) - 3)
    for valid, _role, _target in VALIDATORS.values():
        assert [valid(sid) for sid in SAMPLES] == expected
    compare(benchmark, "sid-validate",
            [_side(label, role, valid, VALID) for label, (valid, role, _t) in VALIDATORS.items()],
            SID_TARGET)


# -- value encoding --------------------------------------------------------------

ENCODERS: dict[str, tuple[Callable[[Any], str], str, float | None]] = {
    "ours (Rust encode_value)": (core.encode_value, "ours", None),
    "pure: checks + json.dumps": (pure_sid.encode_value, "baseline", ENCODE_TARGET),
    "pure: bare json.dumps (no checks, not the contract)":
        (pure_sid.encode_unchecked, "reference", None),
}
BAD_VALUES: list[object] = [float("nan"), float("inf"), 2**64, -(2**63) - 1, {1: 2},
                            {"a": [{"b": {3}}]}, b"bytes", object()]


@pytest.mark.parametrize("size", ["small", "medium"])
def test_encode_value(benchmark: Any, size: str) -> None:
    value = SMALL if size == "small" else MEDIUM
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(expected) == value
    for encode, role, _target in ENCODERS.values():
        if role != "reference":
            for bad in BAD_VALUES:
                with pytest.raises((SerializationError, pure_sid.SerializationError)):
                    encode(bad)
        assert encode(value) == expected
    compare(benchmark, f"encode-{size}",
            [_side(label, role, encode, value) for label, (encode, role, _t) in ENCODERS.items()],
            ENCODE_TARGET)
