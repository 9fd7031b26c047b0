"""Publishing from the web process: a pool of confirmed AMQP connections shared by the handler threads.

A pika connection serves one thread at a time, so a handler takes one from the pool, publishes and
gives it back; the pool opens connections only when none is idle, and closes them on shutdown. An
idle connection answers no heartbeats, so one idle too long is replaced, and a publish that fails
on a reused connection (the broker restarted meanwhile) is tried once more on a new one: harmless,
since Tidings processes an event once per (source, id).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dispatcher.amqp.publisher import Publisher, PublishError

#: Idle connections kept at most; more are closed when given back.
MAX_IDLE = 8
#: Seconds an idle connection is reused; older ones may have missed heartbeats and are replaced.
MAX_IDLE_SECONDS = 30.0
#: Seconds to connect, or to wait for a confirm, before the publish fails.
TIMEOUT = 5.0


class PublisherPool:
    """Publishers to one exchange, opened lazily, each used by one thread at a time."""

    def __init__(
        self,
        broker_url: str,
        exchange: str,
        *,
        max_idle: int = MAX_IDLE,
        max_idle_seconds: float = MAX_IDLE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker_url = broker_url
        self.exchange = exchange
        self.max_idle = max_idle
        self.max_idle_seconds = max_idle_seconds
        self.monotonic = monotonic
        self._idle: list[tuple[Publisher, float]] = []  # (publisher, when it was given back)
        self._lock = threading.Lock()
        self._closed = False

    def publish_raw(self, body: bytes, *, routing_key: str, message_id: str, headers: dict[str, str]) -> None:
        """Publish ``body`` with confirms (Publisher.publish_raw); PublishError if RabbitMQ did not take it."""
        publisher, reused = self._take()
        try:
            publisher.publish_raw(body, routing_key=routing_key, message_id=message_id, headers=headers)
        except PublishError:
            _close(publisher)
            if not reused:
                raise
            publisher = self._connect()
            try:
                publisher.publish_raw(body, routing_key=routing_key, message_id=message_id, headers=headers)
            except PublishError:
                _close(publisher)
                raise
        self._give_back(publisher)

    def _take(self) -> tuple[Publisher, bool]:
        """An idle publisher fresh enough to reuse (True), or a new one (False)."""
        stale = []
        found = None
        with self._lock:
            if self._closed:
                raise PublishError("the web process is shutting down")
            while self._idle and found is None:
                publisher, since = self._idle.pop()
                if self.monotonic() - since <= self.max_idle_seconds and publisher.connection.is_open:
                    found = publisher
                else:
                    stale.append(publisher)
        for publisher in stale:
            _close(publisher)
        return (found, True) if found is not None else (self._connect(), False)

    def _connect(self) -> Publisher:
        return Publisher(self.broker_url, self.exchange, timeout=TIMEOUT)

    def _give_back(self, publisher: Publisher) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append((publisher, self.monotonic()))
                return
        _close(publisher)

    def close(self) -> None:
        """Close every idle connection; publishing after this fails."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for publisher, _ in idle:
            _close(publisher)


def _close(publisher: Publisher) -> None:
    try:
        publisher.close()
    except Exception:  # noqa: BLE001 - a connection that fails to close is gone all the same
        pass
