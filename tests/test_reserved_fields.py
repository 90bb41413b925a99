"""SEMANTICS 3.5: the bookkeeping fields belong to their operations. Every
write path refuses them with ``ReservedField`` and writes nothing; reads may
see them. ``data()`` gives the user values only. Both doors."""

from __future__ import annotations

from typing import Any

import pytest
from dce_session.errors import InvalidField, ReservedField

BOOKKEEPING = ["$user", "$newid", "$server", "$client"]


@pytest.mark.parametrize("field", BOOKKEEPING)
async def test_every_write_path_refuses_bookkeeping(make_manager: Any, call: Any, store: Any,
                                                    round_trips: Any, field: str) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.set("kept", 1))
    writes = [
        lambda s: s.set(field, {"id": 1000}),
        lambda s: s.silent_set(field, "x"),
        lambda s: s.update({"ok": 1, field: {"id": 1000}}),
        lambda s: s.update({"ok": 1}, delete=[field]),
        lambda s: s.delete(field),
        lambda s: s.silent_delete(field),
        lambda s: s.load({"ok": "1", field: '{"id":1000}'}),
        lambda s: s.regenerate({field: {"id": 1000}}),
        lambda s: s.regenerate({field: None}),
    ]
    for write in writes:
        opened = manager.open(session.id)
        round_trips.reset()
        with pytest.raises(ReservedField):
            await call(write(opened))
        assert round_trips.count == 0
    assert store.hgetall(session.key) == {"kept": "1"}
    assert store.keys("dceusmap:*") == []


async def test_custom_names_are_the_reserved_ones(make_manager: Any, call: Any) -> None:
    manager = make_manager(user_field="who")
    session = manager.new()
    with pytest.raises(ReservedField):
        await call(session.set("who", {"id": 1}))
    await call(session.set("$user", "just a value here"))  # not bookkeeping for this manager
    assert await call(session.data()) == {"$user": "just a value here"}


async def test_reserved_is_a_value_error_and_field_type_a_type_error() -> None:
    assert issubclass(ReservedField, ValueError)
    assert issubclass(InvalidField, TypeError)


@pytest.mark.parametrize("bad", [1, None, b"x", "\ud800"])
async def test_bad_field_names_are_invalid_field(make_manager: Any, call: Any,
                                                 round_trips: Any, bad: Any) -> None:
    session = make_manager().new()
    round_trips.reset()
    for write in (lambda: session.set(bad, 1), lambda: session.update({bad: 1}),
                  lambda: session.delete(bad), lambda: session.get(bad)):
        with pytest.raises(InvalidField):
            await call(write())
    assert round_trips.count == 0


async def test_data_hides_bookkeeping_and_decodes(make_manager: Any, call: Any,
                                                  round_trips: Any) -> None:
    manager = make_manager()
    session = manager.new()
    await call(session.update({"cart": ["a"], "n": 1}))
    await call(session.login({"id": 5}))
    opened = manager.open(session.id)
    round_trips.reset()
    assert await call(opened.data()) == {"cart": ["a"], "n": 1}
    assert await call(opened.uid()) == 5
    assert round_trips.count == 1
    assert "$user" in await call(opened.raw())
