"""A deliberately naive, pure-Python session manager: the baseline.

This is how the reference crate (and most session libraries) do it: one Redis
command per step, over a blocking redis-py client, no scripts, no atomicity.
It writes the same wire format as ``dce_session`` (``dcesid:<sid>`` hashes of
JSON strings, the ``$user`` field, the ``dceusmap:<uid>`` index set), so the
two can be compared on the same data. It exists for two reasons:

* benchmarks compare ``dce_session`` against it (round trips, time);
* the concurrency tests run their races against it as a *negative control*:
  its login (read, copy, index, delete as separate commands) loses writes
  that race with it, or lets a late write recreate the old key, which proves
  that those tests can fail.

It imports nothing from ``dce_session``. Do not use it for anything real.

Public names (stable: benchmarks and tests import them)
--------------------------------------------------------
``generate_sid(ttl_minutes, now=None) -> str``
    ``secrets.token_hex(32).upper()`` + 4 hex of ttl + 8 hex of the creation
    second (upper case, as the Rust crate writes it).
``NaiveSessionManager(client, ttl_minutes=60, *, sid_name="dcesid",
user_prefix="dceusmap", user_field="$user", mapping_ttl_seconds=604800,
pause=None)``
    ``client``: a blocking ``redis.Redis`` (``decode_responses`` either way).
    ``pause``: an optional callable ``pause(step: str) -> None`` called
    between the commands of a multi-command operation (default: no-op). The
    step names are ``"login:read"``, ``"login:copy"``, ``"login:expire"``,
    ``"login:index"``, ``"login:index-expire"``, ``"login:unindex"`` (each
    called after that command) and ``"set:write"`` (between HSET and EXPIRE).
    Tests use it to widen race windows; it never changes what is sent.
    Methods: ``new(ttl_minutes=None)``, ``open(sid)`` -> ``NaiveSession``;
    ``sessions_of(uid) -> list[str]``, ``sync(user) -> int``,
    ``logout_everywhere(uid) -> int``.
``NaiveSession``
    Attributes ``id``, ``key``, ``ttl_minutes``, ``created_at``, ``newborn``.
    Methods ``get(field, default=None)``, ``set(field, value)``,
    ``delete(field) -> bool``, ``silent_get``, ``silent_set``, ``raw()``,
    ``load(mapping)``, ``touch() -> bool``, ``destroy() -> bool``,
    ``regenerate(changes=None) -> str``, ``user()``, ``uid()``,
    ``login(user, ttl_minutes=None) -> str``, ``auto_login() -> str``,
    ``logout() -> bool``.

>>> generate_sid(60, now=0x65000000)[64:]
'003C65000000'
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["NaiveSession", "NaiveSessionManager", "generate_sid"]

_SID = re.compile(r"[0-9A-Fa-f]{64}[0-9A-Fa-f]{4}[0-9A-Fa-f]{8,16}")


def generate_sid(ttl_minutes: int, now: float | None = None) -> str:
    """A sid in the dce format: 64 random hex, 4 hex ttl, 8 hex creation second."""
    created = int(time.time() if now is None else now)
    return f"{secrets.token_hex(32).upper()}{ttl_minutes:04X}{created:08X}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _user_document(user: Any) -> dict[str, Any]:
    if isinstance(user, Mapping):
        document = dict(user)
    elif dataclasses.is_dataclass(user) and not isinstance(user, type):
        document = dataclasses.asdict(user)
    elif callable(getattr(user, "model_dump", None)):
        document = user.model_dump(mode="json")
    else:
        document = dict(vars(user))
    uid = document.get("id")
    if isinstance(uid, bool) or not isinstance(uid, int) or not 0 <= uid < 2**64:
        raise ValueError(f"a user needs an integer id, got {uid!r}")
    return document


def _no_pause(step: str) -> None:
    del step


class NaiveSession:
    """One session; every call is one or more plain Redis commands."""

    def __init__(self, manager: NaiveSessionManager, sid: str | None,
                 ttl_minutes: int | None) -> None:
        self._manager = manager
        self._touched = False
        self._user: dict[str, Any] | None = None
        if sid is not None and _SID.fullmatch(sid) and int(sid[64:68], 16):
            self._adopt(sid)
            self.newborn = False
        else:
            self._adopt(generate_sid(ttl_minutes or manager.ttl_minutes))
            self.newborn = True

    def _adopt(self, sid: str) -> None:
        self.id = sid
        self.key = f"{self._manager.sid_name}:{sid}"
        self.ttl_minutes = int(sid[64:68], 16)
        self.created_at = int(sid[68:], 16)

    @property
    def _client(self) -> Any:
        return self._manager.client

    def _touch_once(self) -> None:
        if not self._touched:
            self.touch()

    # -- basic session -----------------------------------------------------

    def silent_get(self, field: str, default: Any = None) -> Any:
        raw = self._client.hget(self.key, field)
        return default if raw is None else json.loads(_text(raw))

    def get(self, field: str, default: Any = None) -> Any:
        value = self.silent_get(field, default)
        self._touch_once()
        return value

    def silent_set(self, field: str, value: Any) -> None:
        self._client.hset(self.key, field, _encode(value))

    def set(self, field: str, value: Any) -> None:
        self.silent_set(field, value)
        self._manager.pause("set:write")
        self._touch_once()

    def delete(self, field: str) -> bool:
        deleted = bool(self._client.hdel(self.key, field))
        self._touch_once()
        return deleted

    def raw(self) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self._client.hgetall(self.key).items()}

    def load(self, mapping: Mapping[str, str]) -> None:
        if mapping:
            self._client.hset(self.key, mapping=dict(mapping))

    def touch(self) -> bool:
        self._touched = True
        return bool(self._client.expire(self.key, self.ttl_minutes * 60))

    def destroy(self) -> bool:
        uid = self.uid()
        if uid is not None:
            self._client.srem(f"{self._manager.user_prefix}:{uid}", self.id)
        return bool(self._client.delete(self.key))

    def regenerate(self, changes: Mapping[str, Any] | None = None,
                   ttl_minutes: int | None = None) -> str:
        """Copy every field under a fresh sid (the reference's renew); the old stays."""
        pause = self._manager.pause
        data = self.raw()
        pause("login:read")
        for field, value in (changes or {}).items():
            if value is None:
                data.pop(field, None)
            else:
                data[field] = _encode(value)
        self._adopt(generate_sid(ttl_minutes or self.ttl_minutes))
        self._touched = False
        if data:
            self._client.hset(self.key, mapping=data)
            pause("login:copy")
            self.touch()
            pause("login:expire")
        return self.id

    # -- user session ------------------------------------------------------

    def user(self) -> Any:
        if self._user is None:
            raw = self._client.hget(self.key, self._manager.user_field)
            self._user = None if raw is None else json.loads(_text(raw))
        return self._user

    def uid(self) -> int | None:
        user = self.user()
        return None if user is None else user.get("id")

    def login(self, user: Any, ttl_minutes: int | None = None) -> str:
        manager, pause = self._manager, self._manager.pause
        document = _user_document(user)
        old_sid, old_key, old_uid = self.id, self.key, self.uid()
        self.regenerate({manager.user_field: document}, ttl_minutes)
        self._user = document
        index = f"{manager.user_prefix}:{document['id']}"
        self._client.sadd(index, self.id)
        pause("login:index")
        self._client.expire(index, manager.mapping_ttl_seconds)
        pause("login:index-expire")
        if old_uid is not None:
            self._client.srem(f"{manager.user_prefix}:{old_uid}", old_sid)
            pause("login:unindex")
        self._client.delete(old_key)
        return self.id

    def auto_login(self) -> str:
        user = self.user()
        if user is None:
            raise LookupError("not logged in")
        return self.login(user)

    def logout(self) -> bool:
        uid = self.uid()
        if uid is None:
            return False
        self._client.srem(f"{self._manager.user_prefix}:{uid}", self.id)
        self._client.hdel(self.key, self._manager.user_field)
        self._user = None
        return True


class NaiveSessionManager:
    """Sessions over a blocking redis-py client, one command per step."""

    def __init__(self, client: Any, ttl_minutes: int = 60, *, sid_name: str = "dcesid",
                 user_prefix: str = "dceusmap", user_field: str = "$user",
                 mapping_ttl_seconds: int = 604800,
                 pause: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.ttl_minutes = ttl_minutes
        self.sid_name, self.user_prefix, self.user_field = sid_name, user_prefix, user_field
        self.mapping_ttl_seconds = mapping_ttl_seconds
        self.pause = pause or _no_pause

    def new(self, ttl_minutes: int | None = None) -> NaiveSession:
        return NaiveSession(self, None, ttl_minutes)

    def open(self, sid: str | None) -> NaiveSession:
        return NaiveSession(self, sid, None)

    def sessions_of(self, uid: int) -> list[str]:
        """SMEMBERS, one EXISTS per sid, SREM of the dead ones."""
        index = f"{self.user_prefix}:{uid}"
        live, dead = [], []
        for member in self.client.smembers(index):
            sid = _text(member)
            (live if self.client.exists(f"{self.sid_name}:{sid}") else dead).append(sid)
        if dead:
            self.client.srem(index, *dead)
        return live

    def sync(self, user: Any) -> int:
        document = _user_document(user)
        sids = self.sessions_of(document["id"])
        for sid in sids:
            self.client.hset(f"{self.sid_name}:{sid}", self.user_field, _encode(document))
        return len(sids)

    def logout_everywhere(self, uid: int) -> int:
        sids = self.sessions_of(uid)
        for sid in sids:
            self.client.delete(f"{self.sid_name}:{sid}")
        self.client.delete(f"{self.user_prefix}:{uid}")
        return len(sids)
