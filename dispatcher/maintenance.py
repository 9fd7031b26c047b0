"""Periodic repairs that keep the promise "nothing is lost"."""

from __future__ import annotations

import datetime as dt

from . import clock
from .models import Delivery, DeliveryStatus


def stale_deliveries(*, stale_after: float, retry_max_backoff: float, limit: int = 1000) -> list[tuple[int, str]]:
    """Deliveries whose message seems lost: (id, channel), oldest first.

    Pending ones untouched for longer than the longest retry wait plus
    ``stale_after``, and ones claimed for longer than ``stale_after`` (their
    worker died and RabbitMQ did not hand the message to anyone else).
    """
    now = clock.now()
    pending_before = now - dt.timedelta(seconds=retry_max_backoff + stale_after)
    claimed_before = now - dt.timedelta(seconds=stale_after)
    query = (
        Delivery.select(Delivery.id, Delivery.channel)
        .where(
            ((Delivery.status == DeliveryStatus.PENDING) & (Delivery.updated_at < pending_before))
            | ((Delivery.status == DeliveryStatus.SENDING) & (Delivery.claimed_at < claimed_before))
        )
        .order_by(Delivery.updated_at)
        .limit(limit)
    )
    return list(query.tuples())
