"""Reading stored JSON: every failure is a :class:`SerializationError`.

A stored value may come from any writer of the wire format (another
language's library, a hand-made HSET), so decoding must expect anything:
text that is not JSON, the non-standard constants ``NaN``/``Infinity``, and
documents nested deeper than Python's recursion allows (10,000 ``[`` raise
``RecursionError`` inside :mod:`json`).

>>> decode_value('{"a": [1, 2]}')
{'a': [1, 2]}
>>> decode_value("[" * 10_000 + "]" * 10_000)
Traceback (most recent call last):
...
dce_session.errors.SerializationError: a stored value is not JSON: nested too deep to decode
>>> decode_document("NaN") is None
True
"""

from __future__ import annotations

import json
from typing import Any

from dce_session.errors import SerializationError

__all__ = ["decode_document", "decode_value"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # built once: it is on every get


def decode_value(raw: str) -> Any:
    """A stored JSON text as a Python value; ``SerializationError`` if it is not
    JSON or nests too deep to decode (the cause chained)."""
    try:
        return _DECODER.decode(raw)
    except ValueError as error:
        raise SerializationError(f"a stored value is not JSON: {error}") from error
    except RecursionError as error:
        raise SerializationError("a stored value is not JSON: nested too deep to decode") \
            from error


def decode_document(raw: str) -> Any:
    """:func:`decode_value`, or None for what it refuses: for bookkeeping reads
    (the uid of ``$user``) that must never fail an operation."""
    try:
        return decode_value(raw)
    except SerializationError:
        return None
