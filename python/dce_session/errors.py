"""Exceptions of dce-session.

Every error the library raises on purpose is a :class:`SessionError`::

    SessionError
     ├── InvalidSid          (also ValueError)  only from dce_session.core
     ├── SessionDestroyed                       the session is gone; nothing written
     ├── NotLoggedIn                            auto_login() without a user
     ├── SerializationError  (also TypeError)   a value JSON cannot hold
     ├── InvalidUser         (also TypeError)   a user without an int id in [0, 2**64)
     ├── ConfigError         (also ValueError)  bad settings, or a missing one
     │    └── UnknownSetting (also TypeError)   a setting that does not exist, or by position
     ├── InvalidField        (also TypeError)   a field name that is not a str or not UTF-8
     ├── ReservedField       (also ValueError)  a write naming a bookkeeping field ($user, ...)
     └── StoreError                             Redis failed; the redis-py error is __cause__

>>> from dce_session.errors import InvalidSid, SessionError
>>> issubclass(InvalidSid, SessionError) and issubclass(InvalidSid, ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidField",
    "InvalidSid",
    "InvalidUser",
    "NotLoggedIn",
    "ReservedField",
    "SerializationError",
    "SessionDestroyed",
    "SessionError",
    "StoreError",
    "UnknownSetting",
]


class SessionError(Exception):
    """Base class of every dce-session error."""


class InvalidSid(SessionError, ValueError):
    """A string that is not a sid in the dce wire format."""


class SessionDestroyed(SessionError):
    """The session was destroyed, logged in elsewhere or rotated away; nothing was written."""


class NotLoggedIn(SessionError):
    """The operation needs a logged-in user and the session has none."""


class SerializationError(SessionError, TypeError):
    """A value that cannot be stored as JSON, or a stored value that is not JSON."""


class InvalidUser(SessionError, TypeError):
    """A user without an integer ``id`` in ``[0, 2**64)``."""


class ConfigError(SessionError, ValueError):
    """A bad setting, or a call that needs a setting that was not given."""


class UnknownSetting(ConfigError, TypeError):
    """A ``SessionManager`` setting under a name it does not have (the message
    names the closest one), or settings passed by position: a ``TypeError``
    too, as Python's own for an unknown keyword."""


class InvalidField(SessionError, TypeError):
    """A field name that is not a ``str``, or not encodable as UTF-8 (a lone surrogate)."""


class ReservedField(SessionError, ValueError):
    """A write (``set``, ``update``, ``delete``, ``load``, ``regenerate``) named a
    bookkeeping field (``$user``, ``$newid``, ``$server``, ``$client`` as
    configured); those belong to login, rotation and connections. Nothing was written."""


class StoreError(SessionError):
    """Redis failed; the redis-py exception is ``__cause__``."""
