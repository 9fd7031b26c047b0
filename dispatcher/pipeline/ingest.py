"""Turn one checked event into delivery rows, exactly once per (source, id).

The event key, the command it carries or the deliveries it creates are
written in one transaction: a crash before commit leaves nothing, so the
redelivered message starts over; after commit, the key makes it a duplicate.

Which deliveries, with which status and due when (preferences, digests, quiet
hours, critical types, webhook endpoints) is decided by routing.plan_deliveries;
ingest inserts that plan. One due within MAX_MESSAGE_DELAY gets a delayed message
now; a later one is ``held`` in the database for the scheduler's release job.

A transactional channel (in-app: deliver() only writes rows) is delivered in the same transaction
when due now, through the delivery code any message would run (claim, render, deliver, record):
the event, its deliveries and its inbox rows commit together or not at all, and need no second
message. What is due later, or fails transiently, goes the usual way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from channels.base import Channel
from dispatcher.commands.registry import ANONYMOUS, apply_command, stored_data
from dispatcher.core import clock
from dispatcher.core.authority import Sender
from dispatcher.core.catalog import Catalog
from dispatcher.core.events import CloudEvent
from dispatcher.core.settings import Settings
from dispatcher.core.timing import due_time
from dispatcher.pipeline.delivery import run_deliveries
from dispatcher.pipeline.preferences import topic_subscribers
from dispatcher.pipeline.routing import plan_deliveries
from dispatcher.storage.db import transaction
from dispatcher.storage.models import Delivery, DeliveryStatus, Event

INSERT_BATCH = 500
#: What else records an accepted event of a type, inside ingest's transaction (the rankings ledger):
#: (event, its row id) -> None. The runtime passes them; ingest knows no consumer by name.
Hook = Callable[[CloudEvent, int], object]


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """What ingesting one event did, and which deliveries now need a message."""

    outcome: str  # "accepted", "duplicate", "applied" or "stale"
    to_enqueue: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (delivery id, channel)
    recipients: int = 0
    due: dict[int, dt.datetime] = dataclasses.field(default_factory=dict)  # those of to_enqueue due later


def ingest_event(
    event: CloudEvent,
    catalog: Catalog,
    channels: list[str],
    *,
    sender: Sender = ANONYMOUS,
    hooks: Mapping[str, Sequence[Hook]] | None = None,
    inline: Mapping[str, Channel] | None = None,
    settings: Settings | None = None,
) -> IngestResult:
    """Record ``event`` and its deliveries on ``channels``, or recognise it as seen.

    ``sender`` is who published it (admission checked its authority): kept with the event, and
    deciding what a command may reach. ``hooks`` by type also record an accepted event, in the
    same transaction (the runtime passes the rankings ledger's). ``inline``: transactional channels
    by name whose deliveries due now are delivered in this transaction (with ``settings``).
    """
    with transaction():
        inserted = list(
            Event.insert(
                source=event.source,
                event_id=event.id,
                type=event.type,
                subject=event.subject,
                time=clock.to_utc_naive(event.time) if event.time else None,
                data=stored_data(event),
                cancel_key=event.cancel_key,
                received_at=clock.now(),
                publisher=sender.publisher,
            )
            .on_conflict_ignore()
            .returning(Event.id)
            .tuples()
            .execute()
        )
        if not inserted:
            row_id = Event.select(Event.id).where(Event.source == event.source, Event.event_id == event.id).scalar()
            to_enqueue, due = _never_attempted(row_id)
            return IngestResult("duplicate", to_enqueue, due=due)
        if event.is_command:
            return IngestResult(apply_command(event, catalog, sender))
        for hook in (hooks or {}).get(event.type, ()):
            hook(event, inserted[0][0])
        recipients = _recipients(event)
        _create_deliveries(inserted[0][0], event, catalog, channels, recipients)
        to_enqueue, due = _never_attempted(inserted[0][0])
        if inline and settings is not None:
            to_enqueue, due = _deliver_inline(inserted[0][0], to_enqueue, due, inline, settings, catalog)
        return IngestResult("accepted", to_enqueue, recipients=len(recipients), due=due)


def _deliver_inline(
    event_row_id: int,
    pending: list[tuple[int, str]],
    due: dict[int, dt.datetime],
    inline: Mapping[str, Channel],
    settings: Settings,
    catalog: Catalog,
) -> tuple[list[tuple[int, str]], dict[int, dt.datetime]]:
    """Run the deliveries of ``inline`` channels that are due now, in the caller's transaction.

    Returns what still needs a message and when: the other deliveries, and those of ``inline`` to retry
    (due at their retry; one held for the release job needs none).
    """
    outcomes = {}
    for name, channel in inline.items():
        ids = [d for d, c in pending if c == name and d not in due]
        if ids:
            assert channel.transactional, f"{name}: only a transactional channel may deliver inside ingest"
            message_id = f"ingest:{event_row_id}"
            outcomes.update(run_deliveries(channel, ids, message_id=message_id, settings=settings, catalog=catalog))
    now = clock.now()
    left, later = [], dict(due)
    for delivery_id, channel_name in pending:
        outcome = outcomes.get(delivery_id)
        if outcome is None:
            left.append((delivery_id, channel_name))
        elif outcome.retry_in is not None and not outcome.held:
            left.append((delivery_id, channel_name))
            later[delivery_id] = now + dt.timedelta(seconds=outcome.retry_in)
    return left, later


def _recipients(event: CloudEvent) -> list[str]:
    """data.recipients then the topic's subscribers, each user once, in that order."""
    users = list(event.recipients)
    if event.topic:
        users.extend(topic_subscribers(event.topic))
    return list(dict.fromkeys(users))


def _create_deliveries(
    event_row_id: int, event: CloudEvent, catalog: Catalog, channels: list[str], recipients: list[str]
) -> None:
    """Insert the delivery rows routing plans, each with its status, due time and whether it is held."""
    kind = catalog.get(event.type)
    assert kind is not None, "parse_event admits only catalog types"
    now = clock.now()
    plan = plan_deliveries(kind, recipients, channels, due=due_time(event), now=now)
    rows = [
        {
            "event": event_row_id,
            "user_id": planned.target,
            "channel": planned.channel,
            "status": planned.status,
            "created_at": now,
            "updated_at": now,
            "next_attempt_at": planned.due,
            "held": planned.held,
        }
        for planned in plan
    ]
    for start in range(0, len(rows), INSERT_BATCH):
        Delivery.insert_many(rows[start : start + INSERT_BATCH]).execute()


def _never_attempted(event_row_id: int) -> tuple[list[tuple[int, str]], dict[int, dt.datetime]]:
    """Deliveries of the event that need a message now: pending, not held, never claimed.

    Also when each is due, for those due later. After a crash between commit and
    enqueue, the redelivered event finds them here; enqueueing one twice is
    harmless because a delivery is claimed once.
    """
    query = Delivery.select(Delivery.id, Delivery.channel, Delivery.next_attempt_at).where(
        Delivery.event == event_row_id,
        Delivery.status == DeliveryStatus.PENDING,
        Delivery.attempts == 0,
        Delivery.held == False,  # noqa: E712 - peewee expression
    )
    rows = cast(list[tuple[int, str, dt.datetime]], list(query.order_by(Delivery.id).tuples()))
    now = clock.now()
    return [(d, c) for d, c, _ in rows], {d: when for d, _, when in rows if when > now}
