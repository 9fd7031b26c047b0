"""The inbox rules (dispatcher/commands/inbox.py), on SQLite and PostgreSQL: pages, counts, state changes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from dispatcher.commands import inbox
from dispatcher.core import clock
from dispatcher.core.catalog import Catalog
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.db import database
from dispatcher.storage.migrate import SCHEMA_VERSION, migrate
from dispatcher.storage.models import InboxItem, SchemaVersion
from tests.support.events import invite, parsed_event

T0 = dt.datetime(2026, 5, 9, 12, 0)


def at(when: dt.datetime) -> Callable[[], dt.datetime]:
    return lambda: when


@pytest.fixture
def add_item(db: str, catalog: Catalog) -> Callable[..., InboxItem]:
    """An inbox row of ``user`` made as ingest makes its delivery, without a worker."""

    def add(user: str = "ana", type_name: str = "team.invite.sent") -> InboxItem:
        data = invite([user]) if type_name == "team.invite.sent" else {"recipients": [user], "tournament_name": "Cup"}
        result = ingest_event(parsed_event(type_name, data), catalog, ["in_app"])
        [(delivery_id, _)] = result.to_enqueue
        item: InboxItem = InboxItem.create(
            delivery=delivery_id, user_id=user, type=type_name, title="t", body="b", data={}
        )
        return item

    return add


def test_a_cursor_names_its_id_and_nothing_else_is_taken_for_one() -> None:
    assert inbox.decode_cursor(inbox.encode_cursor(42)) == 42
    for bad in ("", "zzz", "djEuMA", "djEuLTE", "djEuNDI=", "x" * 500, inbox.encode_cursor(42) + "A", "dj!uNDI"):
        with pytest.raises(inbox.InvalidCursor):
            inbox.decode_cursor(bad)


def test_pages_follow_each_other_newest_first_without_duplicates_or_gaps(add_item: Callable[..., InboxItem]) -> None:
    # given 12 items of ana's and one of bo's
    ids = [add_item().id for _ in range(12)]
    add_item("bo")
    # when
    seen, cursor, pages = [], None, 0
    while True:
        page = inbox.list_page("ana", inbox.Filters(), limit=5, cursor=cursor)
        seen += [item.id for item in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    # then
    assert seen == sorted(ids, reverse=True)
    assert pages == 3


def test_an_item_arriving_between_pages_does_not_shift_the_next_page(add_item: Callable[..., InboxItem]) -> None:
    ids = [add_item().id for _ in range(4)]
    first = inbox.list_page("ana", inbox.Filters(), limit=2)
    add_item()
    second = inbox.list_page("ana", inbox.Filters(), limit=2, cursor=first.next_cursor)
    assert [item.id for item in second.items] == [ids[1], ids[0]]
    assert second.next_cursor is None


def test_reading_marks_seen_too_and_keeps_the_first_times(add_item: Callable[..., InboxItem]) -> None:
    item_id = add_item().id
    with clock.use_clock(at(T0)):
        inbox.change("ana", item_id, inbox.Change.SEEN)
    with clock.use_clock(at(T0 + dt.timedelta(minutes=5))):
        read = inbox.change("ana", item_id, inbox.Change.READ)
    with clock.use_clock(at(T0 + dt.timedelta(minutes=9))):
        again = inbox.change("ana", item_id, inbox.Change.READ)
        unread = inbox.change("ana", item_id, inbox.Change.UNREAD)
    assert read is not None and again is not None and unread is not None
    assert (read.seen_at, read.read_at) == (T0, T0 + dt.timedelta(minutes=5))
    assert again.read_at == T0 + dt.timedelta(minutes=5)
    assert (unread.seen_at, unread.read_at) == (T0, None)


def test_another_users_item_is_not_found_and_not_changed(add_item: Callable[..., InboxItem]) -> None:
    item_id = add_item("bo").id
    for what in inbox.Change:
        assert inbox.change("ana", item_id, what) is None
    assert InboxItem.get_by_id(item_id).read_at is None
    assert inbox.change("ana", 10**12, inbox.Change.READ) is None


def test_counts_leave_archived_items_out(add_item: Callable[..., InboxItem]) -> None:
    a, b, c, _ = (add_item().id for _ in range(4))
    add_item("bo")
    inbox.change("ana", a, inbox.Change.READ)
    inbox.change("ana", b, inbox.Change.SEEN)
    inbox.change("ana", c, inbox.Change.ARCHIVE)
    assert inbox.counts("ana") == inbox.Counts(total=3, unread=2, unseen=1)
    assert inbox.counts("nobody") == inbox.Counts(total=0, unread=0, unseen=0)


def test_read_all_and_archive_all_reach_only_the_users_items_of_the_type(add_item: Callable[..., InboxItem]) -> None:
    invites = [add_item().id for _ in range(3)]
    cups = [add_item(type_name="tournament.bracket_ready").id for _ in range(2)]
    add_item("bo")
    inbox.change("ana", invites[0], inbox.Change.ARCHIVE)
    assert inbox.read_all("ana", "team.invite.sent") == 2  # the archived one stays as it is
    assert inbox.read_all("ana", "team.invite.sent") == 0
    assert inbox.counts("ana") == inbox.Counts(total=4, unread=2, unseen=2)
    assert inbox.archive_all("ana") == 4
    assert inbox.counts("bo") == inbox.Counts(total=1, unread=1, unseen=1)
    archived = inbox.list_page("ana", inbox.Filters(archived=True))
    assert sorted(item.id for item in archived.items) == sorted(invites + cups)


def test_filters_select_unread_read_archived_and_one_type(add_item: Callable[..., InboxItem]) -> None:
    a, b = add_item().id, add_item().id
    cup = add_item(type_name="tournament.bracket_ready").id
    inbox.change("ana", a, inbox.Change.READ)
    inbox.change("ana", b, inbox.Change.ARCHIVE)

    def ids(**filters: object) -> list[int]:
        return [item.id for item in inbox.list_page("ana", inbox.Filters(**filters)).items]  # type: ignore[arg-type]

    assert ids() == [cup, a]
    assert ids(unread=True) == [cup]
    assert ids(unread=False) == [a]
    assert ids(archived=True) == [b]
    assert ids(type="tournament.bracket_ready") == [cup]


def test_an_unknown_type_is_refused(catalog: Catalog) -> None:
    inbox.check_type(catalog, "team.invite.sent")
    inbox.check_type(catalog, None)
    with pytest.raises(inbox.UnknownType, match="not a notification type"):
        inbox.check_type(catalog, "team.invite.sen")


def test_a_version_5_database_gains_the_inbox_states_and_their_indexes(db: str) -> None:
    # given a database as version 5 left it
    for name in ("inbox_item_active", "inbox_item_unread", "inbox_item_unseen", "inbox_item_user_id_id"):
        database.execute_sql(f'DROP INDEX "{name}"')
    for column in ("seen_at", "archived_at"):
        database.execute_sql(f'ALTER TABLE "inbox_item" DROP COLUMN "{column}"')
    SchemaVersion.update(version=5).execute()
    # when
    result = migrate()
    # then
    assert result == (5, SCHEMA_VERSION)
    assert {"seen_at", "archived_at"} <= {c.name for c in database.get_columns("inbox_item")}
    indexes = {index.name for index in database.get_indexes("inbox_item")}
    assert {"inbox_item_active", "inbox_item_unread", "inbox_item_unseen", "inbox_item_user_id_id"} <= indexes
