"""dce-session: Redis-backed sessions with a Rust core.

Blocking API here, asyncio in :mod:`dce_session.asyncio`, the Rust core in
:mod:`dce_session.core`, errors in :mod:`dce_session.errors`.
"""

from __future__ import annotations

from dce_session._flows import RenewPolicy
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
from dce_session.session import Connection, Session, SessionManager

__all__ = [
    "ConfigError",
    "Connection",
    "InvalidSid",
    "InvalidUser",
    "NotLoggedIn",
    "RenewPolicy",
    "SerializationError",
    "Session",
    "SessionDestroyed",
    "SessionError",
    "SessionManager",
    "StoreError",
]
__version__ = "0.1.0"
