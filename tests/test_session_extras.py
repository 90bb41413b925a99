"""The additions beyond API.md's tables that the integrations stand on:
``update(..., delete=...)``, ``regenerate(destroy_old=, ttl_minutes=)`` and the
``stored`` / ``destroyed`` / ``manager`` attributes. Both doors."""

from __future__ import annotations

from typing import Any

import pytest
from dce_session.errors import SessionDestroyed


async def test_update_sets_and_deletes_in_one_round_trip(make_manager: Any, call: Any,
                                                         round_trips: Any, store: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.update({"a": 1, "b": 2, "c": 3}))
    opened = manager.open(session.id)
    round_trips.reset()
    await call(opened.update({"a": 10, "d": [4]}, delete=["b", "missing"]))
    assert round_trips.count == 1
    assert store.hgetall(session.key) == {"a": "10", "c": "3", "d": "[4]"}


async def test_update_delete_rejects_bad_field_names_before_any_io(
        make_manager: Any, call: Any, round_trips: Any) -> None:
    session = make_manager().new()
    round_trips.reset()
    with pytest.raises(TypeError):
        await call(session.update({}, delete=[1]))
    assert round_trips.count == 0


async def test_regenerate_can_destroy_the_old_session_and_change_ttl(
        make_manager: Any, call: Any, store: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("a", 1))
    old_key = session.key
    new_sid = await call(session.regenerate({"b": 2}, destroy_old=True, ttl_minutes=5))
    assert session.id == new_sid
    assert session.ttl_minutes == 5
    assert not store.exists(old_key)
    assert store.hgetall(session.key) == {"a": "1", "b": "2"}
    assert 0 < store.ttl(session.key) <= 300


async def test_stored_and_destroyed_follow_the_session(make_manager: Any, call: Any) -> None:
    manager = make_manager()
    session = manager.new()
    assert session.manager is manager
    assert not session.stored
    assert not session.destroyed
    await call(session.set("a", 1))
    assert session.stored
    assert await call(session.destroy())
    assert session.destroyed
    assert not session.stored
    with pytest.raises(SessionDestroyed):
        await call(session.update({}, delete=["a"]))
