"""The Rust core: sids, keys, value encoding and the rotation decision.

Pure functions, no I/O. Only this module raises :class:`InvalidSid`; the
session API treats a malformed sid as absent.

>>> from dce_session.core import generate_sid, parse_sid, is_valid_sid
>>> sid = generate_sid(60, created_at=0x65600000)
>>> len(sid), sid[64:]
(76, '003C65600000')
>>> parse_sid(sid)
(60, 1700790272)
>>> is_valid_sid("not a sid")
False
"""

from __future__ import annotations

from dce_session._core import (
    SID_MAX_LEN,
    SID_MIN_LEN,
    encode_fields,
    encode_value,
    generate_sid,
    is_valid_sid,
    parse_sid,
    renew_decision,
    session_key,
    user_key,
)

__all__ = [
    "SID_MAX_LEN",
    "SID_MIN_LEN",
    "encode_fields",
    "encode_value",
    "generate_sid",
    "is_valid_sid",
    "parse_sid",
    "renew_decision",
    "session_key",
    "user_key",
]
