"""insert_rows: one multi-row INSERT from a cached text, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from dispatcher.storage.db import transaction
from dispatcher.storage.models import Event, InboxItem
from dispatcher.storage.rows import insert_rows

T0 = dt.datetime(2026, 12, 3, 8, 0, 0, 123456)


def event_row(event_id: str, **changes: object) -> dict[str, object]:
    return {
        "source": "/tests",
        "event_id": event_id,
        "type": "team.invite.sent",
        "subject": None,
        "time": None,
        "data": {"recipients": ["ana"], "team": "Night Owls ü"},
        "cancel_key": None,
        "received_at": T0,
        "publisher": None,
        **changes,
    }


def test_rows_are_stored_as_peewee_would_store_them_and_come_back_converted(db: str) -> None:
    # when
    with transaction():
        returned = insert_rows(Event, [event_row("a"), event_row("b")], returning=["event_id", "received_at", "data"])
    # then
    assert sorted(returned) == [
        ("a", T0, {"recipients": ["ana"], "team": "Night Owls ü"}),
        ("b", T0, {"recipients": ["ana"], "team": "Night Owls ü"}),
    ]
    stored = Event.get(Event.event_id == "a")
    assert (stored.received_at, stored.data["team"], stored.source) == (T0, "Night Owls ü", "/tests")


def test_a_row_that_conflicts_is_left_as_it_was_and_returns_nothing(db: str) -> None:
    # given
    insert_rows(Event, [event_row("a")])
    # when
    returned = insert_rows(
        Event, [event_row("a", type="match.started"), event_row("c")], returning=["event_id"], ignore_conflicts=True
    )
    # then
    assert returned == [("c",)]
    assert Event.get(Event.event_id == "a").type == "team.invite.sent"


def test_ids_come_back_for_every_row_inserted(db: str) -> None:
    # when
    ids = insert_rows(Event, [event_row(f"e{i}") for i in range(30)], returning=["id", "event_id"])
    # then
    assert {event_id: row_id for row_id, event_id in ids} == {
        event.event_id: event.id for event in Event.select(Event.id, Event.event_id)
    }
    assert len(ids) == 30


def test_no_rows_run_no_statement(db: str) -> None:
    assert insert_rows(InboxItem, [], returning=["id"]) == []
    assert InboxItem.select().count() == 0
