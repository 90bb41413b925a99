"""The Rust core as Python sees it (``dce_session.core``), the public names and the errors."""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import warnings
from typing import Any

import dce_session
import dce_session.asyncio
import dce_session.core
import dce_session.errors
import pytest
from dce_session.core import (
    encode_value,
    generate_sid,
    is_valid_sid,
    parse_sid,
    session_key,
    user_key,
)
from dce_session.errors import (
    ConfigError,
    InvalidSid,
    InvalidUser,
    NotLoggedIn,
    SerializationError,
    SessionDestroyed,
    SessionError,
    StoreError,
)

SID = re.compile(r"[0-9A-F]{64}[0-9A-F]{4}[0-9A-F]{8,16}")
GOOD = "ab" * 32 + "003C" + "65600000"


# -- sids -------------------------------------------------------------------------


def test_generate_sid_format() -> None:
    sid = generate_sid(60)
    assert len(sid) == 76
    assert SID.fullmatch(sid), sid
    assert sid == sid.upper()
    assert sid[64:68] == "003C"
    assert is_valid_sid(sid)


def test_generate_sid_created_at() -> None:
    sid = generate_sid(60, created_at=0x65600000)
    assert sid[64:] == "003C65600000"
    assert parse_sid(sid) == (60, 0x65600000)
    assert parse_sid(generate_sid(1, 0)) == (1, 0)
    longest = generate_sid(0xFFFF, 2**64 - 1)
    assert len(longest) == dce_session.core.SID_MAX_LEN == 84
    assert parse_sid(longest) == (0xFFFF, 2**64 - 1)
    assert dce_session.core.SID_MIN_LEN == 76


def test_generate_sid_default_created_at_is_now() -> None:
    import time

    before = int(time.time())
    _, created = parse_sid(generate_sid(5))
    assert before - 1 <= created <= int(time.time()) + 1


@pytest.mark.parametrize("ttl", [1, 60, 0xFFFF])
def test_generate_sid_ttl_bounds_ok(ttl: int) -> None:
    assert parse_sid(generate_sid(ttl))[0] == ttl


@pytest.mark.parametrize(
    "ttl", [0, -1, 0x10000, 2**63, -(2**63), 2**70, True, "60", 60.0, None], ids=repr
)
def test_generate_sid_ttl_out_of_bounds(ttl: Any) -> None:
    with pytest.raises(ConfigError):
        generate_sid(ttl)


@pytest.mark.parametrize("created_at", [-1, -(2**63), 2**64, True, "0", 1.5], ids=repr)
def test_generate_sid_bad_created_at(created_at: Any) -> None:
    with pytest.raises(ConfigError):
        generate_sid(60, created_at)


def test_generate_sid_is_random() -> None:
    sids = {generate_sid(60, 0) for _ in range(5000)}
    assert len(sids) == 5000
    heads = {sid[:64] for sid in sids}
    assert len(heads) == 5000


@pytest.mark.parametrize("sid", [GOOD, GOOD.upper(), GOOD.lower(), "Ab" * 32 + "003c" + "65600000"])
def test_parse_sid_either_case(sid: str) -> None:
    assert parse_sid(sid) == (60, 0x65600000)
    assert is_valid_sid(sid)


def test_parse_sid_lengths() -> None:
    head = "0" * 64 + "000A"
    for digits in range(8, 17):
        sid = head + "0" * (digits - 1) + "1"
        assert parse_sid(sid) == (10, 1)
        assert is_valid_sid(sid)


class StrSubclass(str):
    pass


def test_parse_sid_str_subclass() -> None:
    assert parse_sid(StrSubclass(GOOD)) == (60, 0x65600000)


MALFORMED_STR: list[str] = [
    "",
    "abc",
    GOOD[:75],
    GOOD + "0" * 9,  # 85 chars
    "F" * 75,
    "G" + GOOD[1:],
    GOOD[:-1] + "g",
    GOOD[:-1] + "é",
    "é" * 76,
    "\u0660" * 76,  # Arabic-Indic digit zero: a Unicode digit, not ASCII hex
    "\uff10" * 76,  # fullwidth digit zero
    " " + GOOD[1:],
    GOOD[:-1] + " ",
    " " + GOOD,
    GOOD + " ",
    GOOD + "\n",
    "\t" + GOOD,
    "+" + GOOD[1:],
    "-" + GOOD[1:],
    GOOD[:64] + "+03C65600000",
    GOOD[:64] + "-03C65600000",
    GOOD[:64] + "003C0x656000",
    GOOD[:70] + "_00000",
    GOOD[:40] + "\x00" + GOOD[41:],
    "0x" + GOOD[2:],
    "F" * (4 << 20),
    "é" * (1 << 20),
    GOOD[:-1] + "\ud800",  # lone surrogate: not encodable as UTF-8
    "\ud800" * 76,
]


MALFORMED_OBJECTS: list[Any] = [
    None,
    0,
    1,
    2**64,
    1.5,
    True,
    GOOD.encode(),
    bytearray(GOOD.encode()),
    memoryview(GOOD.encode()),
    [GOOD],
    (GOOD,),
    {GOOD: 1},
    object(),
    type,
]


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 40 else f"{type(value).__name__}[{len(value)}]"


@pytest.mark.parametrize("sid", MALFORMED_STR + MALFORMED_OBJECTS, ids=_describe)
def test_malformed_sids(sid: Any) -> None:
    assert is_valid_sid(sid) is False
    with pytest.raises(InvalidSid) as caught:
        parse_sid(sid)
    assert isinstance(caught.value, ValueError)
    if isinstance(sid, str) and len(sid) >= 20:
        assert sid[:20] not in str(caught.value)  # never the whole sid in a message


def test_invalid_sid_message_never_shows_the_sid() -> None:
    sid = GOOD + "Z"  # 77 chars: malformed, but mostly a real sid
    with pytest.raises(InvalidSid) as caught:
        parse_sid(sid)
    assert GOOD[:20] not in str(caught.value)
    assert GOOD[10:30] not in str(caught.value)


def test_is_valid_sid_on_generated() -> None:
    for ttl in (1, 60, 0xFFFF):
        assert is_valid_sid(generate_sid(ttl))
        assert is_valid_sid(generate_sid(ttl).lower())


# -- fork safety ------------------------------------------------------------------


def _child_sids(count: int) -> list[str]:
    """Fork; the child generates ``count`` sids and pipes them back; the parent reads them."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python >= 3.12 warns when a multi-threaded process forks; the child
        # below only calls the Rust core, writes and exits.
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            data = "\n".join(generate_sid(60, 0) for _ in range(count)).encode()
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return data.decode().split("\n")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_children_never_repeat_the_parent() -> None:
    seen: set[str] = set()
    for round_ in range(4):
        # Warm the parent's buffered randomness so that unread bytes remain in it.
        seen.update(generate_sid(60, 0) for _ in range(3 + round_ * 7))
        child = _child_sids(20)
        parent_next = [generate_sid(60, 0) for _ in range(20)]
        assert len(child) == 20
        assert all(is_valid_sid(sid) for sid in child)
        assert not set(child) & set(parent_next)
        assert not {sid[:64] for sid in child} & {sid[:64] for sid in parent_next}
        assert not set(child) & seen
        seen.update(child)
        seen.update(parent_next)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sibling_children_never_repeat_each_other() -> None:
    generate_sid(60, 0)  # the parent's buffer holds unread bytes now
    first, second = _child_sids(10), _child_sids(10)
    assert not set(first) & set(second)


# -- keys -------------------------------------------------------------------------


def test_session_key() -> None:
    assert session_key("dcesid", GOOD) == f"dcesid:{GOOD}"
    assert session_key("dcesid", GOOD.lower()) == f"dcesid:{GOOD.lower()}"
    assert session_key("app:sess", "x") == "app:sess:x"


@pytest.mark.parametrize(
    ("uid", "text"),
    [
        (0, "0"),
        (42, "42"),
        (2**63, str(2**63)),
        (2**64 - 1, "18446744073709551615"),
    ],
)
def test_user_key(uid: int, text: str) -> None:
    assert user_key("dceusmap", uid) == f"dceusmap:{text}"


@pytest.mark.parametrize(
    "uid", [-1, 2**64, 2**80, True, False, "1", 1.0, None, b"1", [1]], ids=repr
)
def test_user_key_rejects(uid: Any) -> None:
    with pytest.raises(InvalidUser) as caught:
        user_key("dceusmap", uid)
    assert isinstance(caught.value, TypeError)


# -- values -----------------------------------------------------------------------


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**31,
    -(2**63),
    2**63 - 1,
    2**63,
    2**64 - 1,
    "",
    "plain",
    "héllo ☃ 😀",
    'quote " backslash \\ slash /',
    "\n\r\t\b\f\x00\x01\x1f\x7f\u2028\u2029",
    "\x7f",
    [],
    {},
    [1, "a", None, [True, {"k": []}]],
    {"a": 1, "b": [1, 2], "c": {"d": None}, "é": "ü", "": 0},
    {"nested": [[[[[[]]]]]]},
    ["x"] * 100,
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_encode_value_is_compact_serde_json(value: Any) -> None:
    encoded = encode_value(value)
    assert encoded == _compact(value)
    assert json.loads(encoded) == value


def test_encode_tuple_as_list() -> None:
    assert encode_value((1, "a", (None,))) == '[1,"a",[null]]'
    assert json.loads(encode_value({"t": (1, 2)})) == {"t": [1, 2]}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1.0"),
        (0.1, "0.1"),
        (-0.0, "-0.0"),
        (1.5, "1.5"),
        (-2.25, "-2.25"),
        (1e16, "1e16"),
        (1e-7, "1e-7"),
        (123456.789, "123456.789"),
    ],
)
def test_encode_floats_like_serde_json(value: float, text: str) -> None:
    assert encode_value(value) == text
    assert json.loads(text) == value


@pytest.mark.parametrize(
    "value",
    [
        0.1 + 0.2,
        1 / 3,
        2.0**-1074,
        1.7976931348623157e308,
        -1e-300,
        2.0**53 + 2,
        6.02214076e23,
    ],
)
def test_encode_floats_round_trip(value: float) -> None:
    decoded = json.loads(encode_value(value))
    assert isinstance(decoded, float)
    assert decoded == value
    assert math.copysign(1, decoded) == math.copysign(1, value)


class Thing:
    pass


def _self_list() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _self_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["me"] = loop
    return loop


UNENCODABLE: list[Any] = [
    2**64,
    2**100,
    -(2**63) - 1,
    -(2**100),
    float("nan"),
    float("inf"),
    float("-inf"),
    [1, float("nan")],
    {"x": float("inf")},
    {1, 2},
    frozenset(),
    b"bytes",
    bytearray(b"x"),
    memoryview(b"x"),
    Thing(),
    object(),
    Thing,
    print,
    1j,
    range(3),
    iter([1]),
    {1: "a"},
    {None: 1},
    {("a",): 1},
    {b"k": 1},
    {"ok": {2: 3}},
    [1, 2, {3}],
    ("a", b"b"),
    "\ud800",
    ["\udfff"],
    {"\ud800": 1},
    _self_list(),
    _self_dict(),
]


@pytest.mark.parametrize("value", UNENCODABLE, ids=lambda v: type(v).__name__)
def test_encode_value_rejects(value: Any) -> None:
    with pytest.raises(SerializationError) as caught:
        encode_value(value)
    assert isinstance(caught.value, TypeError)


def test_encode_value_deep_nesting() -> None:
    deep: Any = []
    for _ in range(100):
        deep = [deep]
    assert json.loads(encode_value(deep)) == deep
    too_deep: Any = []
    for _ in range(1000):
        too_deep = [too_deep]
    with pytest.raises(SerializationError):
        encode_value(too_deep)


def test_encode_dict_and_int_subclasses() -> None:
    from collections import OrderedDict
    from enum import IntEnum

    class Level(IntEnum):
        HIGH = 3

    assert encode_value(OrderedDict(a=1)) == '{"a":1}'
    assert encode_value(Level.HIGH) == "3"


# -- public names and errors --------------------------------------------------------

PUBLIC = {
    "dce_session": {
        "SessionManager",
        "Session",
        "Connection",
        "RenewPolicy",
        "SessionEvent",
        "EventStream",
        "Presence",
        "SessionError",
        "InvalidSid",
        "SessionDestroyed",
        "NotLoggedIn",
        "SerializationError",
        "InvalidUser",
        "ConfigError",
        "StoreError",
        "ReservedField",
        "InvalidField",
    },
    "dce_session.errors": {
        "SessionError",
        "InvalidSid",
        "SessionDestroyed",
        "NotLoggedIn",
        "SerializationError",
        "InvalidUser",
        "ConfigError",
        "StoreError",
        "ReservedField",
        "InvalidField",
    },
    "dce_session.core": {
        "generate_sid",
        "parse_sid",
        "is_valid_sid",
        "session_key",
        "user_key",
    },
}
PUBLIC["dce_session.asyncio"] = PUBLIC["dce_session"]  # the same names in both front doors
# Names a module may add beyond API.md (extend, don't rename).
EXTRA = {
    "dce_session": {"UnknownSetting"},
    "dce_session.asyncio": {"UnknownSetting"},
    "dce_session.errors": {"UnknownSetting"},
    "dce_session.core": {
        "SID_MIN_LEN",
        "SID_MAX_LEN",
        "encode_value",
        "encode_fields",
        "renew_decision",
        "RenewDecision",
        "Stored",
    },
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_all_lists_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    listed = set(module.__all__)
    assert len(listed) == len(module.__all__), "duplicates in __all__"
    assert PUBLIC[name] <= listed, f"missing: {PUBLIC[name] - listed}"
    assert listed - PUBLIC[name] <= EXTRA.get(name, set()), (
        f"unexpected: {listed - PUBLIC[name] - EXTRA.get(name, set())}"
    )
    for attribute in listed:
        assert getattr(module, attribute) is not None
        assert not attribute.startswith("_")


def test_core_exposes_the_rotation_decision() -> None:
    # API.md: "and the rotation decision used by try_renew" is importable from dce_session.core.
    assert "renew_decision" in dce_session.core.__all__
    decide = dce_session.core.renew_decision
    assert decide(600, 120, 60, now=1000, created_at=900, idle=0) == "keep"
    assert decide(600, 120, 60, now=2000, created_at=900, idle=0) == "rotate"


def test_top_level_errors_are_the_same_objects() -> None:
    for name in PUBLIC["dce_session.errors"]:
        assert getattr(dce_session, name) is getattr(dce_session.errors, name)


def test_doors_have_their_own_classes() -> None:
    assert dce_session.asyncio.SessionManager is not dce_session.SessionManager
    assert dce_session.asyncio.Session is not dce_session.Session


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (SessionError, (Exception,)),
        (InvalidSid, (SessionError, ValueError)),
        (SessionDestroyed, (SessionError,)),
        (NotLoggedIn, (SessionError,)),
        (SerializationError, (SessionError, TypeError)),
        (InvalidUser, (SessionError, TypeError)),
        (ConfigError, (SessionError, ValueError)),
        (StoreError, (SessionError,)),
    ],
)
def test_exception_hierarchy(error: type[Exception], bases: tuple[type, ...]) -> None:
    for base in bases:
        assert issubclass(error, base)
    assert issubclass(error, Exception)
    assert error is SessionError or issubclass(error, SessionError)
    if error in (SessionDestroyed, NotLoggedIn, StoreError):
        assert not issubclass(error, (ValueError, TypeError))
