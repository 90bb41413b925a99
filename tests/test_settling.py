"""How an opened session settles on its first store operation, whatever that
operation is, and what the object remembers afterwards. Both doors."""

from __future__ import annotations

from typing import Any

import pytest
from dce_session import RenewPolicy
from dce_session.core import generate_sid, session_key
from dce_session.errors import NotLoggedIn, SessionDestroyed

NOW = 1_700_000_000


@pytest.mark.parametrize("operation", ["login", "regenerate", "auto_login", "logout", "destroy"])
async def test_an_unknown_sid_settles_as_newborn(make_manager: Any, call: Any, store: Any,
                                                 operation: str) -> None:
    unknown = generate_sid(60)
    session = make_manager().open(unknown)
    action = {
        "login": lambda: session.login({"id": 1}),
        "regenerate": lambda: session.regenerate({"a": 1}),
        "auto_login": session.auto_login,
        "logout": session.logout,
        "destroy": session.destroy,
    }[operation]
    if operation == "auto_login":
        with pytest.raises(NotLoggedIn):
            await call(action())
    elif operation in ("logout", "destroy"):
        assert await call(action()) is False
    else:
        assert isinstance(await call(action()), str)
    assert session.newborn
    assert session.id != unknown
    assert not store.exists(session_key("dcesid", unknown))


async def test_logout_after_destroy_raises(make_manager: Any, call: Any) -> None:
    session = make_manager().new()
    await call(session.login({"id": 2}))
    assert await call(session.destroy())
    with pytest.raises(SessionDestroyed):
        await call(session.logout())


async def test_destroying_a_never_stored_session_does_not_end_the_object(
        make_manager: Any, call: Any, store: Any) -> None:
    session = make_manager().new()
    assert not await call(session.destroy())
    await call(session.set("a", 1))
    assert store.hgetall(session.key) == {"a": "1"}


@pytest.mark.parametrize("first", ["set", "touch", "get"])
async def test_a_superseded_sid_reads_as_unknown_and_stays_judgeable(
        make_manager: Any, call: Any, store: Any, first: str) -> None:
    """SEMANTICS 3.2: past grace, a rotated sid used without try_renew reads as
    unknown (newborn, no data) and changes nothing stored, so a later
    try_renew on it still judges it (the client moved on: SessionDestroyed)."""
    now = [NOW]
    manager = make_manager(renew=RenewPolicy(), clock=lambda: now[0])
    session = manager.new()
    await call(session.set("a", 1))
    old = session.id
    now[0] += 600
    rotating = manager.open(old)
    assert await call(rotating.try_renew())
    successor = rotating.id
    now[0] += 300  # past the 120 s grace
    store.expire(session_key("dcesid", successor), 3600 - 5)  # used 5 s ago
    store.expire(session_key("dcesid", old), 3600 - 200)  # rotated 200 s ago
    late = manager.open(old)
    await call({"set": lambda: late.set("b", 2), "touch": late.touch,
                "get": lambda: late.get("a")}[first]())
    assert late.newborn
    assert late.id not in (old, successor)
    assert await call(late.get("a")) is None
    assert store.hgetall(session_key("dcesid", successor)) == {"a": "1"}
    assert store.ttl(session_key("dcesid", old)) <= 3600 - 200
    judged = manager.open(old)
    with pytest.raises(SessionDestroyed):
        await call(judged.try_renew())
    assert store.hgetall(session_key("dcesid", old)) == {"$newid": ""}  # judged: refused on
    assert store.exists(session_key("dcesid", successor))
