"""Reading deliveries: those of one event, and the scheduled ones, newest due first.

The `tidings` CLI and the HTTP API show the same rows because they ask here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee

from dispatcher.core.errors import TidingsError
from dispatcher.storage.db import is_sqlite
from dispatcher.storage.models import Delivery, Event

#: A delivery counts as scheduled when it was due this long after it was created.
SCHEDULED_AFTER = dt.timedelta(seconds=1)


class EventNotFound(TidingsError):
    """No event has that id (from that source)."""

    permanent = True


class AmbiguousEvent(TidingsError):
    """Several sources used the id; the message lists them."""

    permanent = True


def find_event(event_id: str, source: str | None = None) -> Event:
    """The event ``event_id`` (of ``source``, when given); EventNotFound or AmbiguousEvent."""
    query = Event.select().where(Event.event_id == event_id)
    if source is not None:
        query = query.where(Event.source == source)
    events = list(query.limit(10))
    if not events:
        raise EventNotFound(f"no event with id {event_id!r}" + (f" from {source!r}" if source is not None else ""))
    if len(events) > 1:
        sources = ", ".join(e.source for e in events)
        raise AmbiguousEvent(f"several events have id {event_id!r}; pick one with --source ({sources})")
    return events[0]


def event_deliveries(event: Event) -> list[Delivery]:
    """Every delivery of ``event``, by target then channel."""
    return list(Delivery.select().where(Delivery.event == event).order_by(Delivery.user_id, Delivery.channel))


def _seconds_scheduled_ahead() -> Any:
    """SQL for how many seconds after its creation a delivery is due (the databases' date arithmetic differs)."""
    if is_sqlite():
        return (peewee.fn.julianday(Delivery.next_attempt_at) - peewee.fn.julianday(Delivery.created_at)) * 86400
    return peewee.fn.date_part("epoch", Delivery.next_attempt_at - Delivery.created_at)


def scheduled_deliveries(
    *, status: str | None = None, after: tuple[dt.datetime, int] | None = None, limit: int = 100
) -> list[Delivery]:
    """Scheduled deliveries (due SCHEDULED_AFTER or more after their creation) with their events, latest due
    first (then by id). ``after``: only those after this (due time, delivery id) in that order: a page's
    last row, for keyset pagination."""
    query = (
        Delivery.select(Delivery, Event)
        .join(Event)
        .where(_seconds_scheduled_ahead() >= SCHEDULED_AFTER.total_seconds())
        .order_by(Delivery.next_attempt_at.desc(), Delivery.id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(Delivery.status == status)
    if after is not None:
        due, delivery_id = after
        query = query.where(
            (Delivery.next_attempt_at < due) | ((Delivery.next_attempt_at == due) & (Delivery.id > delivery_id))
        )
    return list(query)
