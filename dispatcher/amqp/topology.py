"""The RabbitMQ objects Tidings owns: the events exchange and its ingest binding."""

from __future__ import annotations

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from dispatcher.core.catalog import CONTROL_PREFIX, Catalog
from dispatcher.core.settings import Settings


def routing_keys(catalog: Catalog) -> list[str]:
    """What the ingest queue is bound to: every catalog type, and the control commands."""
    return [*catalog.public_names(), CONTROL_PREFIX + "#"]


def declare_topology(broker: RabbitmqBroker, settings: Settings, catalog: Catalog) -> None:
    """Declare the exchange and the ingest queue, and bind them; idempotent."""
    ingest = settings.queue("ingest")
    broker.declare_queue(ingest, ensure=True)
    channel = broker.channel
    channel.exchange_declare(exchange=settings.exchange, exchange_type="topic", durable=True)
    for key in routing_keys(catalog):
        channel.queue_bind(queue=ingest, exchange=settings.exchange, routing_key=key)
