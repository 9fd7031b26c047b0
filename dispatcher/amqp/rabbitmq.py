"""Tidings' RabbitMQ broker: the events exchange kept apart from Tidings' own messages.

Nothing here connects or configures anything at import; dispatcher/broker.py builds the one broker.
"""

from __future__ import annotations

from typing import Any

import pika.exceptions
from dramatiq.broker import Consumer
from dramatiq.brokers.rabbitmq import (
    DEAD_MESSAGE_TTL,
    RabbitmqBroker,
    _RabbitmqConsumer,
    _RabbitmqMessage,
    q_name,
    xq_name,
)
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from dispatcher.amqp.intake import Envelope, Intake


class TidingsBroker(RabbitmqBroker):
    """dramatiq's RabbitMQ broker, with the events exchange kept apart from Tidings' own messages.

    - The ingest queue, the one bound to the events exchange, is consumed by an
      :class:`IngestConsumer`: every body on it is a producer's, wrapped by
      :class:`~dispatcher.intake.Intake` whatever its shape.
    - Tidings' own messages for ``ingest`` (its retries) go to the internal
      ``<ns>.ingest_retry`` queue instead, which nothing binds to the exchange.
    - Queues may be quorum queues (TIDINGS_QUEUE_TYPE=quorum): dramatiq declares
      classic ones only, so the two methods that build queue arguments are overridden
      (dramatiq is pinned to 2.2.1). A queue's type is fixed when it is first declared.
    """

    def __init__(
        self,
        *,
        intake: Intake,
        retry_queue: str,
        relays: frozenset[str] = frozenset(),
        queue_type: str = "classic",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.intake = intake
        self.retry_queue = retry_queue
        self.relays = relays
        self.queue_type = queue_type

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        if queue_name != self.intake.ingest_queue:
            return super().consume(queue_name, prefetch, timeout)
        self.declare_queue(queue_name, ensure=True)
        return IngestConsumer(self, queue_name, prefetch, timeout)

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        if q_name(message.queue_name) == self.intake.ingest_queue:
            message = message.copy(queue_name=self.retry_queue)
        return super().enqueue(message, delay=delay)

    def _build_queue_arguments(self, queue_name: str) -> dict[str, object]:
        arguments = super()._build_queue_arguments(queue_name)
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        return arguments

    def _declare_xq_queue(self, queue_name: str) -> object:
        if self.queue_type != "quorum":
            return super()._declare_xq_queue(queue_name)
        arguments = {"x-message-ttl": DEAD_MESSAGE_TTL, "x-queue-type": "quorum"}
        return self.channel.queue_declare(queue=xq_name(queue_name), durable=True, arguments=arguments)


class IngestConsumer(_RabbitmqConsumer):
    """Consumes the ingest queue: each body becomes an ingest message, with its AMQP envelope.

    Mirrors dramatiq's ``_RabbitmqConsumer.__next__`` but for the decoding, which never
    passes a body through as a dramatiq message.
    """

    broker: TidingsBroker

    def __next__(self) -> _RabbitmqMessage | None:
        try:
            method, properties, body = next(self.iterator)
            if method is None:
                return None
        except (AssertionError, pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
            if getattr(e, "reply_code", None) == 404:  # the queue is gone: redeclare it when consuming again
                self.broker.queues_pending.add(q_name(self.queue_name))
            raise ConnectionClosed(e) from None
        envelope = Envelope.from_amqp(method.routing_key, properties, relays=self.broker.relays)
        message: Message[Any] = Message(**self.broker.intake.wrap(body or b"", envelope))
        self.known_tags.add(method.delivery_tag)
        return _RabbitmqMessage(method.redelivered, method.delivery_tag, message)
