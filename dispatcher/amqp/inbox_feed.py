"""The inbox feed: announcements on the broker that a user's inbox changed, for the web processes' live streams.

An announcement is a hint, never the data: ``{"kind": "notification", "user_id": ..., "id": <inbox row id>}``
once an in-app row has committed, or ``{"kind": "counts", "user_id": ...}`` after a change of state. A stream
reads the row and the counts from the database, so a lost, late or repeated announcement costs only latency:
the stream's replay (and its catch-up after a broker reconnect) covers it.

They go to the durable topic exchange ``<namespace>.inbox`` with routing key = the SHA-256 of the user id
(hex), so that no user id (``a.b``, ``#``, ``*``) can match anyone else's. Each web process consumes them with
one exclusive, auto-delete queue of its own, bound per connected user (:class:`InboxFeed`); publishing
(:class:`InboxAnnouncer`) never blocks or fails the caller. pika is not thread-safe, so each of them runs one
connection in one background thread of its own, started when first needed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import queue
import threading
from collections.abc import Callable
from typing import Any

import pika
import pika.adapters.blocking_connection
import pika.exceptions
import pika.spec
import structlog

from dispatcher.core.settings import Settings

log = structlog.get_logger("tidings.inbox_feed")

#: Announcements a process holds while the broker is slow or away; more are dropped (the replay covers them).
MAX_PENDING = 10_000
#: Seconds between reconnection attempts, doubling up to the maximum.
MIN_BACKOFF = 0.5
MAX_BACKOFF = 10.0
#: Seconds a background thread waits for work before servicing the connection's heartbeats.
IDLE = 1.0
CONNECT_TIMEOUT = 5.0

NOTIFICATION = "notification"
COUNTS = "counts"


def feed_exchange(settings: Settings) -> str:
    """The inbox feed's exchange: ``<namespace>.inbox``."""
    return f"{settings.namespace}.inbox"


def routing_key(user_id: str) -> str:
    """A user's routing key: the hex SHA-256 of the id, so that no id can be a pattern matching another's."""
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Announcement:
    """A change of ``user_id``'s inbox: a new row (``item_id``), or only its counts (``item_id`` None)."""

    user_id: str
    item_id: int | None = None

    def encode(self) -> bytes:
        body: dict[str, Any] = {"kind": COUNTS, "user_id": self.user_id}
        if self.item_id is not None:
            body = {"kind": NOTIFICATION, "user_id": self.user_id, "id": self.item_id}
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> Announcement | None:
        """The announcement in ``body``, or None if it is not one."""
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(value, dict) or not isinstance(value.get("user_id"), str):
            return None
        item_id = value.get("id")
        if value.get("kind") == NOTIFICATION and isinstance(item_id, int) and not isinstance(item_id, bool):
            return cls(value["user_id"], item_id)
        if value.get("kind") == COUNTS:
            return cls(value["user_id"])
        return None


def _parameters(broker_url: str) -> pika.URLParameters:
    parameters = pika.URLParameters(broker_url)
    parameters.socket_timeout = CONNECT_TIMEOUT
    parameters.blocked_connection_timeout = CONNECT_TIMEOUT
    parameters.connection_attempts = 1
    return parameters


def _declare_exchange(channel: pika.adapters.blocking_connection.BlockingChannel, exchange: str) -> None:
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)


def _close_quietly(connection: pika.BlockingConnection | None) -> None:
    try:
        if connection is not None and connection.is_open:
            connection.close()
    except Exception:  # already broken: nothing to release
        pass


class InboxAnnouncer:
    """Publishes announcements from any thread: a queue handed to one publishing thread with its own connection.

    No publisher confirms and nothing mandatory: an announcement nobody listens to is dropped by RabbitMQ, and
    one lost to a broker failure is logged and left to the streams' replay.
    """

    def __init__(self, broker_url: str, exchange: str, *, max_pending: int = MAX_PENDING) -> None:
        self.broker_url = broker_url
        self.exchange = exchange
        self._pending: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=max_pending)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._dropped = 0

    def notification(self, user_id: str, item_id: int) -> None:
        """Announce ``user_id``'s new, committed inbox row ``item_id``. Never raises."""
        self._put(Announcement(user_id, item_id))

    def counts_changed(self, user_id: str) -> None:
        """Announce that ``user_id``'s counts may have changed (read, seen, archived). Never raises."""
        self._put(Announcement(user_id))

    def _put(self, announcement: Announcement) -> None:
        try:
            self._start()
            self._pending.put_nowait((routing_key(announcement.user_id), announcement.encode()))
        except queue.Full:
            self._dropped += 1
            if self._dropped % 1000 == 1:  # the first, then one line per thousand
                log.warning("inbox_announcement_dropped", reason="too many pending", dropped=self._dropped)
        except Exception:
            log.exception("inbox_announcement_dropped")

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="inbox-announcer", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Publish what is pending (for up to ``timeout`` seconds), then stop."""
        with self._lock:
            self._stopping.set()
            thread = self._thread
        try:
            self._pending.put_nowait(None)
        except queue.Full:
            pass  # the thread sees _stopping when idle
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        backoff = MIN_BACKOFF
        while not self._stopping.is_set() or not self._pending.empty():
            connection = None
            try:
                connection = pika.BlockingConnection(_parameters(self.broker_url))
                channel = connection.channel()
                _declare_exchange(channel, self.exchange)
                backoff = MIN_BACKOFF
                if self._publish(connection, channel):
                    return
            except Exception as e:
                log.warning("inbox_announcer_disconnected", error=f"{type(e).__name__}: {e}", retry_in=backoff)
                if self._stopping.is_set():
                    return
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                _close_quietly(connection)

    def _publish(
        self, connection: pika.BlockingConnection, channel: pika.adapters.blocking_connection.BlockingChannel
    ) -> bool:
        """Publish until told to stop (True) or the connection fails (raises)."""
        while True:
            try:
                item = self._pending.get(timeout=IDLE)
            except queue.Empty:
                if self._stopping.is_set():
                    return True
                connection.process_data_events(time_limit=0)  # heartbeats
                continue
            if item is None:
                return True
            key, body = item
            try:
                channel.basic_publish(self.exchange, key, body, pika.BasicProperties(content_type="application/json"))
            except Exception:
                log.warning("inbox_announcement_lost", reason="the broker connection failed while publishing")
                raise


class InboxFeed:
    """A web process's consumer of the feed: one exclusive auto-delete queue, bound to the users with a stream.

    ``on_announcement`` and ``on_connected`` are called in the feed's thread: hand them over to your own (an
    event loop's ``call_soon_threadsafe``). ``on_connected`` follows every (re)connection, once the wanted users
    are bound: announcements may have been missed meanwhile, so a stream should catch up from the database.
    """

    def __init__(
        self,
        broker_url: str,
        exchange: str,
        *,
        on_announcement: Callable[[Announcement], None],
        on_connected: Callable[[], None],
    ) -> None:
        self.broker_url = broker_url
        self.exchange = exchange
        self.on_announcement = on_announcement
        self.on_connected = on_connected
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._waiting: list[concurrent.futures.Future[None]] = []
        self._connection: pika.BlockingConnection | None = None
        # Only the feed's thread touches these:
        self._channel: pika.adapters.blocking_connection.BlockingChannel | None = None
        self._queue = ""
        self._bound: set[str] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inbox-feed", daemon=True)
                self._thread.start()

    def bind(self, user_id: str) -> concurrent.futures.Future[None]:
        """Receive ``user_id``'s announcements; the future is done once the binding is in place."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            self._wanted.add(user_id)
            self._waiting.append(future)
            connection = self._connection
        self._request_sync(connection)
        return future

    def unbind(self, user_id: str) -> None:
        """Stop receiving ``user_id``'s announcements (their last stream closed)."""
        with self._lock:
            self._wanted.discard(user_id)
            connection = self._connection
        self._request_sync(connection)

    def _request_sync(self, connection: pika.BlockingConnection | None) -> None:
        if connection is None:
            return  # the next connection binds what is wanted
        try:
            connection.add_callback_threadsafe(self._sync)
        except Exception:  # closing: the next connection binds what is wanted
            pass

    def close(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = MIN_BACKOFF
        while not self._stopping.is_set():
            try:
                self._serve()
                return
            except Exception as e:
                log.warning("inbox_feed_disconnected", error=f"{type(e).__name__}: {e}", retry_in=backoff)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _serve(self) -> None:
        connection = pika.BlockingConnection(_parameters(self.broker_url))
        try:
            channel = connection.channel()
            _declare_exchange(channel, self.exchange)
            self._queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            channel.basic_consume(self._queue, self._on_message, auto_ack=True)
            self._channel, self._bound = channel, set()
            with self._lock:
                self._connection = connection
            self._sync()
            log.info("inbox_feed_connected", queue=self._queue)
            self.on_connected()
            while not self._stopping.is_set():
                connection.process_data_events(time_limit=IDLE)
        finally:
            with self._lock:
                self._connection = None
            self._channel = None
            _close_quietly(connection)

    def _sync(self) -> None:
        """Bind the wanted users, unbind the others; then the waiting binds are done. In the feed's thread."""
        with self._lock:
            wanted, waiting, self._waiting = set(self._wanted), self._waiting, []
        try:
            assert self._channel is not None
            for user_id in wanted - self._bound:
                self._channel.queue_bind(self._queue, self.exchange, routing_key=routing_key(user_id))
                self._bound.add(user_id)
            for user_id in self._bound - wanted:
                self._channel.queue_unbind(self._queue, self.exchange, routing_key=routing_key(user_id))
                self._bound.discard(user_id)
        except BaseException:
            with self._lock:
                self._waiting.extend(waiting)  # the next connection will do them
            raise
        for future in waiting:
            if not future.done():
                future.set_result(None)

    def _on_message(
        self,
        channel: pika.adapters.blocking_connection.BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        announcement = Announcement.decode(body)
        if announcement is None:
            log.warning("inbox_feed_ignored_message", size=len(body))
            return
        self.on_announcement(announcement)
