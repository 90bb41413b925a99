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

The rotation decision (``try_renew``), from the lifecycle state a script
reported (SEMANTICS Part 3):

>>> from dce_session.core import RenewDecision, Stored, renew_decision
>>> renew_decision(600, 120, 60, now=2000, created_at=1000) == RenewDecision.ROTATE
True
>>> renew_decision(600, 120, 60, now=2000, created_at=1000, stored=Stored.FORWARDING)
RenewDecision.FOLLOW
>>> renew_decision(600, 120, 60, now=2000, created_at=1000, idle=300,
...                stored=Stored.SUPERSEDED, successor_idle=10) == "destroy"
True
"""

from __future__ import annotations

from dce_session._core import (
    SID_MAX_LEN,
    SID_MIN_LEN,
    RenewDecision,
    Stored,
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
    "RenewDecision",
    "Stored",
    "encode_fields",
    "encode_value",
    "generate_sid",
    "is_valid_sid",
    "parse_sid",
    "renew_decision",
    "session_key",
    "user_key",
]
