"""The dramatiq actors: ``ingest`` and one ``deliver_<channel>`` per registered channel, declared by a function.

Each channel has its own queue (<namespace>.<channel>), so a slow SMTP server
fills only the email queue. A delivery message carries a batch of delivery ids
(one event's recipients on one channel); a delivery that fails transiently is
retried on its own, by a delayed message of one id.

:func:`declare_actors` declares them on the broker it is given (build it with
runtime.broker.build_broker first), so tests and the embedded mode can use a StubBroker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import dramatiq
import structlog
from dramatiq.common import xq_name
from dramatiq.middleware import CurrentMessage

from channels import REGISTRY, Channel, load_channel
from dispatcher.amqp.intake import Envelope, readable_ids
from dispatcher.commands.registry import HANDLERS
from dispatcher.core import clock, metrics
from dispatcher.core.authority import Authority
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidEvent, PermanentError
from dispatcher.core.settings import Settings
from dispatcher.pipeline.admission import admit
from dispatcher.pipeline.delivery import Outcome, run_deliveries
from dispatcher.pipeline.ingest import IngestResult, ingest_event, publish_announcements
from dispatcher.rankings.notices import INGEST_HOOKS
from dispatcher.storage.db import is_sqlite, transaction
from dispatcher.storage.group_commit import GroupCommit
from dispatcher.storage.models import Rejection

log = structlog.get_logger("tidings.ingest")


@dataclasses.dataclass(frozen=True)
class Actors:
    """The actors declared on one broker, and what sends delivery messages to them."""

    settings: Settings
    ingest: dramatiq.Actor
    deliveries: dict[str, dramatiq.Actor]  # channel name -> its delivery actor
    channels: dict[str, Channel]

    def enqueue_deliveries(
        self, deliveries: list[tuple[int, str]], due: Mapping[int, dt.datetime] | None = None
    ) -> None:
        """Send (delivery id, channel) pairs to their channels' actors, a batch per message.

        A delivery in ``due`` (naive UTC) goes in a message delayed until then (never before it).
        """
        now = clock.now()
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for delivery_id, channel in deliveries:
            when = (due or {}).get(delivery_id)
            delay = max(0, math.ceil((when - now).total_seconds() * 1000)) if when else 0
            groups[(channel, delay)].append(delivery_id)
        for (channel, delay), ids in groups.items():
            if channel not in self.deliveries:
                log.warning("channel_not_registered", channel=channel, deliveries=len(ids))
                continue
            size = self.channels[channel].batch_size
            for start in range(0, len(ids), size):
                self.deliveries[channel].send_with_options(args=(ids[start : start + size],), delay=delay or None)


def retry_options(settings: Settings) -> dict[str, Any]:
    """dramatiq's retry options from TIDINGS_RETRY_*."""
    return {
        "max_retries": settings.retry_max,
        "min_backoff": int(settings.retry_min_backoff * 1000),
        "max_backoff": int(settings.retry_max_backoff * 1000),
    }


def declare_actors(
    broker: dramatiq.Broker,
    settings: Settings,
    catalog: Catalog,
    *,
    channels: Mapping[str, Channel] | None = None,
) -> Actors:
    """Declare ``ingest`` and a delivery actor per channel on ``broker``.

    ``channels``: the channel instances by name (default: one of each registered channel).
    """
    chosen = dict(channels) if channels is not None else {name: load_channel(name, settings) for name in REGISTRY}
    authority = Authority(settings.authorised_users)
    deliveries: dict[str, dramatiq.Actor] = {}
    #: Delivered inside ingest's own transaction when due now (pipeline/ingest.py): the channels that only write rows.
    inline = {name: channel for name, channel in chosen.items() if channel.transactional}
    known_types = frozenset(catalog.types) | frozenset(HANDLERS)  # metric labels: no producer's free text
    writer = GroupCommit(name="tidings-ingest-writer")

    def count(kind: object, outcome: str) -> None:
        metrics.count_event(kind if isinstance(kind, str) and kind in known_types else "other", outcome)

    def ingest(
        event: dict[str, Any] | None = None,
        error: str | None = None,
        envelope: dict[str, Any] | None = None,
        ids: dict[str, str] | None = None,
    ) -> None:
        """Admit an incoming CloudEvent (see admission.py), record it once, and fan out its deliveries.

        The ingest queue's consumer (amqp/rabbitmq.py) makes these messages from the bodies producers
        publish: ``event`` or ``error``, the AMQP ``envelope``, and ``ids`` read from a body refused
        before parsing.
        """
        read = Envelope(**envelope) if envelope else None
        try:
            if error is not None:
                raise InvalidEvent(error)
            if read is None:
                raise InvalidEvent("the message has no AMQP envelope: it was not made by the ingest queue's consumer")
            checked, sender = admit(event, read, catalog=catalog, settings=settings, authority=authority)
        except InvalidEvent as e:
            _log_rejection(event, ids, read, e, settings)
            count((readable_ids(event) or ids or {}).get("type"), "rejected")
            raise
        structlog.contextvars.bind_contextvars(event_id=checked.id, event_type=checked.type, source=checked.source)

        def record() -> IngestResult:
            return ingest_event(
                checked, catalog, list(deliveries), sender=sender, hooks=INGEST_HOOKS, inline=inline, settings=settings
            )

        try:
            # SQLite takes one writer at a time: this process's ingest threads share one (storage/group_commit.py)
            result = writer.run(record) if is_sqlite() else record()
        except InvalidEvent as e:  # a control command with bad data
            _log_rejection(event, ids, read, e, settings)
            count(checked.type, "rejected")
            raise
        count(checked.type, result.outcome)
        actors.enqueue_deliveries(result.to_enqueue, result.due)
        publish_announcements(result, settings)
        log.info(
            f"event_{result.outcome}",
            recipients=result.recipients,
            enqueued=len(result.to_enqueue),
            publisher=sender.publisher,
        )

    ingest_actor = dramatiq.actor(
        actor_name="ingest",
        queue_name=settings.queue("ingest"),
        broker=broker,
        throws=(PermanentError,),
        **retry_options(settings),
    )(ingest)
    for name, channel in chosen.items():
        deliveries[name] = _delivery_actor(broker, settings, catalog, name, channel)
    actors = Actors(settings=settings, ingest=ingest_actor, deliveries=deliveries, channels=chosen)
    return actors


def _log_rejection(
    event: object, ids: dict[str, str] | None, envelope: Envelope | None, error: InvalidEvent, settings: Settings
) -> None:
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


def _delivery_actor(
    broker: dramatiq.Broker, settings: Settings, catalog: Catalog, name: str, channel: Channel
) -> dramatiq.Actor:
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
    actor: dramatiq.Actor[[list[int]], None] = dramatiq.actor(
        actor_name=f"deliver_{name}",
        queue_name=settings.queue(name),
        broker=broker,
        priority=channel.priority,
        **retry_options(settings),
    )(deliver)
    return actor
