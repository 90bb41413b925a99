"""Pure-Python baselines for the Rust core: sid generation, parsing, value encoding.

Each function does what its ``dce_session.core`` counterpart does, written the
way a careful Python author would, so the benchmarks compare like with like:

* ``reference_sid`` - the scheme of the reference crate: SHA-256 over the
  current time in nanoseconds and one random word, upper-case hex, then the
  ttl (4 hex) and the creation second (hex).
* ``secrets_sid`` - the obvious modern one: ``secrets.token_hex(32)``.
* ``parse_sid`` / ``is_valid_sid`` - one compiled regex, then ``int(..., 16)``.
* ``encode_value`` - ``json.dumps`` (compact, UTF-8 as is) after the checks
  the value contract needs (ints in [-2**63, 2**64), finite floats, str
  keys, only JSON types); ``encode_unchecked`` is bare ``json.dumps``, which
  does NOT meet the contract (it turns ``{1: 2}`` into ``{"1":2}`` and writes
  ``NaN``) - a reference point only.

>>> sid = secrets_sid(60, created_at=0x65600000)
>>> len(sid), sid[64:], parse_sid(sid)
(76, '003C65600000', (60, 1700790272))
>>> is_valid_sid(reference_sid(60)), is_valid_sid("not a sid")
(True, False)
>>> encode_value({"cart": ["apple", 2, 2.5, None, True]})
'{"cart":["apple",2,2.5,null,true]}'
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import secrets
import time
from typing import Any

__all__ = [
    "InvalidSid",
    "SerializationError",
    "encode_unchecked",
    "encode_value",
    "is_valid_sid",
    "parse_sid",
    "reference_sid",
    "secrets_sid",
]

_SID = re.compile(r"[0-9A-Fa-f]{64}([0-9A-Fa-f]{4})([0-9A-Fa-f]{8,16})")
_RANDOM = random.SystemRandom()
_INT_MIN, _INT_END = -(2**63), 2**64
_SCALARS = (str, bool, type(None))
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class InvalidSid(ValueError):
    """A string that is not a sid."""


class SerializationError(ValueError):
    """A value the contract does not store."""


def reference_sid(ttl_minutes: int, created_at: int | None = None) -> str:
    """The reference scheme: SHA-256 of (time in ns, one random word), + ttl + second."""
    seed = f"{time.time_ns()}{_RANDOM.getrandbits(64)}".encode()
    created = int(time.time()) if created_at is None else created_at
    return f"{hashlib.sha256(seed).hexdigest().upper()}{ttl_minutes:04X}{created:08X}"


def secrets_sid(ttl_minutes: int, created_at: int | None = None) -> str:
    """256 bits from ``secrets`` + ttl + creation second, upper case."""
    created = int(time.time()) if created_at is None else created_at
    return f"{secrets.token_hex(32).upper()}{ttl_minutes:04X}{created:08X}"


def parse_sid(sid: object) -> tuple[int, int]:
    """``(ttl minutes, creation second)``; ``InvalidSid`` for anything else."""
    match = _SID.fullmatch(sid) if isinstance(sid, str) else None
    if match is None:
        raise InvalidSid("not a sid")
    return int(match[1], 16), int(match[2], 16)


def is_valid_sid(sid: object) -> bool:
    """Whether ``sid`` has the sid shape (76-84 hex characters)."""
    return isinstance(sid, str) and _SID.fullmatch(sid) is not None


def _check(value: Any, depth: int = 0) -> None:
    if depth > 128:
        raise SerializationError("nesting too deep")
    kind = type(value)
    if kind is int:
        if not _INT_MIN <= value < _INT_END:
            raise SerializationError("integers are stored in [-2**63, 2**64)")
    elif kind is float:
        if not math.isfinite(value):
            raise SerializationError("floats must be finite")
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise SerializationError("dict keys must be str")
            if type(item) not in _SCALARS:
                _check(item, depth + 1)
    elif kind is list or kind is tuple:
        for item in value:
            if type(item) not in _SCALARS:
                _check(item, depth + 1)
    elif kind not in _SCALARS:
        raise SerializationError(f"a value of type {kind.__name__} cannot be stored")


def encode_value(value: Any) -> str:
    """Compact JSON of a value the contract accepts; ``SerializationError`` otherwise."""
    _check(value)
    return _dumps(value)


def encode_unchecked(value: Any) -> str:
    """Bare ``json.dumps`` (compact): no checks, a reference point only."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
