"""The worker entry point: ``dramatiq dispatcher.worker schedules`` (see Procfile).

One of the two modules that set things up when imported (schedules.py is the other): it loads
the configuration, builds the broker, declares the actors on it, and adds a boot hook that
migrates the schema and declares the exchange and the ingest binding in each worker process.
"""

from __future__ import annotations

import dramatiq
import dramatiq.errors
import pika.exceptions
import structlog

from dispatcher.amqp.rabbitmq import TidingsBroker
from dispatcher.amqp.topology import declare_topology
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import ConfigError
from dispatcher.core.settings import Settings, redact_url
from dispatcher.runtime.actors import declare_actors
from dispatcher.runtime.broker import build_broker, configure_process, load_configuration
from dispatcher.runtime.checks import ChannelCheckMiddleware
from dispatcher.runtime.group_metrics import add_group_metrics
from dispatcher.runtime.middleware import BootMiddleware
from dispatcher.storage.migrate import migrate_when_free


def boot(broker: TidingsBroker, settings: Settings, catalog: Catalog) -> None:
    """Get the database and RabbitMQ ready for this worker process."""
    before, after = migrate_when_free()
    try:
        declare_topology(broker, settings, catalog)
    except (dramatiq.errors.ConnectionError, pika.exceptions.AMQPError) as e:
        raise ConfigError(
            f"RabbitMQ is not reachable at {redact_url(settings.broker_url)} ({type(e).__name__}): start it "
            "(rabbitmq-server -detached, or your service manager) or point TIDINGS_BROKER_URL at it"
        ) from None
    structlog.get_logger("tidings").info(
        "worker_ready",
        broker=redact_url(settings.broker_url),
        database=redact_url(settings.database_url),
        smtp=redact_url(settings.smtp_url),
        schema_version=after,
        migrated_from=before if before != after else None,
        exchange=settings.exchange,
        queues=sorted(broker.get_declared_queues()),
    )


settings, catalog = load_configuration()
configure_process(settings)
broker = build_broker(settings)
dramatiq.set_broker(broker)
actors = declare_actors(broker, settings, catalog)
broker.add_middleware(BootMiddleware(lambda: boot(broker, settings, catalog)))
broker.add_middleware(ChannelCheckMiddleware(settings))  # warns once if this group's SMTP server is not there
add_group_metrics(broker)  # when the Procfile line sets dramatiq_prom_port (docs/metrics.md)

__all__ = ["actors", "boot", "broker", "catalog", "settings"]
