"""A worker killed with SIGKILL mid-burst and restarted loses no event and duplicates no row."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from peewee import fn

from dispatcher.amqp.publisher import Publisher, build_event
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, InboxItem, User
from tests.support.deployment import Deployment
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 1000
USERS = ["ana", "bo", "cara"]
THREADS = 8


def finished(channel: str) -> int:
    return Delivery.select().where(Delivery.channel == channel, Delivery.status.in_(DeliveryStatus.FINAL)).count()


def test_a_worker_killed_with_sigkill_mid_burst_and_restarted_loses_no_event(
    deployment: Deployment, smtp_server: SmtpServer
) -> None:
    # given a worker and three users with email addresses
    worker = deployment.worker(threads=THREADS).start()
    deployment.use_database()
    publisher = Publisher(deployment.env["TIDINGS_BROKER_URL"], deployment.exchange)
    for user in USERS:
        publisher.publish(build_event("tidings.user.upsert", {"id": user, "email": f"{user}@example.com"}))
    wait_for(lambda: User.select().count() == 3, what="the users")

    # when a burst is published and the worker is killed twice in the middle of it
    ids = [f"burst-{n}" for n in range(EVENTS)]

    def burst() -> None:
        with Publisher(deployment.env["TIDINGS_BROKER_URL"], deployment.exchange) as p:
            for event_id in ids:
                p.publish(
                    build_event(
                        "team.invite.sent",
                        {"recipients": USERS, "team_name": "Wolves", "inviter_name": "Mira"},
                        id=event_id,
                        source="/burst",
                    )
                )

    producer = threading.Thread(target=burst)
    producer.start()
    wait_for(
        lambda: Event.select().where(Event.source == "/burst").count() >= 50,
        timeout=30,
        what="the burst to be under way",
    )
    worker.kill()  # first while events are being ingested
    killed_in_ingest = Event.select().where(Event.source == "/burst").count()
    producer.join(timeout=120)
    worker.start()
    wait_for(lambda: finished("email") >= EVENTS, timeout=120, what="emails to be under way")
    worker.kill()  # then while emails are being sent
    killed_in_email = finished("email")
    worker.start()

    # then every event is processed, every in-app row exists once and every email was sent
    wait_for(
        lambda: finished("in_app") == EVENTS * 3 and finished("email") == EVENTS * 3,
        timeout=300,
        what="every delivery to finish after the restart",
    )
    assert killed_in_ingest < EVENTS and killed_in_email < EVENTS * 3, "a kill came too late to test anything"
    assert Event.select().where(Event.source == "/burst").count() == EVENTS
    assert InboxItem.select().count() == EVENTS * 3
    per_user_event = (
        InboxItem.select(InboxItem.user_id, Delivery.event, fn.COUNT(InboxItem.id))
        .join(Delivery)
        .group_by(InboxItem.user_id, Delivery.event)
        .tuples()
    )
    assert {count for _, _, count in per_user_event} == {1}
    statuses = Counter(d.status for d in Delivery.select())
    assert statuses == {"sent": EVENTS * 6}
    message_ids = Counter(m["Message-ID"] for m in smtp_server.messages)
    assert len(message_ids) == EVENTS * 3, "every email delivery reached the SMTP server"
    # An email whose SMTP transaction finished just before the kill, but whose
    # "sent" was never recorded, goes out again: at most one per busy thread per kill.
    duplicates = sum(count - 1 for count in message_ids.values())
    print(
        f"\nkilled after {killed_in_ingest} of {EVENTS} events, then after {killed_in_email} of {EVENTS * 3} "
        f"emails; duplicate emails: {duplicates}"
    )
    assert duplicates <= 2 * THREADS
