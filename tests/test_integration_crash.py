"""A worker killed with SIGKILL mid-burst and restarted loses no event and duplicates no row."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from dispatcher.amqp.publisher import build_event
from dispatcher.storage.models import Delivery, Event, InboxItem, User
from tests.support.deliveries import finished, inbox_copies
from tests.support.deployment import Deployment
from tests.support.events import invite
from tests.support.publishing import publish_as_tidings, publish_users_as_tidings
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 1000
USERS = ["ana", "bo", "cara"]
THREADS = 8


def test_a_worker_killed_with_sigkill_mid_burst_and_restarted_loses_no_event(
    deployment: Deployment, smtp_server: SmtpServer
) -> None:
    # given a worker and three users with email addresses
    worker = deployment.worker(threads=THREADS).start()
    deployment.use_database()
    publish_users_as_tidings(deployment, USERS)
    wait_for(lambda: User.select().count() == 3, what="the users")

    # when a burst is published and the worker is killed twice in the middle of it
    ids = [f"burst-{n}" for n in range(EVENTS)]

    def burst() -> None:
        events = (build_event("team.invite.sent", invite(USERS), id=i, source="/burst") for i in ids)
        publish_as_tidings(deployment, *events)

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
    assert inbox_copies() == {1}
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
