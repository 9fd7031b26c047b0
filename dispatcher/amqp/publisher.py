"""Publish CloudEvents to Tidings' exchange: for producers written in Python, the CLI and tests.

Producers need none of this: any AMQP client that follows docs/contract.md will do.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from types import TracebackType
from typing import Any

import pika
import pika.exceptions

from dispatcher.amqp.intake import CONTENT_TYPE
from dispatcher.core.errors import TidingsError
from dispatcher.core.events import format_time
from dispatcher.core.settings import broker_user


class PublishError(TidingsError):
    """RabbitMQ did not take the event (unroutable, refused or unreachable)."""


def build_event(
    type: str,
    data: dict[str, Any],
    *,
    source: str = "/tidings/cli",
    id: str | None = None,
    time: dt.datetime | None = None,
    subject: str | None = None,
) -> dict[str, Any]:
    """A structured-mode CloudEvents 1.0 dict; ``id`` defaults to a new UUID."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": type,
        "time": format_time(time or dt.datetime.now(dt.UTC)),
        "datacontenttype": "application/json",
        "data": data,
    }
    if subject is not None:
        event["subject"] = subject
    return event


def event_body(event: dict[str, Any]) -> bytes:
    """An event as the bytes published: compact UTF-8 JSON."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Publisher:
    """One connection with publisher confirms; every publish is confirmed and mandatory.

    Each message carries the AMQP ``user_id`` property, the user of ``broker_url``:
    RabbitMQ checks it against the connection, and Tidings grants authority by it.
    """

    def __init__(self, broker_url: str, exchange: str, *, timeout: float = 10.0) -> None:
        self.exchange = exchange
        self.user = broker_user(broker_url)
        parameters = pika.URLParameters(broker_url)
        parameters.socket_timeout = timeout
        parameters.blocked_connection_timeout = timeout
        try:
            self.connection = pika.BlockingConnection(parameters)
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()
            self.channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
        except pika.exceptions.AMQPError as e:
            raise PublishError(f"cannot reach RabbitMQ: {type(e).__name__}: {e}") from e

    def publish(self, event: dict[str, Any]) -> None:
        """Publish one event with routing key = its type; raise PublishError if not taken."""
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
        """Publish bytes as they are (`tidings dlq replay`; tests use this for malformed events)."""
        properties = pika.BasicProperties(
            content_type=content_type, delivery_mode=2, message_id=message_id, user_id=self.user, headers=headers
        )
        try:
            self.channel.basic_publish(self.exchange, routing_key, body, properties, mandatory=True)
        except pika.exceptions.UnroutableError:
            raise PublishError(
                f"no queue is bound for routing key {routing_key!r} on exchange {self.exchange!r}: "
                "is the type in the catalog, and has a Tidings worker started once?"
            ) from None
        except pika.exceptions.NackError:
            raise PublishError("RabbitMQ refused the event (nack)") from None
        except pika.exceptions.AMQPError as e:
            raise PublishError(f"publishing failed: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def publish(event: dict[str, Any], *, broker_url: str, exchange: str) -> None:
    """Publish one event on a short-lived connection."""
    with Publisher(broker_url, exchange) as publisher:
        publisher.publish(event)
