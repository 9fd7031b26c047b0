"""Live updates of the caller's inbox as Server-Sent Events: ``GET /v1/me/notifications/stream``.

Each committed in-app row is announced on the broker's inbox feed (dispatcher/amqp/inbox_feed.py). This
process consumes the feed in one background thread (:class:`~dispatcher.amqp.inbox_feed.InboxFeed`), bound to
the users who have a stream open here, and :class:`StreamHub` hands each announcement to their streams on the
event loop. An announcement is only a hint: a stream reads the row and the counts from the database.

A stream first replays the rows after ``Last-Event-ID`` (at most REPLAY_LIMIT, the newest), then sends the
live ones; an id it already sent is never sent again. After a broker reconnection every stream catches up
from the database, so nothing committed meanwhile is missed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from types import FrameType
from typing import Annotated, Any

import peewee
import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from dispatcher.amqp.bus import Feed, close_announcers, inbox_feed
from dispatcher.amqp.inbox_feed import Announcement
from dispatcher.commands import inbox
from dispatcher.core import metrics
from dispatcher.storage.models import InboxItem

from .auth import current_user_or_query_token
from .database import session
from .problems import ApiError
from .schemas import notification
from .state import ApiState

log = structlog.get_logger("tidings.api.stream")

#: Open streams at most, in this process (uvicorn's --limit-concurrency is 1000: leave room for the rest).
MAX_STREAMS = 800
#: Open streams at most per user, in this process (a browser's tabs).
MAX_STREAMS_PER_USER = 10
#: Seconds of silence before a ``: ping`` comment keeps proxies from closing the stream.
HEARTBEAT = 15.0
#: Rows replayed after Last-Event-ID at most (the newest of them); a client away longer reloads its list.
REPLAY_LIMIT = 100
#: Announcements a stream holds before it catches up from the database instead (a slow reader).
MAX_QUEUED = 256
#: Seconds a new stream waits for its user's binding to the feed before replaying anyway.
BIND_TIMEOUT = 5.0
#: What EventSource waits before reconnecting, in milliseconds.
RETRY_MS = 2000
#: Ids a stream remembers having sent, to never send one twice.
REMEMBERED_IDS = 1000


@dataclasses.dataclass(eq=False)
class Subscription:
    """One open stream's inbox: what was announced for its user since it last looked. Loop thread only."""

    user_id: str
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    item_ids: list[int] = dataclasses.field(default_factory=list)
    catch_up: bool = False
    stopped: bool = False

    def push(self, announcement: Announcement) -> None:
        if announcement.item_id is not None:
            if len(self.item_ids) < MAX_QUEUED:
                self.item_ids.append(announcement.item_id)
            else:
                self.catch_up, self.item_ids = True, []
        self.wake.set()

    def take(self) -> tuple[list[int], bool]:
        """The ids announced since, and whether to catch up from the database; clears them."""
        self.wake.clear()
        taken, self.item_ids, catch_up, self.catch_up = self.item_ids, [], self.catch_up, False
        return taken, catch_up


FeedFactory = Callable[[Callable[[Announcement], None], Callable[[], None]], Feed]


class StreamHub:
    """This process's open streams by user, fed from the feed's thread; bounds how many are open."""

    def __init__(
        self,
        feed_factory: FeedFactory,
        *,
        max_streams: int = MAX_STREAMS,
        max_per_user: int = MAX_STREAMS_PER_USER,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.feed_factory = feed_factory
        self.max_streams = max_streams
        self.max_per_user = max_per_user
        self.heartbeat = heartbeat
        self.feed: Feed | None = None
        self.stopped = False
        self._by_user: dict[str, set[Subscription]] = collections.defaultdict(set)
        self._open = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self, user_id: str) -> Subscription:
        """A subscription for a new stream of ``user_id``, bound to the feed; 429 / 503 over the limits."""
        if self.stopped:
            raise ApiError(503, "Service Unavailable", "the server is shutting down", headers={"Retry-After": "1"})
        if self._open >= self.max_streams:
            detail = f"this server has {self.max_streams} streams open, its most"
            raise ApiError(503, "Service Unavailable", detail, headers={"Retry-After": "5"})
        if len(self._by_user.get(user_id, ())) >= self.max_per_user:
            detail = f"at most {self.max_per_user} streams per user may be open at once"
            raise ApiError(429, "Too Many Requests", detail, headers={"Retry-After": "5"})
        subscription = Subscription(user_id)
        self._by_user[user_id].add(subscription)
        self._open += 1
        metrics.stream_opened()
        feed = self._start_feed()
        bound = feed.bind(user_id)
        if feed.connected:  # else the catch-up after connecting covers what this stream could miss
            try:
                await asyncio.wait_for(asyncio.wrap_future(bound), BIND_TIMEOUT)
            except TimeoutError:
                log.warning("stream_bind_slow", timeout=BIND_TIMEOUT)
            except BaseException:
                self.close(subscription)
                raise
        return subscription

    def _start_feed(self) -> Feed:
        if self.feed is None:
            self._loop = asyncio.get_running_loop()
            self.feed = self.feed_factory(self.announced, self.reconnected)
            self.feed.start()
        return self.feed

    def close(self, subscription: Subscription) -> None:
        """The stream ended; the last of its user's unbinds them. Idempotent."""
        streams = self._by_user.get(subscription.user_id)
        if streams is None or subscription not in streams:
            return
        streams.discard(subscription)
        self._open -= 1
        metrics.stream_closed()
        if not streams:
            del self._by_user[subscription.user_id]
            if self.feed is not None:
                self.feed.unbind(subscription.user_id)

    def announced(self, announcement: Announcement) -> None:
        """From the feed's thread: an announcement for the streams of its user."""
        self._call_soon(self._dispatch, announcement)

    def reconnected(self) -> None:
        """From the feed's thread: announcements may have been missed; every stream catches up."""
        self._call_soon(self._catch_up_all)

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
                self._loop.call_soon_threadsafe(fn, *args)

    def _dispatch(self, announcement: Announcement) -> None:
        for subscription in self._by_user.get(announcement.user_id, ()):
            subscription.push(announcement)

    def _catch_up_all(self) -> None:
        for subscription in self._subscriptions():
            subscription.catch_up = True
            subscription.wake.set()

    def _subscriptions(self) -> Iterable[Subscription]:
        return [s for streams in self._by_user.values() for s in streams]

    def stop(self) -> None:
        """End every stream (the server is shutting down) and refuse new ones."""
        self.stopped = True
        for subscription in self._subscriptions():
            subscription.stopped = True
            subscription.wake.set()

    async def shutdown(self) -> None:
        self.stop()
        if self.feed is not None:
            await run_in_threadpool(self.feed.close)


# --- the database side of a stream (run in a worker thread) ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Snapshot:
    items: list[InboxItem]
    counts: inbox.Counts
    latest_id: int = 0


def _start(user_id: str, after: int | None) -> Snapshot:
    """The rows after ``after`` to replay (or none, and the user's latest id, without one) and the counts."""
    with session():
        if after is None:
            latest = InboxItem.select(peewee.fn.MAX(InboxItem.id)).where(InboxItem.user_id == user_id).scalar()
            return Snapshot([], inbox.counts(user_id), int(latest or 0))
        return Snapshot(_rows_after(user_id, after), inbox.counts(user_id))


def _rows_after(user_id: str, after: int) -> list[InboxItem]:
    query = InboxItem.select().where(InboxItem.user_id == user_id, InboxItem.id > after)
    return list(reversed(query.order_by(InboxItem.id.desc()).limit(REPLAY_LIMIT)))


def _catch_up(user_id: str, item_ids: list[int], after: int | None) -> Snapshot:
    """The announced rows that are this user's, those after ``after`` if given, and the counts."""
    with session():
        rows = {row.id: row for row in _rows_after(user_id, after)} if after is not None else {}
        if item_ids:
            query = InboxItem.select().where(InboxItem.user_id == user_id, InboxItem.id.in_(item_ids))
            rows.update((row.id, row) for row in query)
        return Snapshot([rows[i] for i in sorted(rows)], inbox.counts(user_id))


# --- the events -------------------------------------------------------------------------------------------------


def sse(event: str, data: str, event_id: int) -> str:
    """One SSE event; ``data`` is one line of JSON."""
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n"


def _count_event(counts: inbox.Counts, event_id: int) -> str:
    data = f'{{"total":{counts.total},"unread":{counts.unread},"unseen":{counts.unseen}}}'
    return sse("count", data, event_id)


async def event_stream(hub: StreamHub, subscription: Subscription, after: int | None) -> AsyncIterator[str]:
    """The stream's text: the replay, the first counts, then live events and heartbeats until it stops."""
    user_id = subscription.user_id
    sent: collections.OrderedDict[int, None] = collections.OrderedDict()
    counts_sent: inbox.Counts | None = None
    try:
        yield f"retry: {RETRY_MS}\n\n"
        snapshot = await run_in_threadpool(_start, user_id, after)
        cursor = after if after is not None else snapshot.latest_id
        while True:
            for row in snapshot.items:
                if row.id in sent:
                    continue
                sent[row.id] = None
                if len(sent) > REMEMBERED_IDS:
                    sent.popitem(last=False)
                cursor = max(cursor, row.id)
                yield sse("notification", notification(row).model_dump_json(), row.id)
            if snapshot.counts != counts_sent:
                counts_sent = snapshot.counts
                yield _count_event(snapshot.counts, cursor)
            while not await _woken(subscription, hub.heartbeat):
                yield ": ping\n\n"
            if subscription.stopped:
                return
            item_ids, catch_up = subscription.take()
            fresh = [i for i in item_ids if i not in sent]
            snapshot = await run_in_threadpool(_catch_up, user_id, fresh, cursor if catch_up else None)
    finally:
        hub.close(subscription)


async def _woken(subscription: Subscription, timeout: float) -> bool:
    """Wait for an announcement (True) or ``timeout`` seconds of silence (False)."""
    if subscription.wake.is_set():
        return True
    try:
        await asyncio.wait_for(subscription.wake.wait(), timeout)
    except TimeoutError:
        return False
    return True


# --- the process: the hub's lifetime, and ending the streams when the server is told to stop ----------------------


def hub_of(app: FastAPI) -> StreamHub | None:
    hub: StreamHub | None = getattr(app.state, "inbox_streams", None)
    return hub


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Make the app's hub (its feed connects when the first stream opens); stop both at shutdown."""
    settings = api_state_of(app).settings

    def feed(on_announcement: Callable[[Announcement], None], on_connected: Callable[[], None]) -> Feed:
        return inbox_feed(settings, on_announcement, on_connected)

    app.state.inbox_streams = hub = StreamHub(feed)
    restore = _on_exit_signal(asyncio.get_running_loop(), hub.stop)
    try:
        yield
    finally:
        restore()
        await hub.shutdown()
        await run_in_threadpool(close_announcers)


def api_state_of(app: FastAPI) -> ApiState:
    state: ApiState = app.state.tidings
    return state


def _on_exit_signal(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on the loop at SIGTERM or SIGINT, then the handler in place (uvicorn's); an undo.

    uvicorn waits for open responses before it ends (up to --timeout-graceful-shutdown): streams never end
    by themselves, so they must hear of the signal. Only where uvicorn has a handler of its own.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    installed: dict[int, Any] = {}
    for number in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(number)
        if not callable(previous):
            continue

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(callback)
            previous(signum, frame)

        signal.signal(number, handler)
        installed[number] = (previous, handler)

    def restore() -> None:
        for number, (previous, handler) in installed.items():
            if signal.getsignal(number) is handler:
                signal.signal(number, previous)

    return restore


router = APIRouter(tags=["inbox"], lifespan=lifespan)

LastEventIdHeader = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        le=2**63 - 1,
        description="The id of the last event received: EventSource sends it when it reconnects.",
    ),
]
LastEventIdQuery = Annotated[
    int | None,
    Query(ge=0, le=2**63 - 1, description="Like the Last-Event-ID header, for the first connection (header wins)."),
]
TokenQuery = Annotated[
    str | None,
    Query(max_length=4096, description="The user token, for EventSource (it cannot send headers)."),
]

STREAM_DESCRIPTION = """Server-Sent Events of the caller's inbox:

- `notification`: an item (as the list shows it) as soon as it is stored; `id:` is its id.
- `count`: `{"total", "unread", "unseen"}` (archived ones excluded) first, then after each change;
  `id:` is the id of the latest notification.
- `: ping` comments after 15 s of silence.

On reconnection EventSource sends `Last-Event-ID`: the stream replays the notifications after it (at most
100, the newest) before the live ones, never one twice."""


@router.get(
    "/v1/me/notifications/stream",
    response_class=StreamingResponse,
    summary="Live updates of the caller's inbox (Server-Sent Events)",
    description=STREAM_DESCRIPTION,
    responses={200: {"description": "An endless text/event-stream.", "content": {"text/event-stream": {}}}},
)
async def stream_notifications(
    request: Request,
    user_id: Annotated[str, Depends(current_user_or_query_token)],
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    token: TokenQuery = None,
) -> StreamingResponse:
    hub = hub_of(request.app)
    if hub is None:
        raise ApiError(503, "Service Unavailable", "live updates run only in a server started with its lifespan")
    subscription = await hub.open(user_id)
    after = last_event_id_header if last_event_id_header is not None else last_event_id
    return StreamingResponse(
        event_stream(hub, subscription, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        # Also when the client left before the stream began (its finally never ran): closing is idempotent.
        background=BackgroundTask(hub.close, subscription),
    )
