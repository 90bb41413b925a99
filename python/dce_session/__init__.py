"""dce-session: Redis-backed sessions with a Rust core.

Blocking API here, asyncio in :mod:`dce_session.asyncio`, the Rust core in
:mod:`dce_session.core`, errors in :mod:`dce_session.errors`.
"""

from __future__ import annotations

from dce_session import errors
from dce_session._flows import RenewPolicy
from dce_session.errors import *  # noqa: F403  (each front door re-exports every error)
from dce_session.session import (
    Connection,
    EventStream,
    Presence,
    Session,
    SessionEvent,
    SessionManager,
)

__all__ = ["Connection", "EventStream", "Presence", "RenewPolicy", "Session", "SessionEvent",
           "SessionManager"]
__all__ += errors.__all__
__version__ = "0.1.0"
