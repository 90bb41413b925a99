"""The Lua scripts, loaded once: each is ``_lua/lib.lua`` followed by its own file."""

from __future__ import annotations

import hashlib
from importlib.resources import files
from typing import NamedTuple


class Script(NamedTuple):
    """A server-side script, called by EVALSHA with an EVAL fallback."""

    name: str
    source: str
    sha: str


def _load(name: str) -> Script:
    folder = files("dce_session") / "_lua"
    source = (folder / "lib.lua").read_text("utf-8") + (folder / f"{name}.lua").read_text("utf-8")
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


OPEN = _load("open")
TOUCH = _load("touch")
WRITE = _load("write")
DESTROY = _load("destroy")
RENEW = _load("renew")
LOGOUT = _load("logout")
SESSIONS_OF = _load("sessions_of")
SYNC = _load("sync")
LOGOUT_EVERYWHERE = _load("logout_everywhere")
CONNECTIONS_OF = _load("connections_of")
ROTATE = _load("rotate")
JUDGE = _load("judge")
INDEX_ADD = _load("index_add")
EACH_SESSION = _load("each_session")
DISCONNECT = _load("disconnect")
