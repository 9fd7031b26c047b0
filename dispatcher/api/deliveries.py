"""GET /v1/deliveries: what became of one event, delivery by delivery (what `tidings deliveries` shows)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, field_serializer

from channels import Channel, channel_classes
from dispatcher.core.api_keys import ApiKey
from dispatcher.storage.deliveries import EventNotFound, event_deliveries, find_event
from dispatcher.storage.models import Delivery, DeliveryStatus

from .auth import api_key
from .database import session
from .problems import not_found
from .schemas import rfc3339

router = APIRouter(tags=["deliveries"])
ReadKey = Annotated[ApiKey, Depends(api_key("read"))]
MAX_ATTRIBUTE = 1020  # Event.source and Event.event_id


class Target(BaseModel):
    """Whom a delivery goes to: a user (by id) or a webhook endpoint (by id), as its channel addresses."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["user", "endpoint"]
    id: str


def target(delivery: Delivery) -> Target:
    """The delivery's target, as its channel's ``addresses`` fact says (a channel no longer registered: a user)."""
    cls = channel_classes().get(delivery.channel, Channel)
    return Target(kind=cls.addresses, id=delivery.user_id)


class DeliveryView(BaseModel):
    """One delivery of the event. ``next_attempt_at``: when it is due next, null once it is final."""

    model_config = ConfigDict(extra="forbid")

    target: Target
    channel: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: dt.datetime | None
    sent_at: dt.datetime | None

    @field_serializer("next_attempt_at", "sent_at")
    def _utc(self, value: dt.datetime | None) -> str | None:
        return rfc3339(value)


class EventRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    source: str
    type: str


class EventDeliveries(BaseModel):
    """An event and each of its deliveries, by target then channel."""

    model_config = ConfigDict(extra="forbid")

    event: EventRef
    deliveries: list[DeliveryView]


def delivery_view(delivery: Delivery) -> DeliveryView:
    final = delivery.status in DeliveryStatus.FINAL
    return DeliveryView(
        target=target(delivery),
        channel=delivery.channel,
        status=delivery.status,
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        next_attempt_at=None if final else delivery.next_attempt_at,
        sent_at=delivery.sent_at,
    )


@router.get(
    "/v1/deliveries",
    response_model=EventDeliveries,
    summary="The deliveries of one event",
    responses={404: {"description": "no such event", "content": {"application/problem+json": {}}}},
)
def get_deliveries(
    key: ReadKey,
    source: Annotated[str, Query(min_length=1, max_length=MAX_ATTRIBUTE, description="the event's source")],
    event_id: Annotated[str, Query(min_length=1, max_length=MAX_ATTRIBUTE, description="the event's id")],
) -> EventDeliveries:
    with session():
        try:
            event = find_event(event_id, source)
        except EventNotFound:
            raise not_found("event") from None
        return EventDeliveries(
            event=EventRef(id=event.event_id, source=event.source, type=event.type),
            deliveries=[delivery_view(d) for d in event_deliveries(event)],
        )
