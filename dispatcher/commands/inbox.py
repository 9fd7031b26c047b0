"""A user's inbox: its pages, its counts and the changes of state of its items, for the API and the CLI alike.

An item is *seen* once the user saw it in a list, *read* once they opened it (reading implies
seeing), and *archived* once they put it away: archived items leave the default list and the
counts. A page is newest first, by id, and the next page starts below the last id shown (keyset
pagination: no OFFSET, no duplicates or gaps when items arrive or change meanwhile). The cursor
names that id opaquely. Every query names the user: an item of someone else is not found, like an
unknown one. The caller holds the transaction (the API's ``session()``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import re
from typing import Any

import peewee

from dispatcher.core import clock
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import TidingsError
from dispatcher.storage.models import InboxItem

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_CURSOR_PREFIX = "v1."
_CURSOR_ID = re.compile(r"[1-9][0-9]{0,17}")
_CURSOR_MAX_LENGTH = 40


class InboxError(TidingsError):
    """A request about an inbox that cannot be answered as asked; the message says why."""

    permanent = True


class InvalidCursor(InboxError):
    """A cursor that no page of Tidings' handed out."""


class UnknownType(InboxError):
    """A notification type that is not in the catalog."""


class Change(enum.StrEnum):
    """A change of one item's state."""

    READ = "read"  # also seen
    UNREAD = "unread"
    SEEN = "seen"
    ARCHIVE = "archive"
    UNARCHIVE = "unarchive"


@dataclasses.dataclass(frozen=True)
class Filters:
    """Which items a list shows: ``unread`` True/False (None: both), archived ones or the others, one type."""

    unread: bool | None = None
    archived: bool = False
    type: str | None = None


@dataclasses.dataclass(frozen=True)
class Page:
    """Up to ``limit`` items, newest first, and the cursor of the next page (None: this is the last)."""

    items: list[InboxItem]
    next_cursor: str | None


@dataclasses.dataclass(frozen=True)
class Counts:
    """Of the items not archived: how many there are, how many unread, how many unseen."""

    total: int
    unread: int
    unseen: int


def encode_cursor(last_id: int) -> str:
    """The opaque cursor of the page after the item ``last_id``."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor of ``encode_cursor`` names; InvalidCursor for anything else."""
    invalid = InvalidCursor("the cursor is not one that a page of this list gave")
    if len(cursor) > _CURSOR_MAX_LENGTH:
        raise invalid
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise invalid from None
    number = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not _CURSOR_ID.fullmatch(number) or encode_cursor(int(number)) != cursor:
        raise invalid
    return int(number)


def check_type(catalog: Catalog, type_name: str | None) -> None:
    """Raise UnknownType unless ``type_name`` is None or a catalog type."""
    if type_name is not None and type_name not in catalog:
        raise UnknownType(f"{type_name[:100]!r} is not a notification type of the catalog")


def list_page(user_id: str, filters: Filters, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page:
    """One page of ``user_id``'s items, newest first, after ``cursor`` (from the previous page) if given."""
    if limit < 1:
        raise InboxError("limit must be at least 1")
    query = InboxItem.select().where(*_shown(user_id, filters))
    if cursor is not None:
        query = query.where(InboxItem.id < decode_cursor(cursor))
    rows = list(query.order_by(InboxItem.id.desc()).limit(limit + 1))  # one more: is there a next page?
    items = rows[:limit]
    return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)


def _shown(user_id: str, filters: Filters) -> list[peewee.Expression]:
    # Written as the partial indexes' conditions are (models.py), so that the planners use them.
    conditions = [InboxItem.user_id == user_id, InboxItem.archived_at.is_null(not filters.archived)]
    if filters.unread is not None:
        conditions.append(InboxItem.read_at.is_null(filters.unread))
    if filters.type is not None:
        conditions.append(InboxItem.type == filters.type)
    return conditions


def counts(user_id: str) -> Counts:
    """``user_id``'s counts (archived items excluded); each is one query on its own partial index."""
    active = InboxItem.select(peewee.fn.COUNT(InboxItem.id)).where(
        InboxItem.user_id == user_id, InboxItem.archived_at.is_null()
    )
    return Counts(
        total=int(active.scalar()),
        unread=int(active.where(InboxItem.read_at.is_null()).scalar()),
        unseen=int(active.where(InboxItem.seen_at.is_null()).scalar()),
    )


def change(user_id: str, item_id: int, what: Change) -> InboxItem | None:
    """Apply ``what`` to ``user_id``'s item ``item_id`` and return it; None if the user has no such item.

    Idempotent: a time already set is kept (the first read is when it was read).
    """
    # The write first: in SQLite's deferred transaction it takes the write lock before anything is read.
    updated = (
        InboxItem.update(_assignments(what)).where(InboxItem.id == item_id, InboxItem.user_id == user_id).execute()
    )
    if not updated:
        return None
    item: InboxItem = InboxItem.get(InboxItem.id == item_id)
    return item


def _assignments(what: Change) -> dict[peewee.Field[Any], Any]:
    now = clock.now()
    keep_or_now: dict[peewee.Field[Any], Any] = {
        field: peewee.fn.COALESCE(field, now) for field in (InboxItem.read_at, InboxItem.seen_at)
    }
    assignments: dict[Change, dict[peewee.Field[Any], Any]] = {
        Change.READ: keep_or_now,
        Change.UNREAD: {InboxItem.read_at: None},
        Change.SEEN: {InboxItem.seen_at: keep_or_now[InboxItem.seen_at]},
        Change.ARCHIVE: {InboxItem.archived_at: peewee.fn.COALESCE(InboxItem.archived_at, now)},
        Change.UNARCHIVE: {InboxItem.archived_at: None},
    }
    return assignments[what]


def read_all(user_id: str, type_name: str | None = None) -> int:
    """Mark read (and seen) every unread item of ``user_id`` not archived, of ``type_name`` if given; how many."""
    now = clock.now()
    query = InboxItem.update(read_at=now, seen_at=peewee.fn.COALESCE(InboxItem.seen_at, now)).where(
        *_shown(user_id, Filters(unread=True, type=type_name))
    )
    return int(query.execute())


def archive_all(user_id: str, type_name: str | None = None) -> int:
    """Archive every item of ``user_id`` not archived yet, of ``type_name`` if given; how many."""
    query = InboxItem.update(archived_at=clock.now()).where(*_shown(user_id, Filters(type=type_name)))
    return int(query.execute())


def read(user_id: str, item_ids: list[int]) -> int:
    """Mark read (and seen) these items of ``user_id``, archived or not; how many of them the user has."""
    found = 0
    for item_id in dict.fromkeys(item_ids):
        found += change(user_id, item_id, Change.READ) is not None
    return found
