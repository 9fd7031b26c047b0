"""tidings.notification.cancel: stop deliveries that have not gone out yet."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from typing import cast

import structlog

from dispatcher.commands.base import Command
from dispatcher.core import clock
from dispatcher.core.errors import InvalidCommand
from dispatcher.core.events import MAX_ID_LENGTH
from dispatcher.storage.models import Delivery, DeliveryStatus, Event

log = structlog.get_logger("tidings.cancel")

#: What a cancel can still stop: waiting, held for later or for a digest.
CANCELLABLE = (DeliveryStatus.PENDING, DeliveryStatus.DIGEST)
#: What a cancel comes too late for: gone out, going out, or sent in a digest.
GONE_OUT = (DeliveryStatus.SENT, DeliveryStatus.SENDING, DeliveryStatus.DIGESTED)


@dataclasses.dataclass(frozen=True)
class Cancellation:
    """What one cancel did: how many deliveries it stopped, and the statuses of those it matched and left."""

    cancelled: int
    left: dict[str, int]

    @property
    def already_sent(self) -> int:
        """Matched deliveries that had gone out (or were going out), which stay as they are."""
        return sum(self.left.get(status, 0) for status in GONE_OUT)


def cancel_notification(command: Command) -> str:
    """The tidings.notification.cancel command: cancel_deliveries, for the log "applied"."""
    cancel_deliveries(command)
    return "applied"


def cancel_deliveries(command: Command) -> Cancellation:
    """Cancel the pending deliveries of an event ({source, id}) or of every event with a cancel_key.

    ``recipients`` limits it to those users. What was sent (or is being sent)
    stays as it is, and the log line says so. A cancel from a publisher without
    authority reaches only the events of its own source and RabbitMQ user.
    """
    data = command.data
    events = Event.select(Event.id)
    if "cancel_key" in data:
        key = data["cancel_key"]
        if not isinstance(key, str) or not 0 < len(key) <= MAX_ID_LENGTH:
            raise InvalidCommand(f"cancel_key must be a string of 1 to {MAX_ID_LENGTH} characters")
        events = events.where(Event.cancel_key == key)
    elif isinstance(data.get("source"), str) and isinstance(data.get("id"), str):
        if not command.sender.privileged and data["source"] != command.source:
            raise InvalidCommand(
                "tidings.notification.cancel: a publisher without authority cancels only events "
                "of its own source: data.source must equal the cancel's source"
            )
        events = events.where(Event.source == data["source"], Event.event_id == data["id"])
    else:
        raise InvalidCommand("tidings.notification.cancel needs {source, id} or {cancel_key}")
    if not command.sender.privileged:
        publisher = command.sender.publisher
        events = events.where(
            Event.source == command.source,
            Event.publisher.is_null() if publisher is None else Event.publisher == publisher,
        )
    recipients = data.get("recipients")
    if recipients is not None and (not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients)):
        raise InvalidCommand("recipients must be a list of user id strings")
    deliveries = Delivery.event.in_(events)
    if recipients is not None:
        deliveries &= Delivery.user_id.in_(recipients)
    cancelled = (
        Delivery.update(status=DeliveryStatus.CANCELLED, held=False, updated_at=clock.now())
        .where(deliveries & Delivery.status.in_(CANCELLABLE))
        .execute()
    )
    rows = Delivery.select(Delivery.status).where(deliveries & (Delivery.status != DeliveryStatus.CANCELLED)).tuples()
    # cast: peewee's stubs type the rows of .tuples() as model instances
    left = Counter(status for (status,) in cast(Iterable[tuple[str]], rows))
    if cancelled:
        log.info("notification_cancelled", cancelled=cancelled, **{f"already_{k}": v for k, v in left.items()})
    else:
        log.info(
            "notification_cancel_changed_nothing",
            matched=sum(left.values()),
            reason="already sent or being sent" if left else "no pending delivery matches",
            **{f"already_{k}": v for k, v in left.items()},
        )
    return Cancellation(cancelled=cancelled, left=dict(left))
