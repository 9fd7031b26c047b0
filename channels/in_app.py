"""In-app notifications: a stored row the product shows in the user's inbox, announced to live streams."""

from __future__ import annotations

import functools

from dispatcher.amqp.bus import new_announcer
from dispatcher.core import clock
from dispatcher.core.settings import Settings
from dispatcher.storage.db import database
from dispatcher.storage.models import InboxItem
from dispatcher.storage.rows import insert_rows

from .base import Channel, Notification


class InAppChannel(Channel):
    """Stores one InboxItem per delivery; the delivery's unique key makes it idempotent.

    Each new row is announced on the inbox feed (dispatcher/amqp/inbox_feed.py) once its transaction has
    committed: never before, never for a row rolled back, and a failed announcement fails nothing.
    """

    name = "in_app"
    addresses = "user"
    quiet_hours = False  # an inbox row disturbs no one
    catalog_default = True
    process_group = "worker"
    priority = 0
    batch_size = 100
    transactional = True
    renders = frozenset({"subject", "text"})

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.announcer = new_announcer(settings)

    def deliver(self, notification: Notification) -> None:
        self.deliver_all([notification])

    def deliver_all(self, notifications: list[Notification]) -> None:
        """One statement for them all; a delivery that has its row already (a retried batch) is left as it is."""
        now = clock.now()
        rows = [
            {
                "delivery": notification.delivery_id,
                "user_id": notification.user_id,
                "type": notification.kind.name,
                "title": notification.rendered.subject,
                "body": notification.text_without_link,  # the row has its url
                "url": notification.url,
                "data": notification.context,
                "created_at": now,
            }
            for notification in notifications
        ]
        inserted = insert_rows(InboxItem, rows, returning=["id", "user_id"], ignore_conflicts=True)
        for item_id, user_id in inserted:  # none for a row that was there already (and announced then)
            # Outside a transaction peewee calls it at once: the insert has committed by itself.
            database.after_commit(functools.partial(self.announcer.notification, user_id, item_id))

    def close(self) -> None:
        self.announcer.close()
