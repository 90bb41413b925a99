"""Every operation of dce-session, written once, with no I/O.

An operation is a generator (a *flow*): it yields a ``calls.ScriptCall`` or
``calls.Command`` - one Redis round trip - receives the reply, and finally
returns the operation's result. The blocking driver (``session.py``) and the
asyncio driver (``asyncio.py``) only send what a flow yields and feed the
reply back; nothing here knows which of them runs it.

One module per concern: ``calls`` (what is sent, and each script's reply
type), ``settings``, ``state`` (a session object's lifecycle state and its
transitions), ``basic``, ``user``, ``rotation``, ``index`` (the user index:
single node or cluster steps, and the manager-wide flows), ``connection``.

A flow run by hand, feeding replies as a driver would:

>>> from dce_session._flows.calls import Command, text
>>> def ttl_of(key):
...     remaining = yield Command(("TTL", key))
...     return int(text(remaining))
>>> flow = ttl_of("dcesid:x")
>>> next(flow).wire()
('TTL', 'dcesid:x')
>>> try:
...     flow.send(b"42")
... except StopIteration as done:
...     done.value
42
"""

from __future__ import annotations

from dce_session._flows.calls import Call, Flow, decode_value
from dce_session._flows.connection import ConnectionCore
from dce_session._flows.index import ManagerCore
from dce_session._flows.rotation import RotationFlows
from dce_session._flows.settings import RenewPolicy, check_field

__all__ = ["Call", "ConnectionCore", "Flow", "ManagerCore", "RenewPolicy", "SessionCore",
           "check_field", "decode_value"]


class SessionCore(RotationFlows):
    """One session's state and flows; the drivers add the public methods."""

    __slots__ = ()
