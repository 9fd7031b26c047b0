"""The dramatiq actors: ``ingest`` and one ``deliver_<channel>`` per registered channel.

Each channel has its own queue (<namespace>.<channel>), so a slow SMTP server
fills only the email queue. A delivery message carries a batch of delivery ids
(one event's recipients on one channel); a delivery that fails transiently is
retried on its own, by a delayed message of one id.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import dramatiq
import structlog
from dramatiq.common import xq_name
from dramatiq.middleware import CurrentMessage

from channels import REGISTRY, channel_class, load_channel
from dispatcher.amqp.intake import Envelope, readable_ids
from dispatcher.core import clock
from dispatcher.core.authority import Authority
from dispatcher.core.errors import InvalidEvent, PermanentError
from dispatcher.pipeline.admission import admit
from dispatcher.pipeline.delivery import Outcome, run_deliveries
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.rankings.ledger import INGEST_HOOKS
from dispatcher.runtime.broker import broker, catalog, settings
from dispatcher.storage.db import transaction
from dispatcher.storage.models import Rejection

log = structlog.get_logger("tidings.ingest")

RETRY_OPTIONS = {
    "max_retries": settings.retry_max,
    "min_backoff": int(settings.retry_min_backoff * 1000),
    "max_backoff": int(settings.retry_max_backoff * 1000),
}


AUTHORITY = Authority(settings.authorised_users)


@dramatiq.actor(actor_name="ingest", queue_name=settings.queue("ingest"), throws=(PermanentError,), **RETRY_OPTIONS)
def ingest(
    event: dict[str, Any] | None = None,
    error: str | None = None,
    envelope: dict[str, Any] | None = None,
    ids: dict[str, str] | None = None,
) -> None:
    """Admit an incoming CloudEvent (see admission.py), record it once, and fan out its deliveries.

    The ingest queue's consumer (broker.py) makes these messages from the bodies producers publish:
    ``event`` or ``error``, the AMQP ``envelope``, and ``ids`` read from a body refused before parsing.
    """
    read = Envelope(**envelope) if envelope else None
    try:
        if error is not None:
            raise InvalidEvent(error)
        if read is None:
            raise InvalidEvent("the message has no AMQP envelope: it was not made by the ingest queue's consumer")
        checked, sender = admit(event, read, catalog=catalog, settings=settings, authority=AUTHORITY)
    except InvalidEvent as e:
        _log_rejection(event, ids, read, e)
        raise
    structlog.contextvars.bind_contextvars(event_id=checked.id, event_type=checked.type, source=checked.source)
    try:
        result = ingest_event(checked, catalog, list(DELIVERY_ACTORS), sender=sender, hooks=INGEST_HOOKS)
    except InvalidEvent as e:  # a control command with bad data
        _log_rejection(event, ids, read, e)
        raise
    enqueue_deliveries(result.to_enqueue, result.due)
    log.info(
        f"event_{result.outcome}",
        recipients=result.recipients,
        enqueued=len(result.to_enqueue),
        publisher=sender.publisher,
    )


def _log_rejection(event: object, ids: dict[str, str] | None, envelope: Envelope | None, error: InvalidEvent) -> None:
    """Log why, and keep the reason for `tidings dlq` (the dead-lettered body cannot carry it)."""
    ids = readable_ids(event) or ids or {}
    message = CurrentMessage.get_current_message()
    queue = message.queue_name if message is not None else settings.queue("ingest")  # ingest_retry for a retry
    log.warning(
        "event_rejected",
        reason=str(error),
        dead_letter_queue=xq_name(queue),
        publisher=envelope.publisher if envelope else None,
        routing_key=envelope.routing_key[:200] if envelope and envelope.routing_key else None,
        **ids,
    )
    if message is not None:
        Rejection.insert(
            message_id=message.message_id,
            reason=str(error),
            event_id=ids.get("id"),
            type=ids.get("type"),
            source=ids.get("source"),
            rejected_at=clock.now(),
        ).on_conflict(
            conflict_target=[Rejection.message_id],
            update={Rejection.reason: str(error), Rejection.rejected_at: clock.now()},
        ).execute()


def _delivery_actor(name: str) -> dramatiq.Actor:
    channel = load_channel(name, settings)

    def deliver(delivery_ids: list[int]) -> None:
        message = CurrentMessage.get_current_message()
        assert message is not None, "the CurrentMessage middleware is on the broker"
        structlog.contextvars.bind_contextvars(channel=name)

        def run() -> dict[int, Outcome]:
            return run_deliveries(
                channel, delivery_ids, message_id=message.message_id, settings=settings, catalog=catalog
            )

        if channel.transactional:
            with transaction():
                outcomes = run()
        else:
            outcomes = run()
        for delivery_id, outcome in outcomes.items():
            if outcome.retry_in is not None and not outcome.held:
                actor.send_with_options(args=([delivery_id],), delay=math.ceil(outcome.retry_in * 1000))

    deliver.__name__ = deliver.__qualname__ = f"deliver_{name}"
    deliver.__doc__ = f"Deliver a batch of {name} deliveries, by id."
    actor: dramatiq.Actor = dramatiq.actor(
        deliver,
        actor_name=f"deliver_{name}",
        queue_name=settings.queue(name),
        priority=channel.priority,
        **RETRY_OPTIONS,
    )
    return actor


def enqueue_deliveries(deliveries: list[tuple[int, str]], due: Mapping[int, dt.datetime] | None = None) -> None:
    """Send (delivery id, channel) pairs to their channels' actors, a batch per message.

    A delivery in ``due`` (naive UTC) goes in a message delayed until then.
    """
    now = clock.now()
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for delivery_id, channel in deliveries:
        when = (due or {}).get(delivery_id)
        delay = max(0, math.ceil((when - now).total_seconds() * 1000)) if when else 0  # never before it is due
        groups[(channel, delay)].append(delivery_id)
    for (channel, delay), ids in groups.items():
        if channel not in DELIVERY_ACTORS:
            log.warning("channel_not_registered", channel=channel, deliveries=len(ids))
            continue
        size = channel_class(channel).batch_size
        for start in range(0, len(ids), size):
            DELIVERY_ACTORS[channel].send_with_options(args=(ids[start : start + size],), delay=delay or None)


#: Channel name -> its delivery actor, for every channel in the registry.
DELIVERY_ACTORS: dict[str, dramatiq.Actor] = {name: _delivery_actor(name) for name in REGISTRY}

__all__ = ["DELIVERY_ACTORS", "broker", "enqueue_deliveries", "ingest"]
