"""The embedded mode's stand-in for RabbitMQ's exchanges, inside one process (``tidings dev``).

An event published here is ingested at once, in the publisher's thread, through the ingest actor's own
code: when ``publish`` returns, the event and its deliveries have committed, so the process's memory is
never the only copy of it. An inbox announcement goes straight to this process's live streams.

Nothing uses it unless an entry point installs it (:func:`install`); dispatcher/amqp/bus.py then hands
it out in place of RabbitMQ connections.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import structlog

from dispatcher.amqp.inbox_feed import Announcement
from dispatcher.amqp.intake import CONTENT_TYPE, ORIGINAL_PUBLISHER_HEADER
from dispatcher.amqp.publisher import PublishError, event_body

log = structlog.get_logger("tidings.local_bus")

#: (the event's bytes, its routing key, whose authority it carries: None for Tidings' own) -> None.
#: It raises what ingest raises: InvalidEvent for an event refused, another error to be retried.
Ingest = Callable[[bytes, str, str | None], None]


class LocalBus:
    """Publishes events to ``ingest`` and announcements to the feeds of this process.

    Install it before the channels are made (they take their announcer when made), then give it the
    ingest, which needs the actors: :meth:`ingest_with`.
    """

    def __init__(self, ingest: Ingest | None = None) -> None:
        self._ingest = ingest
        self._feeds: list[LocalFeed] = []
        self._lock = threading.Lock()

    def ingest_with(self, ingest: Ingest) -> None:
        self._ingest = ingest

    # --- as a publisher: what Publisher and the web process's PublisherPool offer ----------------------------

    def publish(self, event: dict[str, Any]) -> None:
        self.publish_raw(event_body(event), routing_key=str(event.get("type")), message_id=str(event.get("id")))

    def publish_raw(
        self,
        body: bytes,
        *,
        routing_key: str,
        message_id: str | None = None,
        content_type: str | None = CONTENT_TYPE,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Ingest ``body`` now; ``headers`` may carry the original publisher, as a relay's publish does."""
        if self._ingest is None:
            raise PublishError("the embedded mode is still starting: nothing ingests events yet")
        self._ingest(body, routing_key, (headers or {}).get(ORIGINAL_PUBLISHER_HEADER))

    def close(self, timeout: float = 2.0) -> None:
        """Nothing to close: the bus lives as long as the process."""

    def __enter__(self) -> LocalBus:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    # --- as the inbox feed's announcer ---------------------------------------------------------------------------

    def notification(self, user_id: str, item_id: int) -> None:
        self._announce(Announcement(user_id, item_id))

    def counts_changed(self, user_id: str) -> None:
        self._announce(Announcement(user_id))

    def _announce(self, announcement: Announcement) -> None:
        with self._lock:
            feeds = list(self._feeds)
        for feed in feeds:
            try:
                feed.receive(announcement)
            except Exception:  # an announcer never fails its caller; the streams' replay covers a lost one
                log.exception("inbox_announcement_dropped")

    # --- as the source of the web process's feed ---------------------------------------------------------------

    def feed(self, on_announcement: Callable[[Announcement], None], on_connected: Callable[[], None]) -> LocalFeed:
        return LocalFeed(self, on_announcement, on_connected)

    def _attach(self, feed: LocalFeed) -> None:
        with self._lock:
            self._feeds.append(feed)

    def _detach(self, feed: LocalFeed) -> None:
        with self._lock:
            if feed in self._feeds:
                self._feeds.remove(feed)


class LocalFeed:
    """A web process's feed (the stream hub's ``Feed``), fed by the local bus: always connected, binds at once."""

    def __init__(
        self, bus: LocalBus, on_announcement: Callable[[Announcement], None], on_connected: Callable[[], None]
    ) -> None:
        self.bus = bus
        self.on_announcement = on_announcement
        self.on_connected = on_connected
        self._wanted: set[str] = set()
        self._lock = threading.Lock()
        self._started = False

    @property
    def connected(self) -> bool:
        return self._started

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        self.bus._attach(self)
        self.on_connected()

    def bind(self, user_id: str) -> concurrent.futures.Future[None]:
        with self._lock:
            self._wanted.add(user_id)
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        future.set_result(None)
        return future

    def unbind(self, user_id: str) -> None:
        with self._lock:
            self._wanted.discard(user_id)

    def receive(self, announcement: Announcement) -> None:
        with self._lock:
            wanted = announcement.user_id in self._wanted
        if wanted:
            self.on_announcement(announcement)

    def close(self, timeout: float = 2.0) -> None:
        self.bus._detach(self)


_installed: LocalBus | None = None


def install(bus: LocalBus | None) -> None:
    """Make ``bus`` this process's bus (None: RabbitMQ again). Only an entry point calls this."""
    global _installed
    _installed = bus


def installed() -> LocalBus | None:
    """The bus an entry point installed, or None: this process talks to RabbitMQ."""
    return _installed
