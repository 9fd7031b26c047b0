"""Scheduled notifications (API key): list them (what `tidings schedule list` shows), cancel what has not gone out.

A key with the ``schedules`` scope cancels as `tidings schedule cancel` does: any event, by
{source, id} or by cancel_key, whoever published it. A service that should reach only its own
events publishes a ``tidings.notification.cancel`` through POST /v1/events instead (``events``
scope): the bus scopes that one to the key's own source and publisher.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Literal, Self

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_serializer, model_validator

from dispatcher.commands.base import Command
from dispatcher.commands.cancel import cancel_deliveries
from dispatcher.core import clock
from dispatcher.core.api_keys import ApiKey
from dispatcher.core.authority import Sender
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import MAX_ID_LENGTH, MAX_RECIPIENTS
from dispatcher.storage.deliveries import EventNotFound, find_event, scheduled_deliveries
from dispatcher.storage.models import Delivery

from .auth import api_key
from .database import session
from .deliveries import MAX_ATTRIBUTE, Target, target
from .problems import ApiError, not_found
from .schemas import rfc3339
from .state import api_state

router = APIRouter(tags=["schedules"])
ReadKey = Annotated[ApiKey, Depends(api_key("read"))]
SchedulesKey = Annotated[ApiKey, Depends(api_key("schedules"))]
#: The source a cancel from the API is recorded with (in its log line).
API_SOURCE = "/tidings/api"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_CURSOR_PREFIX = "s1:"
_CURSOR_MAX_LENGTH = 200
#: A delivery's status (storage.models.DeliveryStatus).
Status = Literal["pending", "sending", "sent", "skipped", "failed", "cancelled", "digest", "digested"]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]


class ScheduledDelivery(BaseModel):
    """One delivery due later than it was made: to whom, on which channel, when, and what became of it."""

    model_config = ConfigDict(extra="forbid")

    event_id: str
    source: str
    type: str
    target: Target
    channel: str
    status: str
    due_at: dt.datetime
    sent_at: dt.datetime | None
    cancel_key: str | None

    @field_serializer("due_at", "sent_at")
    def _utc(self, value: dt.datetime | None) -> str | None:
        return rfc3339(value)


class SchedulePage(BaseModel):
    """Scheduled deliveries, latest due first; ``next_cursor`` fetches the next page (null: this is the last)."""

    model_config = ConfigDict(extra="forbid")

    items: list[ScheduledDelivery]
    next_cursor: str | None


class CancelRequest(BaseModel):
    """Which deliveries to cancel: an event's ({source, id}) or every event's with a cancel_key; optionally
    only those of ``recipients``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"cancel_key": "match:42:reminder"}, {"source": "/matches", "id": "m-42"}]},
    )

    source: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE)] | None = None
    id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE)] | None = None
    cancel_key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)] | None = None
    recipients: Annotated[list[UserId], Field(max_length=MAX_RECIPIENTS)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        by_event = self.source is not None or self.id is not None
        if by_event == (self.cancel_key is not None) or (by_event and (self.source is None or self.id is None)):
            raise ValueError("give either source and id, or cancel_key")
        return self


class CancelResult(BaseModel):
    """``cancelled``: deliveries this request stopped; ``already_sent``: matched ones that had gone out (or were
    going out), which stay as they are."""

    model_config = ConfigDict(extra="forbid")

    cancelled: int
    already_sent: int


def encode_cursor(delivery: Delivery) -> str:
    """The opaque cursor of the page after ``delivery``."""
    text = f"{_CURSOR_PREFIX}{delivery.next_attempt_at.isoformat()}|{delivery.id}"
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    """The (due time, delivery id) a cursor of encode_cursor names; 400 for anything else."""
    invalid = ApiError(400, "Bad Request", "the cursor is not one that a page of this list gave")
    if len(cursor) > _CURSOR_MAX_LENGTH:
        raise invalid
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        due_text, _, id_text = text.removeprefix(_CURSOR_PREFIX).partition("|")
        due, delivery_id = dt.datetime.fromisoformat(due_text), int(id_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    if not text.startswith(_CURSOR_PREFIX) or due.tzinfo is not None or not id_text.isdigit():
        raise invalid
    return due, delivery_id


def scheduled_view(delivery: Delivery) -> ScheduledDelivery:
    return ScheduledDelivery(
        event_id=delivery.event.event_id,
        source=delivery.event.source,
        type=delivery.event.type,
        target=target(delivery),
        channel=delivery.channel,
        status=delivery.status,
        due_at=delivery.next_attempt_at,
        sent_at=delivery.sent_at,
        cancel_key=delivery.event.cancel_key,
    )


@router.get(
    "/v1/schedules",
    response_model=SchedulePage,
    summary="Scheduled deliveries",
    description="Deliveries due later than they were made (`data.deliver_at`, quiet hours), latest due first.",
    responses={400: {"description": "an invalid cursor", "content": {"application/problem+json": {}}}},
)
def list_schedules(
    key: ReadKey,
    status: Status | None = None,
    cursor: Annotated[str | None, Query(description="the next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> SchedulePage:
    after = decode_cursor(cursor) if cursor is not None else None
    with session():
        rows = scheduled_deliveries(status=status, after=after, limit=limit + 1)
        items = [scheduled_view(d) for d in rows[:limit]]
    return SchedulePage(items=items, next_cursor=encode_cursor(rows[limit - 1]) if len(rows) > limit else None)


@router.post(
    "/v1/schedules/cancel",
    response_model=CancelResult,
    summary="Cancel scheduled deliveries",
    description=(
        "Cancels the deliveries that have not gone out yet, of one event (`source` and `id`) or of every event "
        "with `cancel_key`, optionally only those of `recipients`: the code of `tidings.notification.cancel`, "
        "with an operator's reach (any event, whoever published it). Idempotent."
    ),
    responses={404: {"description": "no event has that source and id", "content": {"application/problem+json": {}}}},
)
def cancel_schedules(body: CancelRequest, request: Request, key: SchedulesKey) -> CancelResult:
    data: dict[str, object] = (
        {"cancel_key": body.cancel_key} if body.cancel_key is not None else {"source": body.source, "id": body.id}
    )
    if body.recipients is not None:
        data["recipients"] = body.recipients
    command = Command(
        data=data,
        changed_at=clock.now(),
        catalog=api_state(request).catalog,
        sender=Sender(publisher=f"api:{key.name}", privileged=True),
        source=API_SOURCE,
    )
    with session():
        if body.cancel_key is None:
            try:
                find_event(str(body.id), body.source)
            except EventNotFound:
                raise not_found("event") from None
        try:
            done = cancel_deliveries(command)
        except InvalidEvent as e:  # pydantic checked the shape already; the command's own checks stay the rule
            raise ApiError(422, "Unprocessable Content", str(e)) from None
    return CancelResult(cancelled=done.cancelled, already_sent=done.already_sent)
