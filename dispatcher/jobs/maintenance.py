"""Periodic repairs that keep the promise "nothing is lost"."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import cast

from dispatcher.core import clock
from dispatcher.core.timing import RELEASE_WINDOW
from dispatcher.storage.models import Delivery, DeliveryStatus


def stale_deliveries(*, stale_after: float, limit: int = 1000) -> list[tuple[int, str]]:
    """Deliveries whose message seems lost: (id, channel), oldest first.

    Pending ones (not held) whose attempt was due more than ``stale_after`` ago, and ones
    claimed more than ``stale_after`` ago (their worker died and RabbitMQ did
    not hand the message to anyone else).
    """
    before = clock.now() - dt.timedelta(seconds=stale_after)
    not_held = Delivery.held == False  # noqa: E712 - a peewee expression; held ones are the release job's
    pending = (Delivery.status == DeliveryStatus.PENDING) & (Delivery.next_attempt_at < before) & not_held
    claimed = (Delivery.status == DeliveryStatus.SENDING) & (Delivery.claimed_at < before)
    query = Delivery.select(Delivery.id, Delivery.channel).where(pending | claimed).order_by(Delivery.id).limit(limit)
    # cast: peewee's stubs type the rows of .tuples() as model instances
    return list(cast(Iterable[tuple[int, str]], query.tuples()))


def release_due_deliveries(
    *, window: float = RELEASE_WINDOW, limit: int = 5000
) -> tuple[list[tuple[int, str]], dict[int, dt.datetime]]:
    """Take out of the database the held deliveries due within ``window`` seconds.

    Returns (id, channel) pairs and when each is due, so that each is sent with
    its exact remaining delay. One UPDATE … RETURNING flips ``held``, so two
    schedulers never release a delivery twice.
    """
    until = clock.now() + dt.timedelta(seconds=window)
    due = (
        Delivery.select(Delivery.id)
        .where(
            Delivery.held == True,  # noqa: E712 - a peewee expression
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.next_attempt_at <= until,
        )
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
    )
    query = (
        Delivery.update(held=False)
        .where(Delivery.id.in_(due), Delivery.held == True)  # noqa: E712 - peewee expression
        .returning(Delivery.id, Delivery.channel, Delivery.next_attempt_at)
    )
    rows = sorted(query.tuples().execute())
    return [(d, c) for d, c, _ in rows], {d: when for d, _, when in rows}


def orphaned_deliveries(*, stale_after: float) -> tuple[list[tuple[int, str]], dict[int, dt.datetime]]:
    """What a process that kept its messages in memory enqueues again when it starts (the embedded mode).

    Every pending delivery not held, due at its time, and every one still claimed by the process that
    stopped, due when its claim goes stale (as requeue_stale_deliveries would take it). Held ones are
    the release job's. Returns (id, channel) pairs and when each is due.
    """
    stale = dt.timedelta(seconds=stale_after)
    pending = (Delivery.status == DeliveryStatus.PENDING) & (Delivery.held == False)  # noqa: E712 - peewee
    query = (
        Delivery.select(Delivery.id, Delivery.channel, Delivery.status, Delivery.next_attempt_at, Delivery.claimed_at)
        .where(pending | (Delivery.status == DeliveryStatus.SENDING))
        .order_by(Delivery.id)
    )
    rows = cast(Iterable[tuple[int, str, str, dt.datetime, dt.datetime | None]], query.tuples())
    pairs, due = [], {}
    for delivery_id, channel, status, next_attempt_at, claimed_at in rows:
        pairs.append((delivery_id, channel))
        if status == DeliveryStatus.SENDING:
            due[delivery_id] = (claimed_at or clock.now()) + stale
        else:
            due[delivery_id] = next_attempt_at
    return pairs, due
