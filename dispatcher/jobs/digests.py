"""Daily digests: the emails a user chose to get once a day, sent at their local digest time.

A digest is an internal event, digest.daily, with the id "<user>:<local date>":
Tidings' own (source, id) key makes at most one digest per user per local
date, whatever the number of schedulers or retries. It is then delivered like
any email.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, cast

import peewee
import structlog

from channels import channel_names
from dispatcher.core import clock
from dispatcher.core.catalog import Catalog
from dispatcher.core.events import CloudEvent
from dispatcher.core.settings import Settings
from dispatcher.core.timing import digest_slot
from dispatcher.pipeline.delivery import build_notification
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.db import transaction
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, User

log = structlog.get_logger("tidings.digests")

SOURCE = "/tidings/digests"
TYPE = "digest.daily"


def due_digests() -> list[tuple[str, dt.date]]:
    """(user, local date) for every user with waiting digest items whose digest time has come today."""
    rows = Delivery.select(Delivery.user_id).where(Delivery.status == DeliveryStatus.DIGEST).distinct().tuples()
    # cast: peewee's stubs type the rows of .tuples() as model instances
    waiting = [user for (user,) in cast(Iterable[tuple[str]], rows)]
    users = {u.id: u for u in User.select().where(User.id.in_(waiting))} if waiting else {}
    now = clock.now()
    due = []
    for user_id in sorted(waiting):
        user = users.get(user_id)
        slot = digest_slot(now, user.timezone if user else "UTC", user.digest_time if user else "08:00")
        if slot is not None:
            due.append((user_id, slot))
    return due


def make_digest(user_id: str, local_date: dt.date, catalog: Catalog, settings: Settings) -> list[tuple[int, str]]:
    """Create the user's digest for that date from their waiting items; return the email to enqueue.

    Returns [] when the digest exists already (another scheduler, or items that
    arrived after today's digest: they wait for tomorrow's).
    """
    event_id = f"{user_id}:{local_date.isoformat()}"
    if Event.select().where(Event.source == SOURCE, Event.event_id == event_id).exists():
        return []
    with transaction():
        items = list(
            Delivery.select(Delivery, Event, User)
            .join(Event)
            .switch(Delivery)
            .join(User, peewee.JOIN.LEFT_OUTER, on=(User.id == Delivery.user_id), attr="user")
            .where(
                Delivery.user_id == user_id,
                Delivery.status == DeliveryStatus.DIGEST,
                Delivery.created_at <= clock.now(),
            )
            .order_by(Delivery.id)
        )
        if not items:
            return []
        data = {"recipients": [user_id], "date": local_date.isoformat(), "groups": _groups(items, catalog, settings)}
        digest = CloudEvent(id=event_id, source=SOURCE, type=TYPE, data=data, time=clock.now().replace(tzinfo=dt.UTC))
        result = ingest_event(digest, catalog, channel_names(digests=True))
        if result.outcome == "duplicate":
            return []
        Delivery.update(status=DeliveryStatus.DIGESTED, updated_at=clock.now()).where(
            Delivery.id.in_([item.id for item in items]), Delivery.status == DeliveryStatus.DIGEST
        ).execute()
    log.info("digest_created", user_id=user_id, date=local_date.isoformat(), items=len(items))
    return result.to_enqueue


def _groups(items: list[Delivery], catalog: Catalog, settings: Settings) -> list[dict[str, Any]]:
    """Items grouped by type, in catalog order, each with its title and link."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        kind = catalog.get(item.event.type)
        if kind is None:
            continue
        notification = build_notification(item, settings, catalog, frozenset({"subject"}))
        by_type[kind.name].append({"title": notification.rendered.subject, "url": notification.url})
    return [
        {"type": name, "description": catalog.types[name].description, "count": len(entries), "items": entries}
        for name, entries in sorted(by_type.items())
    ]
