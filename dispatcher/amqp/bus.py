"""What connects this process to the bus: RabbitMQ, or the local bus the embedded mode installed (local.py).

Code that publishes an event, announces an inbox change or listens to the inbox feed gets its connection
here, so that the same code runs against RabbitMQ in production and in one process under ``tidings dev``.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from dispatcher.amqp import local
from dispatcher.amqp.inbox_feed import Announcement, InboxAnnouncer, InboxFeed, feed_exchange
from dispatcher.amqp.publisher import Publisher
from dispatcher.core.settings import Settings


class EventPublisher(Protocol):
    """A confirmed publisher to the events exchange (Publisher), used as a context manager."""

    def publish(self, event: dict[str, Any]) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> EventPublisher: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Announcer(Protocol):
    """Announces inbox changes to the live streams; never raises, never blocks."""

    def notification(self, user_id: str, item_id: int) -> None: ...
    def counts_changed(self, user_id: str) -> None: ...
    def close(self, timeout: float = 2.0) -> None: ...


class Feed(Protocol):
    """A web process's consumer of the inbox feed (InboxFeed, the local bus's; tests pass their own)."""

    @property
    def connected(self) -> bool: ...
    def start(self) -> None: ...
    def bind(self, user_id: str) -> concurrent.futures.Future[None]: ...
    def unbind(self, user_id: str) -> None: ...
    def close(self, timeout: float = 2.0) -> None: ...


def event_publisher(settings: Settings, *, timeout: float = 10.0) -> EventPublisher:
    """A publisher to the events exchange: a new RabbitMQ connection (close it), or the local bus."""
    bus = local.installed()
    return bus if bus is not None else Publisher(settings.broker_url, settings.exchange, timeout=timeout)


def new_announcer(settings: Settings) -> Announcer:
    """An announcer of its own (a channel's), or the local bus."""
    bus = local.installed()
    return bus if bus is not None else InboxAnnouncer(settings.broker_url, feed_exchange(settings))


def inbox_feed(
    settings: Settings, on_announcement: Callable[[Announcement], None], on_connected: Callable[[], None]
) -> Feed:
    """The web process's consumer of the inbox feed (see InboxFeed for the callbacks)."""
    bus = local.installed()
    if bus is not None:
        return bus.feed(on_announcement, on_connected)
    return InboxFeed(
        settings.broker_url, feed_exchange(settings), on_announcement=on_announcement, on_connected=on_connected
    )


_announcers: dict[tuple[str, str], Announcer] = {}
_announcers_lock = threading.Lock()


def announcer_for(settings: Settings) -> Announcer:
    """This process's shared announcer for these settings' broker and namespace (made when first asked for)."""
    bus = local.installed()
    if bus is not None:
        return bus
    key = (settings.broker_url, feed_exchange(settings))
    with _announcers_lock:
        announcer = _announcers.get(key)
        if announcer is None:
            announcer = _announcers[key] = InboxAnnouncer(*key)
        return announcer


def announce_counts_changed(settings: Settings, user_id: str) -> None:
    """Tell the live streams that ``user_id``'s counts may have changed. Call it after the change commits;
    it never raises or blocks (a lost announcement delays a ``count`` event until the next one)."""
    announcer_for(settings).counts_changed(user_id)


def close_announcers(timeout: float = 2.0) -> None:
    """Flush and stop this process's shared announcers (at shutdown)."""
    with _announcers_lock:
        announcers = list(_announcers.values())
        _announcers.clear()
    for announcer in announcers:
        announcer.close(timeout)
