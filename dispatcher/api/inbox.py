"""The caller's inbox (user token): its pages, its counts, and each item's read, seen and archived states.

The rules are dispatcher/commands/inbox.py's, which `tidings inbox` uses too. Every query names the
token's user, so another user's notification is a 404, as an unknown one is.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from dispatcher.amqp.bus import announce_counts_changed
from dispatcher.commands import inbox
from dispatcher.core.catalog import Catalog

from .auth import current_user
from .database import session
from .problems import ApiError, not_found
from .schemas import Notification, notification
from .state import api_state

router = APIRouter(tags=["inbox"])

UserId = Annotated[str, Depends(current_user)]
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The notification's id.")]


class NotificationPage(BaseModel):
    """A page of the inbox, newest first; ``next_cursor`` fetches the next one (null: this is the last)."""

    model_config = ConfigDict(extra="forbid")

    items: list[Notification]
    next_cursor: str | None


class NotificationCounts(BaseModel):
    """Of the notifications not archived: how many, how many unread, how many not seen yet."""

    model_config = ConfigDict(extra="forbid")

    total: int
    unread: int
    unseen: int


class BulkChange(BaseModel):
    """Which notifications a read-all or archive-all changes: all of them, or those of one type."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"type": "match.started"}]})

    type: str | None = Field(default=None, description="A catalog type: only notifications of this type.")


class Updated(BaseModel):
    """How many notifications changed."""

    model_config = ConfigDict(extra="forbid")

    updated: int


def _known_type(catalog: Catalog, type_name: str | None, where: str) -> None:
    try:
        inbox.check_type(catalog, type_name)
    except inbox.UnknownType as e:
        raise RequestValidationError([{"loc": (where, "type"), "msg": str(e), "type": "value_error"}]) from None


@router.get("/v1/me/notifications", response_model=NotificationPage, summary="The caller's notifications")
def list_notifications(
    request: Request,
    user_id: UserId,
    limit: Annotated[int, Query(ge=1, le=inbox.MAX_LIMIT, description="Notifications per page.")] = (
        inbox.DEFAULT_LIMIT
    ),
    cursor: Annotated[str | None, Query(max_length=200, description="The next_cursor of the previous page.")] = None,
    unread: Annotated[bool | None, Query(description="true: only unread ones; false: only read ones.")] = None,
    archived: Annotated[bool, Query(description="true: only archived ones; false: the others.")] = False,
    type: Annotated[str | None, Query(max_length=255, description="Only this catalog type.")] = None,
) -> NotificationPage:
    """Newest first. Pages are keyset-paginated: follow ``next_cursor`` until it is null."""
    _known_type(api_state(request).catalog, type, "query")
    filters = inbox.Filters(unread=unread, archived=archived, type=type)
    with session():
        try:
            page = inbox.list_page(user_id, filters, limit=limit, cursor=cursor)
        except inbox.InvalidCursor as e:
            raise ApiError(400, "Bad Request", f"cursor: {e}") from None
        return NotificationPage(items=[notification(row) for row in page.items], next_cursor=page.next_cursor)


@router.get("/v1/me/notifications/count", response_model=NotificationCounts, summary="The caller's counts")
def count_notifications(user_id: UserId) -> NotificationCounts:
    """For a badge: archived notifications are not counted."""
    with session():
        counts = inbox.counts(user_id)
    return NotificationCounts(total=counts.total, unread=counts.unread, unseen=counts.unseen)


@router.post("/v1/me/notifications/read-all", response_model=Updated, summary="Mark every notification read")
def read_all(request: Request, user_id: UserId, body: Annotated[BulkChange | None, Body()] = None) -> Updated:
    """Every unread notification not archived (of ``type`` if given) becomes read, and seen."""
    type_name = body.type if body else None
    _known_type(api_state(request).catalog, type_name, "body")
    with session():
        updated = inbox.read_all(user_id, type_name)
    _counts_changed(request, user_id, updated)
    return Updated(updated=updated)


@router.post("/v1/me/notifications/archive-all", response_model=Updated, summary="Archive every notification")
def archive_all(request: Request, user_id: UserId, body: Annotated[BulkChange | None, Body()] = None) -> Updated:
    """Every notification not archived yet (of ``type`` if given) is archived."""
    type_name = body.type if body else None
    _known_type(api_state(request).catalog, type_name, "body")
    with session():
        updated = inbox.archive_all(user_id, type_name)
    _counts_changed(request, user_id, updated)
    return Updated(updated=updated)


def _counts_changed(request: Request, user_id: str, changed: int) -> None:
    """After the change committed: the user's open streams send their new counts."""
    if changed:
        announce_counts_changed(api_state(request).settings, user_id)


def _change(request: Request, user_id: str, item_id: int, what: inbox.Change) -> Notification:
    with session():
        item = inbox.change(user_id, item_id, what)
        if item is None:
            raise not_found("notification")
        changed = notification(item)
    _counts_changed(request, user_id, 1)
    return changed


@router.post("/v1/me/notifications/{item_id}/read", response_model=Notification, summary="Mark read")
def mark_read(request: Request, user_id: UserId, item_id: ItemId) -> Notification:
    """Read implies seen. A time already set is kept."""
    return _change(request, user_id, item_id, inbox.Change.READ)


@router.post("/v1/me/notifications/{item_id}/unread", response_model=Notification, summary="Mark unread")
def mark_unread(request: Request, user_id: UserId, item_id: ItemId) -> Notification:
    """It stays seen."""
    return _change(request, user_id, item_id, inbox.Change.UNREAD)


@router.post("/v1/me/notifications/{item_id}/seen", response_model=Notification, summary="Mark seen")
def mark_seen(request: Request, user_id: UserId, item_id: ItemId) -> Notification:
    """Seen in a list, not opened: it stays unread."""
    return _change(request, user_id, item_id, inbox.Change.SEEN)


@router.post("/v1/me/notifications/{item_id}/archive", response_model=Notification, summary="Archive")
def archive(request: Request, user_id: UserId, item_id: ItemId) -> Notification:
    """It leaves the default list and the counts; ``?archived=true`` lists it."""
    return _change(request, user_id, item_id, inbox.Change.ARCHIVE)


@router.post("/v1/me/notifications/{item_id}/unarchive", response_model=Notification, summary="Unarchive")
def unarchive(request: Request, user_id: UserId, item_id: ItemId) -> Notification:
    """Back in the default list and the counts."""
    return _change(request, user_id, item_id, inbox.Change.UNARCHIVE)
