"""The daily cleanup: what Tidings keeps, and for how long."""

from __future__ import annotations

import datetime as dt

from dispatcher.core import clock
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, InboxItem, MatchResult, Rejection

CANCELLED_KEPT_DAYS = 30
#: RabbitMQ drops dead letters after 7 days (dramatiq's x-message-ttl); their reasons go too.
REJECTION_KEPT_DAYS = 7


def cleanup(*, retention_days: int, dedup_days: int) -> dict[str, int]:
    """Delete, and count:

    - read in-app notifications older than the retention (unread ones are kept);
    - delivery logs older than the retention, but never one an inbox row still needs;
    - cancelled schedules older than 30 days;
    - processed-event keys older than the dedup window, once no delivery or ranking result needs them;
    - the reasons of dead letters older than the dead-letter queue keeps them.
    """
    now = clock.now()
    retention = now - dt.timedelta(days=retention_days)
    still_shown = InboxItem.select(InboxItem.delivery)
    counts = {
        "read_inbox_items": InboxItem.delete()
        .where(InboxItem.read_at.is_null(False), InboxItem.created_at < retention)
        .execute(),
        "delivery_logs": Delivery.delete()
        .where(
            Delivery.status.in_(DeliveryStatus.FINAL), Delivery.updated_at < retention, Delivery.id.not_in(still_shown)
        )
        .execute(),
        "cancelled_schedules": Delivery.delete()
        .where(
            Delivery.status == DeliveryStatus.CANCELLED,
            Delivery.updated_at < now - dt.timedelta(days=CANCELLED_KEPT_DAYS),
            Delivery.id.not_in(still_shown),
        )
        .execute(),
    }
    counts["rejections"] = (
        Rejection.delete().where(Rejection.rejected_at < now - dt.timedelta(days=REJECTION_KEPT_DAYS)).execute()
    )
    counts["event_keys"] = (
        Event.delete()
        .where(
            Event.received_at < now - dt.timedelta(days=dedup_days),
            Event.id.not_in(Delivery.select(Delivery.event)),
            Event.id.not_in(MatchResult.select(MatchResult.event)),
        )
        .execute()
    )
    return counts
