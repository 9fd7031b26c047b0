"""The one dramatiq broker. Every entry point imports this module first.

Middleware must be on the broker before any actor using its options is
declared (periodiq's ``periodic=`` included), hence one module, imported first.
"""

from __future__ import annotations

import sys

import dramatiq
import structlog
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker, xq_name
from dramatiq.middleware import CurrentMessage
from periodiq import PeriodiqMiddleware

from .catalog import Catalog, load_catalog
from .db import init_database
from .encoder import CloudEventEncoder
from .errors import ConfigError
from .logs import configure_logging, hide_message_payloads
from .middleware import DatabaseMiddleware, LogContextMiddleware
from .settings import Settings, get_settings


class TidingsBroker(RabbitmqBroker):
    """dramatiq's RabbitMQ broker, whose queues may be quorum queues (TIDINGS_QUEUE_TYPE=quorum).

    dramatiq declares classic queues only; quorum queues replicate across a RabbitMQ cluster.
    This overrides the two methods that build queue arguments (dramatiq is pinned to 2.2.1).
    A queue's type is fixed when it is first declared: to change it, use a new TIDINGS_NAMESPACE.
    """

    def __init__(self, *, queue_type: str = "classic", **options: object) -> None:
        super().__init__(**options)
        self.queue_type = queue_type

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


def _load() -> tuple[Settings, Catalog]:
    try:
        settings = get_settings()
        catalog = load_catalog(settings.catalog_path, settings.templates_dir)
    except ConfigError as e:
        # One clear line instead of a traceback from inside the dramatiq CLI.
        print(f"tidings: configuration error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    return settings, catalog


settings, catalog = _load()
configure_logging(settings.log_format, settings.log_level)
hide_message_payloads()
init_database(settings.database_url)

broker = TidingsBroker(url=settings.broker_url, confirm_delivery=True, queue_type=settings.queue_type)
broker.add_middleware(CurrentMessage())
broker.add_middleware(DatabaseMiddleware())
broker.add_middleware(LogContextMiddleware())
broker.add_middleware(PeriodiqMiddleware(skip_delay=60))
dramatiq.set_broker(broker)
dramatiq.set_encoder(
    CloudEventEncoder(ingest_queue=settings.queue("ingest"), max_event_bytes=settings.max_event_bytes)
)
structlog.get_logger("tidings").debug("broker_ready", namespace=settings.namespace)
