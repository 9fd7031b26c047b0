"""Building the dramatiq broker: the configuration an entry point loads, the broker and its middleware.

Nothing here runs at import: the entry points (dispatcher/worker.py, schedules.py) call these
functions, and so do tests and the embedded mode, with the broker they want. dramatiq's default
JSON encoder serves Tidings' own queues; the ingest queue, which producers reach through the
events exchange, has a consumer of its own (amqp/rabbitmq.py).
"""

from __future__ import annotations

import sys
from typing import TypeVar, overload

import dramatiq
from dramatiq.middleware import CurrentMessage
from periodiq import PeriodiqMiddleware

from channels import channel_classes, check_switches
from dispatcher.amqp.intake import Intake
from dispatcher.amqp.rabbitmq import TidingsBroker
from dispatcher.core.catalog import Catalog, load_catalog
from dispatcher.core.errors import ConfigError
from dispatcher.core.logs import configure_logging, hide_message_payloads
from dispatcher.core.settings import Settings, get_settings
from dispatcher.runtime.middleware import DatabaseMiddleware, LogContextMiddleware, PeriodicRunMiddleware
from dispatcher.storage.db import init_database


def load_configuration() -> tuple[Settings, Catalog]:
    """The settings and the catalog, for an entry point: a bad one stops the process with one clear line
    instead of a traceback from inside the dramatiq CLI."""
    try:
        settings = get_settings()
        check_switches(settings)
        catalog = load_catalog(settings.catalog_path, settings.templates_dir, channels=channel_classes())
    except ConfigError as e:
        print(f"tidings: configuration error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    return settings, catalog


BrokerT = TypeVar("BrokerT", bound=dramatiq.Broker)


@overload
def build_broker(settings: Settings) -> TidingsBroker: ...
@overload
def build_broker(settings: Settings, broker: BrokerT) -> BrokerT: ...
def build_broker(settings: Settings, broker: dramatiq.Broker | None = None) -> dramatiq.Broker:
    """The broker with Tidings' middleware: a RabbitMQ broker made from ``settings``, or ``broker`` (a StubBroker
    in tests and the embedded mode). Declare the actors on it afterwards (actors.declare_actors): middleware must
    be on a broker before an actor using its options (periodiq's ``periodic=``) is declared."""
    if broker is None:
        broker = TidingsBroker(
            url=settings.broker_url,
            confirm_delivery=True,
            queue_type=settings.queue_type,
            intake=Intake(ingest_queue=settings.queue("ingest"), max_event_bytes=settings.max_event_bytes),
            retry_queue=settings.queue("ingest_retry"),
            relays=frozenset({settings.broker_user}),
        )
        broker.declare_queue(settings.queue("ingest_retry"))
    for middleware in (
        CurrentMessage(),
        DatabaseMiddleware(),
        PeriodicRunMiddleware(),
        LogContextMiddleware(),
        PeriodiqMiddleware(skip_delay=60),
    ):
        broker.add_middleware(middleware)
    return broker


def configure_process(settings: Settings) -> None:
    """What an entry point sets up once: logging and the database."""
    configure_logging(settings.log_format, settings.log_level)
    hide_message_payloads()
    init_database(settings.database_url)
