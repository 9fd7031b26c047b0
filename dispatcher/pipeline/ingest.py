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
from typing import Any, cast

import structlog

from channels.base import Channel
from dispatcher.amqp.bus import event_publisher
from dispatcher.commands.registry import ANONYMOUS, apply_command, stored_data
from dispatcher.core import clock
from dispatcher.core.authority import Sender
from dispatcher.core.catalog import Catalog
from dispatcher.core.events import CloudEvent
from dispatcher.core.settings import Settings
from dispatcher.core.timing import due_time
from dispatcher.pipeline.delivery import deliver_claimed
from dispatcher.pipeline.preferences import topic_subscribers
from dispatcher.pipeline.routing import plan_deliveries
from dispatcher.storage.db import transaction
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, User
from dispatcher.storage.rows import insert_rows

log = structlog.get_logger("tidings.ingest")

INSERT_BATCH = 500
#: What else records an accepted event (or an applied command) of a type, inside ingest's transaction (the
#: rankings ledger): (event, its row id) -> the events to announce to the exchange once it has committed
#: (IngestResult.announce). The runtime passes them; ingest knows no consumer by name.
Hook = Callable[[CloudEvent, int], Sequence[dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """What ingesting one event did, and which deliveries now need a message."""

    outcome: str  # "accepted", "duplicate", "applied" or "stale"
    to_enqueue: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (delivery id, channel)
    recipients: int = 0
    due: dict[int, dt.datetime] = dataclasses.field(default_factory=dict)  # those of to_enqueue due later
    #: Events the hooks want published to the exchange once this has committed (publish_announcements)
    announce: list[dict[str, Any]] = dataclasses.field(default_factory=list)


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
    deciding what a command may reach. ``hooks`` by type also record an accepted event (or an applied
    command) in the same transaction (the runtime passes the rankings'); what they return to announce
    is the result's ``announce``, for the caller to publish once committed. ``inline``: transactional
    channels by name whose deliveries due now are delivered in this transaction (with ``settings``).
    """
    with transaction():
        values = _event_values(event, sender)
        inserted = insert_rows(Event, [values], returning=["id"], ignore_conflicts=True)
        if not inserted:
            row_id = Event.select(Event.id).where(Event.source == event.source, Event.event_id == event.id).scalar()
            to_enqueue, due = _never_attempted(row_id)
            return IngestResult("duplicate", to_enqueue, due=due)
        row = Event(id=inserted[0][0], **values)
        if event.is_command:
            outcome = apply_command(event, catalog, sender)
            announce = _run_hooks(hooks, event, row.id) if outcome == "applied" else []
            return IngestResult(outcome, announce=announce)
        announce = _run_hooks(hooks, event, row.id)
        recipients = _recipients(event)
        claim_now = frozenset(inline or ()) if settings is not None else frozenset()
        created = _create_deliveries(row, event, catalog, channels, recipients, claim_now=claim_now)
        now = clock.now()
        waiting = [d for d in created if d.status == DeliveryStatus.PENDING and not d.held]
        to_enqueue = [(d.id, d.channel) for d in waiting]
        due = {d.id: d.next_attempt_at for d in waiting if d.next_attempt_at > now}
        if claim_now and settings is not None and inline is not None:
            retry = _deliver_inline(
                row, [d for d in created if d.status == DeliveryStatus.SENDING], inline, settings, catalog
            )
            to_enqueue.extend((d, inline_channel) for d, (inline_channel, _) in retry.items())
            due.update({d: when for d, (_, when) in retry.items()})
        return IngestResult("accepted", to_enqueue, recipients=len(recipients), due=due, announce=announce)


def _run_hooks(hooks: Mapping[str, Sequence[Hook]] | None, event: CloudEvent, row_id: int) -> list[dict[str, Any]]:
    return [announced for hook in (hooks or {}).get(event.type, ()) for announced in hook(event, row_id)]


def publish_announcements(result: IngestResult, settings: Settings) -> int:
    """Publish what ``result``'s hooks announce (after its commit); return how many were published.

    A failure is logged, not raised: the event is recorded, and what it announces is published again,
    with the same ids, by the rankings job over its window (rankings/notices.announce).
    """
    if not result.announce:
        return 0
    try:
        with event_publisher(settings) as publisher:
            for announced in result.announce:
                publisher.publish(announced)
    except Exception as e:  # noqa: BLE001 - any failure to publish leaves it to the rankings job
        log.warning(
            "announcement_not_published",
            events=len(result.announce),
            error=f"{type(e).__name__}: {e}"[:300],
            retry="the daily rankings job announces it again",
        )
        return 0
    return len(result.announce)


def _event_values(event: CloudEvent, sender: Sender) -> dict[str, Any]:
    """The events table's row for ``event``."""
    return {
        "source": event.source,
        "event_id": event.id,
        "type": event.type,
        "subject": event.subject,
        "time": clock.to_utc_naive(event.time) if event.time else None,
        "data": stored_data(event),
        "cancel_key": event.cancel_key,
        "received_at": clock.now(),
        "publisher": sender.publisher,
    }


def _deliver_inline(
    row: Event, claimed: list[Delivery], inline: Mapping[str, Channel], settings: Settings, catalog: Catalog
) -> dict[int, tuple[str, dt.datetime]]:
    """Run the deliveries ingest claimed when it created them (those of ``inline`` channels due now), in the
    caller's transaction; return those to retry: delivery id -> (channel, when it is due again).

    A retry held for the release job needs no message, so it is not returned.
    """
    users = {user.id: user for user in User.select().where(User.id.in_({d.user_id for d in claimed}))}
    outcomes = {}
    for delivery in claimed:
        delivery.user = users.get(delivery.user_id)
    for name, channel in inline.items():
        mine = [d for d in claimed if d.channel == name]
        if mine:
            assert channel.transactional, f"{name}: only a transactional channel may deliver inside ingest"
            outcomes.update(
                deliver_claimed(channel, mine, message_id=_claimer(row.id), settings=settings, catalog=catalog)
            )
    now = clock.now()
    channel_of = {d.id: d.channel for d in claimed}
    return {
        delivery_id: (channel_of[delivery_id], now + dt.timedelta(seconds=outcome.retry_in))
        for delivery_id, outcome in outcomes.items()
        if outcome.retry_in is not None and not outcome.held
    }


def _claimer(event_row_id: int) -> str:
    """Who holds the claim of the deliveries ingest makes and delivers in its own transaction."""
    return f"ingest:{event_row_id}"


def _recipients(event: CloudEvent) -> list[str]:
    """data.recipients then the topic's subscribers, each user once, in that order."""
    users = list(event.recipients)
    if event.topic:
        users.extend(topic_subscribers(event.topic))
    return list(dict.fromkeys(users))


def _create_deliveries(
    row: Event,
    event: CloudEvent,
    catalog: Catalog,
    channels: list[str],
    recipients: list[str],
    *,
    claim_now: frozenset[str],
) -> list[Delivery]:
    """Insert the delivery rows routing plans, each with its status, due time and whether it is held.

    Those on ``claim_now`` channels due now are inserted claimed by ingest (status "sending", one attempt):
    it delivers them before it commits. Returns the rows, with their ids and ``row`` as their event.
    """
    kind = catalog.get(event.type)
    assert kind is not None, "parse_event admits only catalog types"
    now = clock.now()
    plan = plan_deliveries(kind, recipients, channels, due=due_time(event), now=now)
    ready = clock.now()  # due_time's own "now" is a little later than ``now``
    rows: list[dict[str, Any]] = []
    for planned in plan:
        claimed = planned.channel in claim_now and planned.status == DeliveryStatus.PENDING
        claimed = claimed and not planned.held and planned.due <= ready
        rows.append(
            {
                "user_id": planned.target,
                "channel": planned.channel,
                "status": DeliveryStatus.SENDING if claimed else planned.status,
                "attempts": 1 if claimed else 0,
                "claimed_by": _claimer(row.id) if claimed else None,
                "claimed_at": now if claimed else None,
                "created_at": now,
                "updated_at": now,
                "next_attempt_at": planned.due,
                "held": planned.held,
            }
        )
    ids: dict[tuple[str, str], int] = {}
    for start in range(0, len(rows), INSERT_BATCH):
        batch = [{"event": row.id, **values} for values in rows[start : start + INSERT_BATCH]]
        inserted = insert_rows(Delivery, batch, returning=["id", "user_id", "channel"])
        ids.update(((user_id, channel), delivery_id) for delivery_id, user_id, channel in inserted)
    return [Delivery(id=ids[(values["user_id"], values["channel"])], event=row, **values) for values in rows]


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
