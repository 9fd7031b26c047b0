"""The one dramatiq broker. Every entry point imports this module first.

dramatiq's default JSON encoder serves Tidings' own queues; the ingest queue,
which producers reach through the events exchange, has a consumer of its own
(rabbitmq.py).

Middleware must be on the broker before any actor using its options is
declared (periodiq's ``periodic=`` included), hence one module, imported first.
"""

from __future__ import annotations

import sys

import dramatiq
import structlog
from dramatiq.middleware import CurrentMessage
from periodiq import PeriodiqMiddleware

from dispatcher.amqp.intake import Intake
from dispatcher.amqp.rabbitmq import TidingsBroker
from dispatcher.core.catalog import Catalog, load_catalog
from dispatcher.core.errors import ConfigError
from dispatcher.core.logs import configure_logging, hide_message_payloads
from dispatcher.core.settings import Settings, get_settings
from dispatcher.runtime.middleware import DatabaseMiddleware, LogContextMiddleware
from dispatcher.storage.db import init_database


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

broker = TidingsBroker(
    url=settings.broker_url,
    confirm_delivery=True,
    queue_type=settings.queue_type,
    intake=Intake(ingest_queue=settings.queue("ingest"), max_event_bytes=settings.max_event_bytes),
    retry_queue=settings.queue("ingest_retry"),
    relays=frozenset({settings.broker_user}),
)
broker.declare_queue(settings.queue("ingest_retry"))
broker.add_middleware(CurrentMessage())
broker.add_middleware(DatabaseMiddleware())
broker.add_middleware(LogContextMiddleware())
broker.add_middleware(PeriodiqMiddleware(skip_delay=60))
dramatiq.set_broker(broker)
structlog.get_logger("tidings").debug("broker_ready", namespace=settings.namespace)
