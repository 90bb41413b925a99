"""The Lua scripts of one manager: each is its own file after the parts of
``_lua/lib.lua`` it uses, with the manager's settings written into the
text.

``lib.lua`` is a sequence of blocks separated by blank lines, each defining
locals (helpers, constants). A script gets only the blocks it names, and
the blocks those name, in ``lib.lua``'s order: Redis runs a script's whole
text on every call, so every helper defined costs each call. A script may
start with a fast path ended by a ``--@lib`` line (``LIB_MARK``): it runs
before the blocks are defined, so a call it answers pays for none of them.

The settings every call would otherwise send (names, the index TTL floor,
the grace period: lib.lua ``SETTINGS``) are Lua literals in the text, so a
call's arguments are only what changes per call. Managers with the same
settings share their scripts; each set of settings is one more set in
Redis' script cache.
"""

from __future__ import annotations

import functools
import hashlib
import re
from importlib.resources import files
from typing import NamedTuple

_DEFINED = re.compile(r"^local (?:function (\w+)|([\w, ]+?) =)", re.MULTILINE)
_WORD = re.compile(r"\w+")
_SETTING = re.compile(r"@(\w+)")
_LUA_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789$_-~:.")


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


#: A line of a script's text: what comes before it runs before lib.lua's
#: blocks are defined (a fast path that returns early pays none of them).
LIB_MARK = "--@lib\n"


def assemble(body: str, lib: str) -> str:
    """``body`` after the blocks of ``lib`` it needs, directly or not (after the
    part of ``body`` before its ``LIB_MARK`` line, if it has one)."""
    fast, marked, rest = body.partition(LIB_MARK)
    if not marked:
        fast, rest = "", body
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
    return fast + "".join(text + "\n\n" for (_, text), on in zip(blocks, used, strict=True)
                          if on) + rest


def lua_literal(value: str | int) -> str:
    """``value`` as a Lua literal: an int as is, a str quoted with every other
    byte than letters, digits and ``$_-~:.`` as a decimal escape."""
    if isinstance(value, int):
        return str(value)
    return '"' + "".join(chr(byte) if byte in _LUA_PLAIN else f"\\{byte:03d}"
                         for byte in value.encode()) + '"'


@functools.cache
def _sources() -> dict[str, str]:
    """Every script's text with lib.lua's blocks, settings not yet written in."""
    folder = files("dce_session") / "_lua"
    lib = (folder / "lib.lua").read_text("utf-8")
    return {name: assemble((folder / f"{name}.lua").read_text("utf-8"), lib)
            for name in Scripts._fields}


class Scripts(NamedTuple):
    """One manager's scripts, one per ``_lua/<name>.lua``."""

    open: Script
    touch: Script
    ttl: Script
    create: Script
    write: Script
    destroy: Script
    renew: Script
    logout: Script
    sessions_of: Script
    sync: Script
    logout_everywhere: Script
    connections_of: Script
    rotate: Script
    judge: Script
    index_add: Script
    each_session: Script
    disconnect: Script


@functools.cache
def scripts_for(**settings: str | int) -> Scripts:
    """The scripts with ``settings`` (lib.lua ``SETTINGS``'s ``@names``) written in."""
    def written(name: str) -> Script:
        source = _SETTING.sub(lambda match: lua_literal(settings[match.group(1)]),
                              _sources()[name])
        return Script(name, source, hashlib.sha1(source.encode()).hexdigest())

    return Scripts(*(written(name) for name in Scripts._fields))
