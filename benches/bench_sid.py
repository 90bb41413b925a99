"""The Rust core vs pure Python: sid generation, parsing, validation, encoding.

Every benchmark first asserts that the two sides agree, so a fast wrong
answer cannot win. ``extra_info`` tells ``report.py`` how to read a row:
``role`` "ours" (the row the others are compared with), "baseline" (a row
ours must beat by ``target``x) or "reference" (shown, no target).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from dce_session import core
from dce_session.errors import InvalidSid, SerializationError

from benches import pure_sid

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


def describe(benchmark: Any, group: str, label: str, role: str,
             target: float | None = None) -> None:
    benchmark.group = group
    benchmark.extra_info.update(label=label, role=role, target=target)


# -- generation ----------------------------------------------------------------

GENERATORS: dict[str, tuple[Callable[[int], str], str, float | None]] = {
    "ours (Rust, OS CSPRNG)": (core.generate_sid, "ours", None),
    "pure: reference scheme (SHA-256 of time + random word)":
        (pure_sid.reference_sid, "baseline", SID_TARGET),
    "pure: secrets.token_hex(32)": (pure_sid.secrets_sid, "baseline", SID_TARGET),
}


@pytest.mark.parametrize("label", list(GENERATORS))
def test_sid_generate(benchmark: Any, label: str) -> None:
    generate, role, target = GENERATORS[label]
    describe(benchmark, "sid-generate", label, role, target)
    sids = {generate(60) for _ in range(1000)}
    assert len(sids) == 1000
    for sid in sids:
        assert core.parse_sid(sid)[0] == 60 == pure_sid.parse_sid(sid)[0]
        assert sid == sid.upper()
    assert len(benchmark(generate, 60)) == 76


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


@pytest.mark.parametrize("label", list(PARSERS))
def test_sid_parse(benchmark: Any, label: str) -> None:
    parse, role, target = PARSERS[label]
    describe(benchmark, "sid-parse", label, role, target)
    for sid in SAMPLES:
        assert _outcome(parse, sid) == _outcome(core.parse_sid, sid), repr(sid)[:40]
    assert benchmark(parse, VALID) == (60, 0x65600000)


VALIDATORS: dict[str, tuple[Callable[[object], bool], str, float | None]] = {
    "ours (Rust)": (core.is_valid_sid, "ours", None),
    "pure: regex": (pure_sid.is_valid_sid, "baseline", SID_TARGET),
}


@pytest.mark.parametrize("label", list(VALIDATORS))
def test_sid_validate(benchmark: Any, label: str) -> None:
    valid, role, target = VALIDATORS[label]
    describe(benchmark, "sid-validate", label, role, target)
    expected = [True, True, True] + [False] * (len(SAMPLES) - 3)
    assert [valid(sid) for sid in SAMPLES] == expected
    assert [core.is_valid_sid(sid) for sid in SAMPLES] == expected
    assert benchmark(valid, VALID) is True


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
@pytest.mark.parametrize("label", list(ENCODERS))
def test_encode_value(benchmark: Any, label: str, size: str) -> None:
    encode, role, target = ENCODERS[label]
    describe(benchmark, f"encode-{size}", label, role, target)
    value = SMALL if size == "small" else MEDIUM
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if role != "reference":
        for bad in BAD_VALUES:
            with pytest.raises((SerializationError, pure_sid.SerializationError)):
                encode(bad)
    assert benchmark(encode, value) == expected
    assert json.loads(expected) == value
