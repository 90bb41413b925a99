"""A session's life with dce-session, blocking and asyncio.

Uses ``REDIS_URL`` when set, else starts a throwaway local redis-server.

    python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import dce_session
import dce_session.asyncio
import redis
import redis.asyncio
from dce_session.testing import RedisServer


@dataclass
class User:
    id: int
    name: str


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    if "REDIS_URL" in os.environ:
        yield os.environ["REDIS_URL"]
        return
    with RedisServer() as server:
        yield server.url


def blocking(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        manager = dce_session.SessionManager(client, ttl_minutes=30,
                                             user_loader=lambda d: User(**d))
        # 1. A visitor arrives without a cookie: a newborn session.
        session = manager.new()
        session.set("cart", ["apple"])
        print("new session   ", session, "-> send cookie dcesid=<id>")

        # 2. Their next request presents the sid: one round trip loads it.
        request = manager.open(session.id)
        request.set("cart", [*request.get("cart"), "pear"])
        print("cart          ", request.get("cart"))

        # 3. Login always issues a fresh sid (session-fixation defence).
        old = request.id
        new_sid = request.login(User(42, "Ada"))
        alive = bool(client.exists(f"dcesid:{old}"))
        print("logged in     ", request.user(), "| old sid still stored:", alive)
        print("user 42 has   ", len(manager.sessions_of(42)), "session(s)")

        # 4. A stolen or made-up sid is never adopted.
        forged = manager.open("F" * 76)
        print("forged sid    ", "newborn" if forged.newborn or forged.get("cart") is None else "?")

        # 5. Profile changed elsewhere: sync it into every session of user 42.
        print("synced        ", manager.sync(User(42, "Ada Lovelace")), "session(s):",
              manager.open(new_sid).user())

        # 6. Logout everywhere.
        print("logged out of ", manager.logout_everywhere(42), "session(s)")


async def concurrent(url: str) -> None:
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    try:
        manager = dce_session.asyncio.SessionManager(client)
        session = manager.new()
        await session.update({"theme": "dark", "visits": 1})
        opened = manager.open(session.id)
        print("asyncio       ", await opened.get("theme"), await opened.get("visits"))
        await opened.destroy()
    finally:
        await client.aclose()


def main() -> None:
    with redis_url() as url:
        blocking(url)
        asyncio.run(concurrent(url))


if __name__ == "__main__":
    main()
