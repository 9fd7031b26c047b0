"""The dramatiq actors: ``ingest`` and one ``deliver_<channel>`` per registered channel.

Each channel has its own queue (<namespace>.<channel>), so a slow SMTP server
fills only the email queue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import CurrentMessage

from channels import REGISTRY, load_channel

from .broker import broker, catalog, settings
from .delivery import run_delivery
from .errors import DeliveryError, InvalidEvent, PermanentError
from .events import decode_body, parse_event
from .ingest import ingest_event

log = structlog.get_logger("tidings.ingest")

RETRY_OPTIONS = {
    "max_retries": settings.retry_max,
    "min_backoff": int(settings.retry_min_backoff * 1000),
    "max_backoff": int(settings.retry_max_backoff * 1000),
}


@dramatiq.actor(actor_name="ingest", queue_name=settings.queue("ingest"), throws=(PermanentError,), **RETRY_OPTIONS)
def ingest(event: dict[str, Any] | None = None, error: str | None = None) -> None:
    """Validate an incoming CloudEvent, record it once, and fan out its deliveries."""
    try:
        if error is not None:
            raise InvalidEvent(error)
        if not isinstance(event, dict):
            raise InvalidEvent("the body is not a JSON object")
        checked = parse_event(event, catalog)
    except InvalidEvent as e:
        _log_rejection(event, e)
        raise
    structlog.contextvars.bind_contextvars(event_id=checked.id, event_type=checked.type, source=checked.source)
    try:
        result = ingest_event(checked, catalog, list(DELIVERY_ACTORS))
    except InvalidEvent as e:  # a control command with bad data
        _log_rejection(event, e)
        raise
    for delivery_id, channel in result.to_enqueue:
        DELIVERY_ACTORS[channel].send(delivery_id)
    log.info(f"event_{result.outcome}", recipients=result.recipients, enqueued=len(result.to_enqueue))


def _log_rejection(event: object, error: InvalidEvent) -> None:
    ids = {}
    if isinstance(event, dict):
        ids = {k: str(event.get(k))[:200] for k in ("id", "type", "source") if k in event}
    log.warning("event_rejected", reason=str(error), dead_letter_queue=settings.queue("ingest") + ".XQ", **ids)


def _delivery_actor(name: str) -> dramatiq.Actor:
    channel = load_channel(name, settings)

    def deliver(delivery_id: int) -> None:
        message = CurrentMessage.get_current_message()
        assert message is not None, "the CurrentMessage middleware is on the broker"
        retries = message.options.get("retries", 0)
        structlog.contextvars.bind_contextvars(channel=name, delivery_id=delivery_id)
        try:
            run_delivery(
                channel,
                delivery_id,
                message_id=message.message_id,
                final_attempt=retries >= settings.retry_max,
                settings=settings,
                catalog=catalog,
            )
        except DeliveryError as e:
            if e.retry_after is not None:
                raise dramatiq.Retry(str(e), delay=int(e.retry_after * 1000)) from e
            raise

    deliver.__name__ = deliver.__qualname__ = f"deliver_{name}"
    deliver.__doc__ = f"Deliver one {name} delivery by id."
    actor: Callable[..., Any] = dramatiq.actor(
        actor_name=f"deliver_{name}", queue_name=settings.queue(name), priority=channel.priority, **RETRY_OPTIONS
    )
    return actor(deliver)


#: Channel name -> its delivery actor, for every channel in the registry.
DELIVERY_ACTORS: dict[str, dramatiq.Actor] = {name: _delivery_actor(name) for name in REGISTRY}

__all__ = ["DELIVERY_ACTORS", "broker", "ingest"]
