"""Tidings' dead-letter queues on RabbitMQ: read them without consuming, replay, purge.

dramatiq gives every queue Q a dead-letter queue Q.XQ. ``<ns>.ingest.XQ`` holds the
original bodies producers published, each with the ``x-death`` header RabbitMQ added
(the exchange and routing key it came by). The other XQs hold dramatiq messages whose
retries ran out.

Reading takes messages with ``basic_get`` and manual acks, at most as many as were
ready when the reader opened, and hands back whatever it did not ack with one
``basic_nack(multiple=True, requeue=True)``: RabbitMQ puts them back at their original
positions, so a read neither loses nor reorders anything. While a reader holds
messages, another reader (a second ``tidings dlq`` at the same moment) does not see
them, and a purge leaves them in place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterator
from types import TracebackType
from typing import Any, cast

import pika
import pika.exceptions
from dramatiq.common import xq_name

from channels import REGISTRY
from dispatcher.amqp.intake import ORIGINAL_PUBLISHER_HEADER, Intake
from dispatcher.amqp.intake import message_id as body_message_id
from dispatcher.amqp.publisher import Publisher, PublishError
from dispatcher.core.errors import TidingsError
from dispatcher.core.events import format_time
from dispatcher.core.settings import Settings

#: The short names of Tidings' dramatiq queues: ingest, one per channel, and schedules.py's.
QUEUES: tuple[str, ...] = ("ingest", "ingest_retry", *REGISTRY, "maintenance")
UNKNOWN_REASON = "unknown (rejected before Tidings kept reasons)"
PREVIEW_CHARS = 80

# A preview must not show a webhook secret or the token in a Discord webhook URL.
_SECRETS = re.compile(r'("(?:secret|previous_secret)"\s*:\s*")[^"]*|(whsec_)[A-Za-z0-9+/=]+|(/webhooks/\d+/)[\w-]+')


class DeadLetterError(TidingsError):
    """RabbitMQ could not be read or written for a dead-letter command."""


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One message in a dead-letter queue, as read (not consumed)."""

    queue: str  # the XQ
    message_id: str  # the id ingest gives the body: Rejection's key, dramatiq's message id
    body: bytes
    message: dict[str, Any]  # the ingest message the body makes (intake.py)
    exchange: str | None  # where it was first published (x-death), "" for a queue's own name
    routing_key: str | None
    dead_lettered_at: dt.datetime | None
    deaths: int  # how many times RabbitMQ dead-lettered it from that queue
    delivery_tag: int = dataclasses.field(repr=False, compare=False)
    publisher: str | None = None  # the RabbitMQ user that published it (user_id), None: anonymous
    content_type: str | None = None

    @property
    def preview(self) -> str:
        """The first characters of the body on one line, secrets masked; a repr when not UTF-8."""
        try:
            text = " ".join(self.body.decode("utf-8").split())
        except UnicodeDecodeError:
            return repr(self.body[:PREVIEW_CHARS])
        masked = _SECRETS.sub(lambda m: next(g for g in m.groups() if g is not None) + "***", text)
        return masked[:PREVIEW_CHARS] + ("…" if len(masked) > PREVIEW_CHARS else "")

    def summary(self) -> dict[str, Any]:
        """Everything but the body, for tables and JSON."""
        return {
            "message_id": self.message_id,
            "queue": self.queue,
            "exchange": self.exchange,
            "routing_key": self.routing_key,
            "dead_lettered_at": format_time(self.dead_lettered_at) if self.dead_lettered_at else None,
            "deaths": self.deaths,
            "size": len(self.body),
        }


def xq(settings: Settings, queue: str) -> str:
    """The dead-letter queue of one of Tidings' queues, e.g. xq(settings, "ingest")."""
    return xq_name(settings.queue(queue))


def intake_for(settings: Settings) -> Intake:
    """The worker's intake, so message ids here are the ones ingest keyed its rejections by."""
    return Intake(ingest_queue=settings.queue("ingest"), max_event_bytes=settings.max_event_bytes)


def own_message(body: bytes) -> dict[str, Any]:
    """A dead letter of one of Tidings' own queues: the dramatiq message it is, or only an id of its bytes."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        message = None
    return message if isinstance(message, dict) and "message_id" in message else {"message_id": body_message_id(body)}


def _connect(broker_url: str, timeout: float) -> pika.BlockingConnection:
    parameters = pika.URLParameters(broker_url)
    parameters.socket_timeout = timeout
    parameters.blocked_connection_timeout = timeout
    try:
        return pika.BlockingConnection(parameters)
    except pika.exceptions.AMQPError as e:
        raise DeadLetterError(f"cannot reach RabbitMQ: {type(e).__name__}: {e}") from e


def _ready(connection: pika.BlockingConnection, queue: str) -> int | None:
    """Messages ready in ``queue``, None if it does not exist (a 404 closes the channel, hence its own)."""
    channel = connection.channel()
    try:
        count = channel.queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 404:
            return None
        raise
    channel.close()
    return count


def queue_counts(settings: Settings, *, timeout: float = 10.0) -> dict[str, int | None]:
    """XQ name -> messages ready in it (None: never declared), for every Tidings queue."""
    connection = _connect(settings.broker_url, timeout)
    try:
        return {xq(settings, q): _ready(connection, xq(settings, q)) for q in QUEUES}
    except pika.exceptions.AMQPError as e:
        raise DeadLetterError(f"cannot count dead letters: {type(e).__name__}: {e}") from e
    finally:
        if connection.is_open:
            connection.close()


class DeadLetterReader:
    """One dead-letter queue, read with basic_get; what is not acked goes back on close()."""

    def __init__(self, settings: Settings, queue: str, *, timeout: float = 10.0) -> None:
        self.queue = xq(settings, queue)
        # The ingest XQ holds producers' bodies, the others dramatiq's own messages.
        self.intake = intake_for(settings) if queue == "ingest" else None
        self.channel: Any = None
        self._held: set[int] = set()  # delivery tags read and not acked
        self.connection = _connect(settings.broker_url, timeout)
        try:
            ready = _ready(self.connection, self.queue)
            self.exists = ready is not None
            self.ready = ready or 0  # fixed at opening: a replayed letter dead-lettered again is not read twice
            self.channel = self.connection.channel()
        except pika.exceptions.AMQPError as e:
            self.close()
            raise DeadLetterError(f"cannot open {self.queue}: {type(e).__name__}: {e}") from e

    def read(self, limit: int | None = None) -> Iterator[DeadLetter]:
        """Up to ``limit`` letters from the head of the queue, oldest first, held until close()."""
        count = self.ready if limit is None else min(limit, self.ready)
        for _ in range(count):
            try:
                method, properties, body = self.channel.basic_get(self.queue, auto_ack=False)
            except pika.exceptions.AMQPError as e:
                raise DeadLetterError(f"cannot read {self.queue}: {type(e).__name__}: {e}") from e
            if method is None:
                return
            self._held.add(method.delivery_tag)
            yield self._letter(method.delivery_tag, properties, body or b"")

    def _letter(self, tag: int, properties: pika.BasicProperties, body: bytes) -> DeadLetter:
        message = self.intake.wrap(body) if self.intake else own_message(body)
        deaths = (properties.headers or {}).get("x-death") or [{}]
        death = deaths[0] if isinstance(deaths, list) and isinstance(deaths[0], dict) else {}
        keys = death.get("routing-keys") or [None]
        when = death.get("time")
        if not isinstance(when, dt.datetime) and isinstance(properties.timestamp, int):
            when = dt.datetime.fromtimestamp(properties.timestamp, dt.UTC)
        return DeadLetter(
            queue=self.queue,
            message_id=str(message.get("message_id")),
            body=body,
            message=message,
            exchange=death.get("exchange"),
            routing_key=keys[0],
            deaths=int(death.get("count", 0)),
            dead_lettered_at=when if isinstance(when, dt.datetime) else None,
            delivery_tag=tag,
            publisher=properties.user_id or None,
            content_type=properties.content_type,
        )

    def ack(self, letter: DeadLetter) -> None:
        """Remove ``letter`` from the queue for good."""
        try:
            self.channel.basic_ack(letter.delivery_tag)
            self._held.discard(letter.delivery_tag)
        except pika.exceptions.AMQPError as e:
            raise DeadLetterError(f"cannot remove {letter.message_id} from {self.queue}: {e}") from e

    def close(self) -> None:
        """Hand back every letter read and not acked, in its place; then disconnect."""
        # Should the nack fail, the end of the channel or connection requeues them all the same.
        try:
            # The highest tag still held: a tag already acked would be an error that closes the channel.
            if self._held and self.channel is not None and self.channel.is_open:
                self.channel.basic_nack(max(self._held), multiple=True, requeue=True)
        except pika.exceptions.AMQPError:
            pass
        try:
            if self.connection.is_open:
                self.connection.close()
        except pika.exceptions.AMQPError:
            pass

    def __enter__(self) -> DeadLetterReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def find(settings: Settings, message_id: str) -> list[DeadLetter]:
    """Every letter with ``message_id`` in any of Tidings' dead-letter queues (ingest first)."""
    found = []
    for queue in QUEUES:
        with DeadLetterReader(settings, queue) as reader:
            found += [letter for letter in reader.read() if letter.message_id == message_id]
    return found


@dataclasses.dataclass(frozen=True)
class Replayed:
    """What a replay did with one letter: ``error`` None means published and removed."""

    letter: DeadLetter
    error: str | None = None


def replay(settings: Settings, *, message_id: str | None = None, limit: int | None = None) -> Iterator[Replayed]:
    """Publish ingest dead letters again, by their original exchange, routing key and content type.

    A replay keeps the authority of the letter's first publisher, not Tidings': it names that
    user in a header only Tidings' own user may set (intake.ORIGINAL_PUBLISHER_HEADER), so an
    unauthorised command dead-lettered once is refused again.

    Every letter with ``message_id`` (all of them when None, up to ``limit``). A letter
    leaves the XQ only once RabbitMQ confirmed its new copy; one that cannot be published
    stays. Safe to repeat: ingest keys events by (source, id), so a replayed event that
    was processed once is a duplicate, and one still invalid is dead-lettered again.
    """
    publishers: dict[str, Publisher | PublishError] = {}
    try:
        with DeadLetterReader(settings, "ingest") as reader:
            letters = reader.read(limit if message_id is None else None)
            for letter in letters:
                if message_id is not None and letter.message_id != message_id:
                    continue
                error = _publish(letter, publishers, settings)
                if error is None:
                    reader.ack(letter)
                yield Replayed(letter, error)
    finally:
        for publisher in publishers.values():
            if isinstance(publisher, Publisher):
                publisher.close()


def _publish(letter: DeadLetter, publishers: dict[str, Publisher | PublishError], settings: Settings) -> str | None:
    if letter.exchange is None or not letter.routing_key:
        return "no x-death header says which exchange and routing key it came by"
    if letter.exchange == "":
        return "it was sent straight to the queue, not through an exchange: publish it again yourself"
    if letter.exchange not in publishers:
        try:
            publishers[letter.exchange] = Publisher(settings.broker_url, letter.exchange)
        except PublishError as e:
            publishers[letter.exchange] = e
    publisher = publishers[letter.exchange]
    if isinstance(publisher, PublishError):
        return str(publisher)
    try:
        publisher.publish_raw(
            letter.body,
            routing_key=letter.routing_key,
            content_type=letter.content_type,
            headers={ORIGINAL_PUBLISHER_HEADER: letter.publisher or ""},
        )
    except PublishError as e:
        return str(e)
    return None


def purge(settings: Settings, queue: str = "ingest", *, timeout: float = 10.0) -> int:
    """Delete every ready message of one dead-letter queue; how many went. Held ones stay."""
    name = xq(settings, queue)
    connection = _connect(settings.broker_url, timeout)
    try:
        if _ready(connection, name) is None:
            return 0
        # cast: the stubs allow a PurgeOk without a count, but one decoded from the broker always has it
        return cast(int, connection.channel().queue_purge(name).method.message_count)
    except pika.exceptions.AMQPError as e:
        raise DeadLetterError(f"cannot purge {name}: {type(e).__name__}: {e}") from e
    finally:
        if connection.is_open:
            connection.close()


def displayable_body(body: bytes) -> tuple[str, Any]:
    """("json", value), ("text", str) or ("bytes", repr): how to show a whole body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes", repr(body)
    try:
        return "json", json.loads(text)
    except (ValueError, RecursionError):
        return "text", text
