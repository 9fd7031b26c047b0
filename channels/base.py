"""The channel contract: deliver one notification, or raise a typed error.

``deliver`` returns None on success. It raises ``DeliveryError(message,
permanent=...)`` on failure and ``DeliverySkipped(reason)`` when the channel
does not apply to this user. It must be safe to call again for the same
delivery: the caller retries transient failures.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from dispatcher.core.catalog import NotificationType
from dispatcher.core.events import CloudEvent
from dispatcher.core.rendering import Rendered
from dispatcher.core.settings import Settings
from dispatcher.storage.models import User

#: The longest call-to-action label ("View invitation: ") that text_without_link takes off with its url.
MAX_ACTION_LABEL = 40


@dataclasses.dataclass(frozen=True)
class Notification:
    """Everything a channel needs to deliver one event to one user."""

    delivery_id: int
    user_id: str
    user: User | None
    event: CloudEvent
    kind: NotificationType
    rendered: Rendered
    url: str | None
    unsubscribe_url: str | None = None
    #: What the templates saw (data, event, user, url, unsubscribe_url): for channels with templates of their own.
    template_context: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def context(self) -> dict[str, Any]:
        return self.event.context

    @property
    def text_without_link(self) -> str:
        """The text without its closing "<action>: <url>" line, for a channel that shows the url apart (the
        inbox row's link, Discord's linked title). A last line longer than a label before the url stays."""
        text = self.rendered.text.strip()
        if self.url and text.endswith(f": {self.url}"):
            head, _, last = text.rpartition("\n")
            if ":" in last and len(last) - len(self.url) <= MAX_ACTION_LABEL:
                text = head.rstrip()
        return text


#: Whom a channel's deliveries go to: a user (``Delivery.user_id`` is a user id, preferences apply) or an
#: endpoint (it holds a webhook endpoint id, and the endpoints' own type patterns decide, not preferences).
Addressee = Literal["user", "endpoint"]
#: The Procfile process that consumes a channel's queue: ``worker`` (with ingest), ``sender`` or ``hooks``.
ProcessGroup = Literal["worker", "sender", "hooks"]


class Channel:
    """Base class: one subclass per channel, one instance per worker process.

    Its class attributes are the channel's facts. Routing (pipeline/routing.py), the catalog's and the
    preferences' checks and the tests read them through the registry, so no other module names a channel.
    """

    #: The name preferences and the registry use.
    name: ClassVar[str] = ""
    #: Whom it addresses (see ``Addressee``).
    addresses: ClassVar[Addressee] = "user"
    #: True: a delivery due inside the user's quiet hours waits for their end (not for critical types).
    quiet_hours: ClassVar[bool] = False
    #: True: a user may choose the daily digest for it instead (preference mode "digest").
    digests: ClassVar[bool] = False
    #: True: its messages carry the one-click unsubscribe link, and following it (POST /unsubscribe/{token})
    #: switches this channel off for the link's type.
    unsubscribe_link: ClassVar[bool] = False
    #: True: a catalog type that lists no ``channels`` gets this one.
    catalog_default: ClassVar[bool] = False
    #: The Procfile process whose ``--queues`` list its queue (<namespace>.<name>).
    process_group: ClassVar[ProcessGroup] = "hooks"
    #: dramatiq actor priority: lower runs first when worker threads are busy.
    priority: ClassVar[int] = 0
    #: How many deliveries one message carries (a large fan-out becomes several messages).
    batch_size: ClassVar[int] = 20
    #: True: deliver() only writes to the database, so a whole batch runs in one transaction.
    transactional: ClassVar[bool] = False
    #: The parts of the rendered templates deliver() reads (dispatcher.core.rendering.PARTS): only they are
    #: rendered.
    renders: ClassVar[frozenset[str]] = frozenset({"subject", "text", "html", "email_text"})
    #: Delays in seconds before each attempt (the first is the first attempt's), or None for
    #: exponential backoff bounded by TIDINGS_RETRY_MAX / TIDINGS_RETRY_*_BACKOFF.
    retry_schedule: tuple[float, ...] | None = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def deliver(self, notification: Notification) -> None:
        raise NotImplementedError

    def deliver_all(self, notifications: list[Notification]) -> None:
        """Deliver several: how a transactional channel is called, inside the caller's transaction, so that
        they are all written or none. Any exception it raises (DeliveryError too) loses that transaction, and
        the message is retried as a whole. The default delivers them one by one."""
        for notification in notifications:
            self.deliver(notification)

    @classmethod
    def unreachable(cls, settings: Settings, *, timeout: float) -> str | None:
        """Why the service this channel delivers through cannot be reached now, or None if it can (or the
        channel has nothing to check). A start-up check that only warns: it waits at most ``timeout`` seconds."""
        return None

    def close(self) -> None:
        """Release what the channel holds (connections); called at shutdown."""
