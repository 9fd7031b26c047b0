"""Events onto a deployment's exchange: as any producer publishes them (plain pika), or as Tidings does.

A producer follows docs/contract.md with nothing of Tidings': plain pika, publisher confirms, every message
mandatory and persistent, content type application/cloudevents+json, routing key = the event's type. It is
anonymous unless it sets ``user_id`` (RabbitMQ checks that it names the connection's user).
Tidings' own Publisher (``*_as_tidings``) publishes as the broker URL's user, guest here, whose commands apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

import pika

from dispatcher.amqp.publisher import Publisher, build_event

from .deployment import Deployment
from .events import as_body, cloud_event

#: The content type of a structured-mode CloudEvent, as the contract spells it.
CLOUDEVENTS_JSON = "application/cloudevents+json"


class Producer:
    """One producer's AMQP connection to an exchange: plain pika with publisher confirms."""

    def __init__(self, broker_url: str, exchange: str) -> None:
        self.exchange = exchange
        self.connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def send(
        self,
        message: dict[str, Any] | bytes,
        *,
        routing_key: str | None = None,
        user_id: str | None = None,
        content_type: str = CLOUDEVENTS_JSON,
        headers: dict[str, Any] | None = None,
        exchange: str | None = None,
    ) -> None:
        """Publish an event as JSON, or bytes as they are; routing key = the event's type unless given."""
        if isinstance(message, bytes):
            if routing_key is None:
                raise ValueError("bytes need a routing_key")
            body, key = message, routing_key
        else:
            body, key = as_body(message), message["type"] if routing_key is None else routing_key
        properties = pika.BasicProperties(content_type=content_type, delivery_mode=2, user_id=user_id, headers=headers)
        self.channel.basic_publish(
            self.exchange if exchange is None else exchange, key, body, properties, mandatory=True
        )

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def connect_producer(deployment: Deployment, *, broker_url: str | None = None) -> Producer:
    """A producer on the deployment's exchange, connected as the deployment's user unless ``broker_url`` says."""
    return Producer(broker_url or deployment.env["TIDINGS_BROKER_URL"], deployment.exchange)


def publish(deployment: Deployment, *messages: dict[str, Any] | bytes, **options: Any) -> None:
    """Publish each message in turn on one producer connection; ``options`` are Producer.send's."""
    with connect_producer(deployment) as producer:
        for message in messages:
            producer.send(message, **options)


def publish_event(
    deployment: Deployment, type: str, data: Any, *, user_id: str | None = None, **attributes: Any
) -> str:
    """Publish a new ``cloud_event(type, data, **attributes)`` as a producer does; its id."""
    event = cloud_event(type, data, **attributes)
    publish(deployment, event, user_id=user_id)
    return event["id"]


def publish_as_tidings(deployment: Deployment, *events: dict[str, Any]) -> None:
    """Publish each event in turn with Tidings' own Publisher, on one connection."""
    with Publisher(deployment.env["TIDINGS_BROKER_URL"], deployment.exchange) as publisher:
        for event in events:
            publisher.publish(event)


def publish_event_as_tidings(
    deployment: Deployment, type: str, data: dict[str, Any], *, source: str = "/tests", id: str | None = None
) -> str:
    """Publish a new ``build_event(type, data, ...)`` with Tidings' own Publisher; its id."""
    event = build_event(type, data, source=source, id=id)
    publish_as_tidings(deployment, event)
    return event["id"]


def publish_users_as_tidings(deployment: Deployment, users: Iterable[str]) -> None:
    """A tidings.user.upsert for each user, with the address <user>@example.com, published as Tidings."""
    upserts = (build_event("tidings.user.upsert", {"id": user, "email": f"{user}@example.com"}) for user in users)
    publish_as_tidings(deployment, *upserts)
