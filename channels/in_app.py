"""In-app notifications: a stored row the product shows in the user's inbox."""

from __future__ import annotations

from dispatcher.core import clock
from dispatcher.storage.models import InboxItem

from .base import Channel, Notification


class InAppChannel(Channel):
    """Stores one InboxItem per delivery; the delivery's unique key makes it idempotent."""

    name = "in_app"
    addresses = "user"
    quiet_hours = False  # an inbox row disturbs no one
    catalog_default = True
    process_group = "worker"
    priority = 0
    batch_size = 100
    transactional = True

    def deliver(self, notification: Notification) -> None:
        InboxItem.insert(
            delivery=notification.delivery_id,
            user_id=notification.user_id,
            type=notification.kind.name,
            title=notification.rendered.subject,
            body=notification.rendered.text.strip(),
            url=notification.url,
            data=notification.context,
            created_at=clock.now(),
        ).on_conflict_ignore().execute()
