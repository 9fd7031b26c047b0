"""The one dramatiq broker. Every entry point imports this module first.

Middleware must be on the broker before any actor using its options is
declared (periodiq's ``periodic=`` included), hence one module, imported first.
"""

from __future__ import annotations

import sys

import dramatiq
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import CurrentMessage
from periodiq import PeriodiqMiddleware

from .catalog import Catalog, load_catalog
from .db import init_database
from .encoder import CloudEventEncoder
from .errors import ConfigError
from .logs import configure_logging, hide_message_payloads
from .middleware import DatabaseMiddleware, LogContextMiddleware
from .settings import Settings, get_settings


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

broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
broker.add_middleware(CurrentMessage())
broker.add_middleware(DatabaseMiddleware())
broker.add_middleware(LogContextMiddleware())
broker.add_middleware(PeriodiqMiddleware(skip_delay=60))
dramatiq.set_broker(broker)
dramatiq.set_encoder(
    CloudEventEncoder(ingest_queue=settings.queue("ingest"), max_event_bytes=settings.max_event_bytes)
)
structlog.get_logger("tidings").debug("broker_ready", namespace=settings.namespace)
