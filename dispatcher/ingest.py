"""Turn one checked event into delivery rows, exactly once per (source, id).

The event key, the command it carries or the deliveries it creates are
written in one transaction: a crash before commit leaves nothing, so the
redelivered message starts over; after commit, the key makes it a duplicate.
"""

from __future__ import annotations

import dataclasses

from . import clock
from .catalog import Catalog
from .commands import apply_command
from .db import transaction
from .endpoints import endpoints_for
from .events import CloudEvent
from .models import Delivery, DeliveryStatus, Event
from .preferences import load_preferences, resolve_channels, topic_subscribers

INSERT_BATCH = 500
#: The channel of signed webhooks: a delivery's user_id holds the endpoint id.
WEBHOOK = "webhook"


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """What ingesting one event did, and which deliveries now need a message."""

    outcome: str  # "accepted", "duplicate", "applied" or "stale"
    to_enqueue: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (delivery id, channel)
    recipients: int = 0


def ingest_event(event: CloudEvent, catalog: Catalog, channels: list[str]) -> IngestResult:
    """Record ``event`` and its deliveries on ``channels``, or recognise it as seen."""
    with transaction():
        inserted = list(
            Event.insert(
                source=event.source,
                event_id=event.id,
                type=event.type,
                subject=event.subject,
                time=clock.to_utc_naive(event.time) if event.time else None,
                data=event.data,
                received_at=clock.now(),
            )
            .on_conflict_ignore()
            .returning(Event.id)
            .tuples()
            .execute()
        )
        if not inserted:
            row_id = Event.select(Event.id).where(Event.source == event.source, Event.event_id == event.id).scalar()
            return IngestResult("duplicate", _never_attempted(row_id))
        if event.is_command:
            return IngestResult(apply_command(event, catalog))
        recipients = _recipients(event)
        created = _create_deliveries(inserted[0][0], event, catalog, channels, recipients)
        return IngestResult("accepted", created, recipients=len(recipients))


def _recipients(event: CloudEvent) -> list[str]:
    """data.recipients then the topic's subscribers, each user once, in that order."""
    users = list(event.recipients)
    if event.topic:
        users.extend(topic_subscribers(event.topic))
    return list(dict.fromkeys(users))


def _create_deliveries(
    event_row_id: int, event: CloudEvent, catalog: Catalog, channels: list[str], recipients: list[str]
) -> list[tuple[int, str]]:
    """Insert the delivery rows; return (id, channel) of each."""
    kind = catalog.get(event.type)
    assert kind is not None, "parse_event admits only catalog types"
    preferences = load_preferences(recipients, kind.name)
    user_channels = [channel for channel in channels if channel != WEBHOOK]
    targets = [
        (user_id, channel)
        for user_id in recipients
        for channel in resolve_channels(kind, preferences.get(user_id, {}), user_channels)
    ]
    if WEBHOOK in channels:  # endpoints take their types whatever the users' preferences
        targets.extend((endpoint_id, WEBHOOK) for endpoint_id in endpoints_for(kind.name))
    now = clock.now()
    rows = [
        {"event": event_row_id, "user_id": target, "channel": channel, "created_at": now, "updated_at": now,
         "next_attempt_at": now}
        for target, channel in targets
    ]
    created: list[tuple[int, str]] = []
    for start in range(0, len(rows), INSERT_BATCH):
        query = Delivery.insert_many(rows[start : start + INSERT_BATCH]).returning(Delivery.id, Delivery.channel)
        created.extend(query.tuples().execute())
    return sorted(created)


def _never_attempted(event_row_id: int) -> list[tuple[int, str]]:
    """Deliveries no worker has claimed yet: their message may never have been sent.

    After a crash between commit and enqueue, the redelivered event finds them
    here; enqueueing one twice is harmless because a delivery is claimed once.
    """
    query = Delivery.select(Delivery.id, Delivery.channel).where(
        Delivery.event == event_row_id, Delivery.status == DeliveryStatus.PENDING, Delivery.attempts == 0
    )
    return list(query.order_by(Delivery.id).tuples())
