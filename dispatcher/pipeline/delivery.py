"""Run deliveries through their channel: claim them, deliver, record each outcome.

A delivery is claimed by the dramatiq message that works on it. Another
message for the same delivery (a re-published event, a sweep) finds it
claimed or finished and does nothing; the same message redelivered after a
crash may take it over, and so may anyone once the claim is stale.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import jinja2
import peewee
import structlog

from channels.base import Channel, Notification
from dispatcher.core import clock, metrics
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import DeliveryError, DeliverySkipped
from dispatcher.core.events import CloudEvent
from dispatcher.core.rendering import PARTS, get_renderer
from dispatcher.core.settings import Settings
from dispatcher.core.timing import MAX_MESSAGE_DELAY
from dispatcher.core.unsubscribe import unsubscribe_url
from dispatcher.pipeline.routing import can_unsubscribe
from dispatcher.storage.db import database
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, User

log = structlog.get_logger("tidings.delivery")

#: A delivery's message may arrive this much before its due time (millisecond rounding of delays,
#: clocks of several hosts) and still take it; any earlier, the claim refuses it.
EARLY_TOLERANCE = 1.0
#: A delivery due this much after its creation was scheduled: its latency counts from its due time.
SCHEDULED_AHEAD = dt.timedelta(seconds=1)
#: Why a delivery on a channel TIDINGS_CHANNELS leaves out is skipped (recorded, never dropped).
SWITCHED_OFF = "channel switched off"
#: Seconds a success that has happened is retried into the database before its message is failed (and retried,
#: which would send it again): SQLite's busy timeout is 15 s, and a busy writer can outlast it.
RECORD_PATIENCE = 120.0


def _claim_query(ids: list[int], message_id: str, stale_after: float) -> peewee.ModelUpdate:
    now = clock.now()
    stale = now - dt.timedelta(seconds=stale_after)
    due = (Delivery.held == False) & (Delivery.next_attempt_at <= now + dt.timedelta(seconds=EARLY_TOLERANCE))  # noqa: E712
    claimable = ((Delivery.status == DeliveryStatus.PENDING) & due) | (
        (Delivery.status == DeliveryStatus.SENDING)
        & ((Delivery.claimed_by == message_id) | (Delivery.claimed_at < stale))
    )
    return Delivery.update(
        status=DeliveryStatus.SENDING,
        claimed_by=message_id,
        claimed_at=now,
        attempts=Delivery.attempts + 1,
        updated_at=now,
    ).where(Delivery.id.in_(ids) & claimable)


def claim(delivery_id: int, message_id: str, *, stale_after: float) -> bool:
    """Mark the delivery as being sent by ``message_id``; False if it is not ours to send."""
    return _claim_query([delivery_id], message_id, stale_after).execute() == 1


def claim_many(ids: list[int], message_id: str, *, stale_after: float) -> list[Delivery]:
    """Claim what we may of ``ids``; return the rows we hold, with their event and user loaded.

    A pending delivery is claimed only when due and not held for the release job, so no
    message, early or forged, can send a scheduled notification before its time.
    """
    _claim_query(ids, message_id, stale_after).execute()
    query = (
        Delivery.select(Delivery, Event, User)
        .join(Event)
        .switch(Delivery)
        .join(User, peewee.JOIN.LEFT_OUTER, on=(User.id == Delivery.user_id), attr="user")
        .where(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_by == message_id)
        .order_by(Delivery.id)
    )
    return list(query)


def record(
    delivery_id: int,
    message_id: str,
    status: str,
    error: str | None = None,
    *,
    retry_in: float = 0.0,
    held: bool = False,
) -> None:
    """Record the outcome of our claim (pending again means: retry in ``retry_in`` seconds).

    ``held``: the retry waits in the database for the release job, not in a delayed message.
    """
    now = clock.now()
    fields: dict[str, Any] = {"status": status, "last_error": error, "updated_at": now}
    if status == DeliveryStatus.SENT:
        fields["sent_at"] = now
    if status == DeliveryStatus.PENDING:
        fields["claimed_by"] = None
        fields["next_attempt_at"] = now + dt.timedelta(seconds=retry_in)
        fields["held"] = held
    Delivery.update(**fields).where((Delivery.id == delivery_id) & (Delivery.claimed_by == message_id)).execute()


def record_sent(ids: list[int], message_id: str) -> None:
    """Record several deliveries as sent in one statement."""
    now = clock.now()
    Delivery.update(status=DeliveryStatus.SENT, last_error=None, updated_at=now, sent_at=now).where(
        Delivery.id.in_(ids) & (Delivery.claimed_by == message_id)
    ).execute()


def build_notification(
    delivery: Delivery, settings: Settings, catalog: Catalog, parts: frozenset[str] = PARTS
) -> Notification:
    """Render one delivery's notification from its row (with event and user joined, see claim_many); only
    the template ``parts`` given (those its channel reads)."""
    row = delivery.event
    event = CloudEvent(
        id=row.event_id,
        source=row.source,
        type=row.type,
        data=row.data,
        time=row.time.replace(tzinfo=dt.UTC) if row.time else None,
        subject=row.subject,
    )
    kind = catalog.get(event.type)
    if kind is None:
        raise DeliveryError(f"type {event.type!r} is no longer in the catalog", permanent=True)
    user = getattr(delivery, "user", None)
    if user is not None and user.id is None:  # the left join found no user
        user = None
    url = event.data.get("url")
    unsubscribe = None
    if settings.public_url and settings.secret_key and can_unsubscribe(kind):
        unsubscribe = unsubscribe_url(
            settings.public_url, settings.secret_key, delivery.user_id, kind.name, ttl=settings.unsubscribe_token_ttl
        )
    context = {
        "data": event.context,
        "event": {
            "id": event.id,
            "type": event.type,
            "source": event.source,
            "subject": event.subject,
            "time": event.to_json().get("time"),
        },
        "user": {
            "id": delivery.user_id,
            "name": user.name if user else None,
            "email": user.email if user else None,
            "timezone": user.timezone if user else "UTC",
            "locale": user.locale if user else None,
        },
        "url": url,
        "unsubscribe_url": unsubscribe,
        "product": {"name": settings.product_name, "url": settings.product_url},
    }
    try:
        rendered = get_renderer(settings.templates_dir).render(kind.name, context, parts)
    except jinja2.TemplateError as e:
        raise DeliveryError(f"template error in {kind.name}: {e}", permanent=True) from e
    return Notification(
        delivery_id=delivery.id,
        user_id=delivery.user_id,
        user=user,
        event=event,
        kind=kind,
        rendered=rendered,
        url=url,
        unsubscribe_url=unsubscribe,
        template_context=context,
    )


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one run did: a final status, "retry" (in ``retry_in`` seconds) or "already_handled".

    A retry that is ``held`` waits in the database; any other needs a delayed message.
    """

    status: str
    retry_in: float | None = None
    held: bool = False


def retry_delay(attempts: int, settings: Settings, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter, never sooner than the target's Retry-After."""
    backoff = settings.retry_min_backoff * 2 ** min(max(0, attempts - 1), 32) * random.uniform(1.0, 1.25)
    return max(min(backoff, settings.retry_max_backoff), retry_after or 0.0)


def next_retry(channel: Channel, attempts: int, settings: Settings, retry_after: float | None) -> float | None:
    """Seconds until the next attempt after ``attempts`` attempts, or None: give up."""
    schedule = channel.retry_schedule
    if schedule is not None:
        return max(schedule[attempts], retry_after or 0.0) if attempts < len(schedule) else None
    return retry_delay(attempts, settings, retry_after) if attempts <= settings.retry_max else None


def run_delivery(
    channel: Channel, delivery_id: int, *, message_id: str, settings: Settings, catalog: Catalog
) -> Outcome:
    """Deliver one delivery; see :func:`run_deliveries`."""
    return run_deliveries(channel, [delivery_id], message_id=message_id, settings=settings, catalog=catalog)[
        delivery_id
    ]


def run_deliveries(
    channel: Channel, ids: list[int], *, message_id: str, settings: Settings, catalog: Catalog
) -> dict[int, Outcome]:
    """Deliver what ``message_id`` may claim of ``ids`` and record each outcome.

    A transient failure is recorded and returned as "retry". A transactional
    channel's successes are recorded together at the end (the caller holds the
    transaction); any other channel's right after each send, so that a crash
    repeats as little as possible. Database errors propagate: the message is
    retried as a whole, and its own claims let it take up where it stopped.
    """
    outcomes = {delivery_id: Outcome("already_handled") for delivery_id in ids}
    claimed = claim_many(ids, message_id, stale_after=settings.stale_after)
    outcomes.update(deliver_claimed(channel, claimed, message_id=message_id, settings=settings, catalog=catalog))
    for delivery_id, outcome in outcomes.items():
        if outcome.status == "already_handled":
            log.info("delivery_already_handled", delivery_id=delivery_id)
    return outcomes


def deliver_claimed(
    channel: Channel, claimed: list[Delivery], *, message_id: str, settings: Settings, catalog: Catalog
) -> dict[int, Outcome]:
    """Deliver rows ``message_id`` holds the claim of (with event and user loaded, as claim_many returns
    them) and record each outcome; see :func:`run_deliveries`.

    A transactional channel gets the notifications rendered without error in one ``deliver_all`` call.
    """
    outcomes: dict[int, Outcome] = {}
    together: list[Notification] = []
    deliver = together.append if channel.transactional else channel.deliver
    for delivery in claimed:
        with _log_context(channel, delivery):
            outcome = outcomes[delivery.id] = _run(channel, delivery, message_id, settings, catalog, deliver)
            if not channel.transactional:
                if outcome.status == DeliveryStatus.SENT:
                    _record_sent_after_sending(delivery.id, message_id)
                _count(channel, delivery, outcome)
    if channel.transactional:
        if together:
            channel.deliver_all(together)  # all or none: an error loses the caller's transaction
            record_sent([notification.delivery_id for notification in together], message_id)
        for delivery in claimed:
            with _log_context(channel, delivery):
                _count(channel, delivery, outcomes[delivery.id])
    return outcomes


def _record_sent_after_sending(delivery_id: int, message_id: str) -> None:
    """Record a success that has happened (the message went out): if the database is busy or away, try again
    for up to RECORD_PATIENCE seconds, since giving up would make the message's retry send it again."""
    deadline = time.monotonic() + RECORD_PATIENCE
    delay = 0.05
    while True:
        try:
            record_sent([delivery_id], message_id)
            return
        except (peewee.OperationalError, peewee.InterfaceError) as e:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("delivery_record_retry", delivery_id=delivery_id, error=str(e), retry_in=delay)
            if not database.is_closed():
                database.close()  # a broken connection is not reused; the next statement opens one
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _log_context(channel: Channel, delivery: Delivery) -> AbstractContextManager[None]:
    return structlog.contextvars.bound_contextvars(
        channel=channel.name,
        event_id=delivery.event.event_id,
        event_type=delivery.event.type,
        source=delivery.event.source,
        user_id=delivery.user_id,
    )


def _count(channel: Channel, delivery: Delivery, outcome: Outcome) -> None:
    """Log a success and count every outcome, with the latency of a success."""
    if outcome.status == DeliveryStatus.SENT:
        log.info("delivery_sent", delivery_id=delivery.id)
    sent_after = _seconds_since_due(delivery) if outcome.status == DeliveryStatus.SENT else None
    metrics.count_delivery(channel.name, outcome.status, latency=sent_after)


def _seconds_since_due(delivery: Delivery) -> float:
    """Seconds from the event's time (when it was received, without one) to now; for a first attempt that was
    due later than that (deliver_at, quiet hours), from when it was due."""
    start = delivery.event.time or delivery.event.received_at
    if delivery.attempts <= 1 and delivery.next_attempt_at > delivery.created_at + SCHEDULED_AHEAD:
        start = max(start, delivery.next_attempt_at)
    return (clock.now() - start).total_seconds()


def _run(
    channel: Channel,
    delivery: Delivery,
    message_id: str,
    settings: Settings,
    catalog: Catalog,
    deliver: Callable[[Notification], object],
) -> Outcome:
    """One delivery rendered and handed to ``deliver``; records every outcome but success."""
    try:
        if not settings.delivers(channel.name):
            raise DeliverySkipped(SWITCHED_OFF)
        notification = build_notification(delivery, settings, catalog, channel.renders)
        deliver(notification)
    except DeliverySkipped as e:
        record(delivery.id, message_id, DeliveryStatus.SKIPPED, str(e))
        log.info("delivery_skipped", delivery_id=delivery.id, reason=str(e))
        return Outcome(DeliveryStatus.SKIPPED)
    except DeliveryError as e:
        return _failed(channel, delivery.id, message_id, e, delivery.attempts, settings)
    except Exception as e:
        if channel.transactional:
            raise  # the transaction is lost; the whole message is retried
        log.exception("delivery_error", delivery_id=delivery.id)
        error = DeliveryError(f"{type(e).__name__}: {e}")
        return _failed(channel, delivery.id, message_id, error, delivery.attempts, settings)
    return Outcome(DeliveryStatus.SENT)


def _failed(
    channel: Channel, delivery_id: int, message_id: str, error: DeliveryError, attempts: int, settings: Settings
) -> Outcome:
    delay = None if error.permanent else next_retry(channel, attempts, settings, error.retry_after)
    if delay is None:
        record(delivery_id, message_id, DeliveryStatus.FAILED, str(error))
        log.warning(
            "delivery_failed", delivery_id=delivery_id, error=str(error), attempts=attempts, permanent=error.permanent
        )
        return Outcome(DeliveryStatus.FAILED)
    held = delay > MAX_MESSAGE_DELAY
    record(delivery_id, message_id, DeliveryStatus.PENDING, str(error), retry_in=delay, held=held)
    log.warning(
        "delivery_will_retry",
        delivery_id=delivery_id,
        error=str(error),
        attempts=attempts,
        retry_in=round(delay, 3),
        held=held,
    )
    return Outcome("retry", delay, held)
