"""``help(Session)`` and friends show the public API only (issue 6)."""

from __future__ import annotations

import pydoc
import re

import dce_session
import dce_session.asyncio
import pytest


@pytest.mark.parametrize("cls", [dce_session.Session, dce_session.asyncio.Session,
                                 dce_session.SessionManager, dce_session.Connection])
def test_help_shows_public_methods_only(cls: type) -> None:
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    shown = re.findall(r"^\s*\|  (\w+)\(", text, re.M)
    assert shown
    assert [name for name in shown if name.startswith("_") and not name.startswith("__")] == []
