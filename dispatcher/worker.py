"""The worker entry point: ``dramatiq dispatcher.worker schedules`` (see Procfile).

Imports the broker first, then every actor; at process boot it migrates the
schema and declares the exchange and the ingest binding.
"""

from __future__ import annotations

import dramatiq.errors
import pika.exceptions
import structlog

from dispatcher.amqp.topology import declare_topology
from dispatcher.core.errors import ConfigError
from dispatcher.core.settings import redact_url
from dispatcher.runtime.actors import DELIVERY_ACTORS, ingest
from dispatcher.runtime.broker import broker, catalog, settings
from dispatcher.runtime.middleware import BootMiddleware
from dispatcher.storage.migrate import migrate_when_free


def boot() -> None:
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


broker.add_middleware(BootMiddleware(boot))

__all__ = ["DELIVERY_ACTORS", "boot", "broker", "ingest"]
