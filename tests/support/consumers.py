"""A consumer that holds a message without acknowledging it: what RabbitMQ counts as unacknowledged."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pika

from .wait import wait_for


@contextlib.contextmanager
def held_unacknowledged(broker_url: str, queue: str) -> Iterator[None]:
    """Declare ``queue``, publish one message to it and keep it delivered, unacknowledged, until the block
    ends (closing the connection then puts it back, ready)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        channel.basic_publish("", queue, b"held")
        channel.basic_qos(prefetch_count=1)
        delivered: list[bytes] = []
        channel.basic_consume(queue, lambda _ch, _method, _props, body: delivered.append(body), auto_ack=False)

        def received() -> bool:
            connection.process_data_events(0)
            return bool(delivered)

        wait_for(received, what=f"the delivery from {queue}")
        yield
    finally:
        if connection.is_open:
            connection.close()
