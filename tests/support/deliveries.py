"""What the deployment's database says of its deliveries (call deployment.use_database() first)."""

from __future__ import annotations

from peewee import fn

from dispatcher.storage.models import Delivery, DeliveryStatus, InboxItem


def finished(channel: str) -> int:
    """How many deliveries on ``channel`` reached a final status (sent, skipped, failed, cancelled, digested)."""
    return Delivery.select().where(Delivery.channel == channel, Delivery.status.in_(DeliveryStatus.FINAL)).count()


def inbox_copies() -> set[int]:
    """How many inbox rows each user has of each event that reached them: {1} when no row is duplicated."""
    per_user_event = (
        InboxItem.select(fn.COUNT(InboxItem.id)).join(Delivery).group_by(InboxItem.user_id, Delivery.event).scalars()
    )
    return set(per_user_event)
