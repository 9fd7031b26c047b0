"""The actors on dramatiq's StubBroker: what ingest does with a message, how deliveries are sent and retried.

In process, in milliseconds; the same actors run on RabbitMQ in the integration tests.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import dramatiq
import peewee
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name

from channels.base import Channel, Notification
from channels.in_app import InAppChannel
from dispatcher.amqp.intake import CONTENT_TYPE, Envelope, Intake
from dispatcher.core import clock
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import DeliveryError
from dispatcher.core.settings import Settings
from dispatcher.runtime.actors import Actors, declare_actors
from dispatcher.runtime.periodic import declare_periodic_jobs
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, InboxItem, Rejection
from tests.support.events import cloud_event
from tests.support.events import invite as invite_data


class Enqueued(dramatiq.Middleware):
    """Records every message enqueued: (queue name, args, delay in ms)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, tuple[Any, ...], int | None]] = []

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        self.messages.append((message.queue_name, tuple(message.args), delay))


class SmallBatchInApp(InAppChannel):
    """in_app with batches of 3, so that a fan-out shows its split; not transactional, so that ingest leaves
    its deliveries to messages instead of delivering them in its own transaction."""

    batch_size = 3
    transactional = False


class FlakyInApp(Channel):
    """Fails the first attempt of each delivery transiently, then records it as delivered."""

    name = "in_app"
    batch_size = 10

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.attempts: dict[int, int] = {}
        self.lock = threading.Lock()

    def deliver(self, notification: Notification) -> None:
        with self.lock:
            self.attempts[notification.delivery_id] = self.attempts.get(notification.delivery_id, 0) + 1
            if self.attempts[notification.delivery_id] == 1:
                raise DeliveryError("451 try again later")


def ingest_message(
    stub_settings: Settings, event: dict[str, Any], *, routing_key: str | None = None
) -> dramatiq.Message:
    """What the ingest queue's consumer makes of an event published by an anonymous producer."""
    intake = Intake(ingest_queue=stub_settings.queue("ingest"), max_event_bytes=stub_settings.max_event_bytes)
    envelope = Envelope(routing_key=routing_key or event.get("type"), content_type=CONTENT_TYPE)
    return dramatiq.Message(**intake.wrap(json.dumps(event).encode(), envelope))


def invite(*recipients: str, **attributes: Any) -> dict[str, Any]:
    """Mira invites ``recipients`` to Owls; ``attributes`` replace top-level attributes, data included."""
    data = invite_data(list(recipients), team_name="Owls")
    return {**cloud_event("team.invite.sent", data, id="inv-1", source="/teams"), **attributes}


def declare(stub_broker: StubBroker, stub_settings: Settings, catalog: Catalog, channel: Channel) -> Actors:
    return declare_actors(stub_broker, stub_settings, catalog, channels={"in_app": channel})


def test_a_rejected_event_is_dead_lettered_with_its_reason_stored(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, stub_settings: Settings, catalog: Catalog
) -> None:
    # given
    declare(stub_broker, stub_settings, catalog, InAppChannel(stub_settings))
    message = ingest_message(stub_settings, invite("ana"), routing_key="match.completed")

    # when
    stub_broker.enqueue(message)
    stub_broker.join(stub_settings.queue("ingest"), fail_fast=False)
    stub_worker.join()

    # then
    [dead] = stub_broker.dead_letters
    assert dead.message_id == message.message_id
    reason = Rejection.get(Rejection.message_id == message.message_id).reason
    assert (
        reason == "the routing key 'match.completed' is not the event's type 'team.invite.sent': publish each "
        "event with routing key = type"
    )
    assert Delivery.select().count() == 0


def test_a_fan_out_is_split_into_messages_of_the_channels_batch_size(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, stub_settings: Settings, catalog: Catalog
) -> None:
    # given
    enqueued = Enqueued()
    stub_broker.add_middleware(enqueued)
    declare(stub_broker, stub_settings, catalog, SmallBatchInApp(stub_settings))
    users = [f"u{i}" for i in range(7)]

    # when
    stub_broker.enqueue(ingest_message(stub_settings, invite(*users)))
    stub_broker.join(stub_settings.queue("ingest"))
    stub_broker.join(stub_settings.queue("in_app"))
    stub_worker.join()

    # then: 7 in-app deliveries in messages of 3, 3 and 1 ids, each delivered once
    batches = [args[0] for queue, args, _ in enqueued.messages if queue == stub_settings.queue("in_app")]
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert sorted(i for batch in batches for i in batch) == sorted(
        d.id for d in Delivery.select().where(Delivery.channel == "in_app")
    )
    assert sorted(item.user_id for item in InboxItem.select()) == users


def test_in_app_rows_due_now_commit_with_the_event_and_need_no_message(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, stub_settings: Settings, catalog: Catalog
) -> None:
    # given
    enqueued = Enqueued()
    stub_broker.add_middleware(enqueued)
    declare(stub_broker, stub_settings, catalog, InAppChannel(stub_settings))
    users = [f"u{i}" for i in range(7)]

    # when
    stub_broker.enqueue(ingest_message(stub_settings, invite(*users)))
    stub_broker.join(stub_settings.queue("ingest"))
    stub_worker.join()

    # then: every row is there, sent by ingest itself, and no in-app message was sent
    assert [queue for queue, _, _ in enqueued.messages if queue == stub_settings.queue("in_app")] == []
    assert sorted(item.user_id for item in InboxItem.select()) == users
    sent = Delivery.select().where(Delivery.channel == "in_app", Delivery.status == DeliveryStatus.SENT)
    assert sent.count() == 7 and {d.claimed_by for d in sent} == {f"ingest:{Delivery.get().event_id}"}
    assert {d.attempts for d in sent} == {1}


def test_an_in_app_row_keeps_its_link_apart_from_its_text(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, stub_settings: Settings, catalog: Catalog
) -> None:
    # given an invitation with a link
    declare(stub_broker, stub_settings, catalog, InAppChannel(stub_settings))
    event = invite("ana")
    event["data"]["url"] = "https://play.example/invites/7"

    # when
    stub_broker.enqueue(ingest_message(stub_settings, event))
    stub_broker.join(stub_settings.queue("ingest"))
    stub_worker.join()

    # then the row links there, and its text does not end with the email's "View invitation: <url>" line
    [item] = InboxItem.select()
    assert item.url == "https://play.example/invites/7"
    assert item.body == "Mira invited you to join the team Owls. Open the invitation to accept or decline it."


def test_an_in_app_row_that_cannot_be_written_rolls_the_whole_ingest_back_for_a_retry(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, stub_settings: Settings, catalog: Catalog
) -> None:
    # given an in-app channel whose first write fails with a database error
    class FailingOnce(InAppChannel):
        failures = 1

        def deliver_all(self, notifications: list[Notification]) -> None:
            if FailingOnce.failures:
                FailingOnce.failures -= 1
                raise peewee.OperationalError("database is locked")
            super().deliver_all(notifications)

    declare(stub_broker, stub_settings, catalog, FailingOnce(stub_settings))

    # when
    stub_broker.enqueue(ingest_message(stub_settings, invite("ana", "bo")))
    stub_broker.join(stub_settings.queue("ingest"))
    stub_worker.join()

    # then: the first attempt left nothing (no event, no delivery, no row); the retry did it all once
    assert Event.select().count() == 1
    assert sorted(item.user_id for item in InboxItem.select()) == ["ana", "bo"]
    assert {d.status for d in Delivery.select().where(Delivery.channel == "in_app")} == {DeliveryStatus.SENT}


def test_a_transient_failure_sends_a_delayed_message_of_one_id(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, stub_settings: Settings, catalog: Catalog
) -> None:
    # given a channel failing each delivery once
    enqueued = Enqueued()
    stub_broker.add_middleware(enqueued)
    channel = FlakyInApp(stub_settings)
    declare(stub_broker, stub_settings, catalog, channel)

    # when an event for two users is ingested and delivered
    stub_broker.enqueue(ingest_message(stub_settings, invite("ana", "bo")))
    stub_broker.join(stub_settings.queue("ingest"))
    stub_broker.join(stub_settings.queue("in_app"))
    stub_worker.join()

    # then the batch of two failed, and each delivery was retried alone, in a delayed message, then sent
    in_app = stub_settings.queue("in_app")
    # (a retry due comes back to the queue from its .DQ: those copies are single ids too)
    [(_, (first_batch,), first_delay), *moved_back] = [m for m in enqueued.messages if m[0] == in_app]
    assert first_delay is None and len(first_batch) == 2
    assert sorted(args for _, args, _ in moved_back) == sorted(([delivery_id],) for delivery_id in first_batch)
    retries = [m for m in enqueued.messages if m[0] == dq_name(in_app)]
    assert sorted(args for _, args, _ in retries) == sorted(([delivery_id],) for delivery_id in first_batch)
    assert all(delay is not None and delay > 0 for _, _, delay in retries)
    assert {d.status for d in Delivery.select()} == {DeliveryStatus.SENT}
    assert channel.attempts == {delivery_id: 2 for delivery_id in first_batch}


def test_the_release_job_sends_a_due_held_delivery_in_a_message_delayed_to_its_time(
    stub_broker: StubBroker, stub_settings: Settings, catalog: Catalog
) -> None:
    # given a delivery held in the database, due at 12:02, and the periodic jobs on the stub broker
    enqueued = Enqueued()
    stub_broker.add_middleware(enqueued)
    actors = declare(stub_broker, stub_settings, catalog, InAppChannel(stub_settings))
    jobs = declare_periodic_jobs(stub_broker, stub_settings, catalog, actors)
    noon = dt.datetime(2026, 5, 9, 12, 0)
    event = invite(
        "ana",
        data={"recipients": ["ana"], "team_name": "Owls", "inviter_name": "Mira", "deliver_at": "2026-05-09T12:02:00Z"},
        time="2026-05-09T12:00:00Z",
    )
    with clock.use_clock(lambda: noon):
        actors.ingest.fn(
            event=event, envelope=Envelope(routing_key=event["type"], content_type=CONTENT_TYPE).as_kwargs()
        )
    assert Delivery.get().held is True

    # when the job runs at 12:00 (too early: outside its 90 s window), then at 12:00:30
    with clock.use_clock(lambda: noon):
        jobs.release_held_deliveries.fn()
    early = list(enqueued.messages)
    with clock.use_clock(lambda: noon + dt.timedelta(seconds=30)):
        jobs.release_held_deliveries.fn()

    # then nothing at first, then one message delayed by the 90 s left
    assert early == []
    [(queue, (ids,), delay)] = enqueued.messages
    assert (queue, ids, delay) == (dq_name(stub_settings.queue("in_app")), [Delivery.get().id], 90_000)
    assert Delivery.get().held is False


@pytest.mark.parametrize("job", ["clean_up", "rankings_tick"])
def test_a_daily_job_runs_once_a_day_however_many_schedulers_enqueue_it(
    stub_broker: StubBroker, stub_settings: Settings, catalog: Catalog, job: str
) -> None:
    # given the periodic jobs, and a day
    enqueued = Enqueued()
    stub_broker.add_middleware(enqueued)
    jobs = declare_periodic_jobs(
        stub_broker, stub_settings, catalog, declare(stub_broker, stub_settings, catalog, InAppChannel(stub_settings))
    )
    day = dt.datetime(2026, 5, 9, 3, 17)

    # when two schedulers enqueue it the same day, and once the next day
    with clock.use_clock(lambda: day):
        getattr(jobs, job).fn()
        getattr(jobs, job).fn()
    with clock.use_clock(lambda: day + dt.timedelta(days=1)):
        getattr(jobs, job).fn()

    # then it did its work once per day: for rankings, one recompute message per day
    if job == "rankings_tick":
        assert [queue for queue, _, _ in enqueued.messages] == [stub_settings.queue("maintenance")] * 2
    from dispatcher.storage.models import JobRun

    assert JobRun.select().where(JobRun.job == ("clean_up" if job == "clean_up" else "rankings")).count() == 2
