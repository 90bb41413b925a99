"""The Lua scripts, loaded once: each is its own file after the parts of
``_lua/lib.lua`` it uses.

``lib.lua`` is a sequence of blocks separated by blank lines, each defining
locals (helpers, constants). A script gets only the blocks it names, and
the blocks those name, in ``lib.lua``'s order: Redis runs a script's whole
text on every call, so every helper defined costs each call.
"""

from __future__ import annotations

import hashlib
import re
from importlib.resources import files
from typing import NamedTuple

_DEFINED = re.compile(r"^local (?:function (\w+)|([\w, ]+?) =)", re.MULTILINE)
_WORD = re.compile(r"\w+")


class Script(NamedTuple):
    """A server-side script, called by EVALSHA with an EVAL fallback."""

    name: str
    source: str
    sha: str


def _blocks(lib: str) -> list[tuple[set[str], str]]:
    """``lib.lua``'s blocks: (the names each defines, its text)."""
    blocks = []
    for text in lib.split("\n\n"):
        names = {name.strip() for match in _DEFINED.finditer(text)
                 for group in match.groups() if group for name in group.split(",")}
        if names:
            blocks.append((names, text))
    return blocks


def assemble(body: str, lib: str) -> str:
    """``body`` after the blocks of ``lib`` it needs, directly or not."""
    blocks = _blocks(lib)
    wanted = set(_WORD.findall(body))
    used = [False] * len(blocks)
    grew = True
    while grew:
        grew = False
        for index, (names, text) in enumerate(blocks):
            if not used[index] and names & wanted:
                used[index], grew = True, True
                wanted |= set(_WORD.findall(text))
    return "".join(text + "\n\n" for (_, text), on in zip(blocks, used, strict=True) if on) + body


def _load(name: str) -> Script:
    folder = files("dce_session") / "_lua"
    source = assemble((folder / f"{name}.lua").read_text("utf-8"),
                      (folder / "lib.lua").read_text("utf-8"))
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
