"""SIGTERM lets in-flight deliveries finish and acknowledges nothing unfinished."""

from __future__ import annotations

import time
from collections import Counter
from email.message import EmailMessage

import pika
import pytest

from dispatcher.amqp.publisher import build_event
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, User
from tests.support.deployment import Deployment
from tests.support.events import invite
from tests.support.publishing import publish_as_tidings, publish_users_as_tidings
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = ["ana", "bo", "cara"]
EVENTS = 6  # one email message each, a batch of three deliveries
THREADS = 4
SMTP_DELAY = 3.0  # seconds the server takes per message


def delivery_id(message: EmailMessage) -> int:
    """The delivery id in a Tidings Message-ID, <tidings.<delivery id>.<digest>@domain>."""
    return int(str(message["Message-ID"]).strip("<>").split(".")[1])


def emails(status: str) -> set[int]:
    return {d.id for d in Delivery.select(Delivery.id).where(Delivery.channel == "email", Delivery.status == status)}


def ready_messages(deployment: Deployment, queue: str) -> int:
    """Messages waiting in the queue, none of them held by a consumer."""
    connection = pika.BlockingConnection(pika.URLParameters(deployment.env["TIDINGS_BROKER_URL"]))
    try:
        return connection.channel().queue_declare(deployment.settings.queue(queue), passive=True).method.message_count
    finally:
        connection.close()


def test_sigterm_lets_in_flight_emails_finish_and_leaves_the_rest_queued_for_the_next_worker(
    deployment: Deployment, smtp_server: SmtpServer
) -> None:
    # given a worker with four threads, and an SMTP server taking 3 s per message
    worker = deployment.worker(threads=THREADS).start()
    deployment.use_database()
    publish_users_as_tidings(deployment, USERS)
    wait_for(lambda: User.select().count() == len(USERS), what="the users")
    smtp_server.handler.delay = SMTP_DELAY
    # and more email messages than threads, every thread in the middle of a batch
    invites = (
        build_event("team.invite.sent", invite(USERS, team_name=f"Team {n}"), source="/shutdown") for n in range(EVENTS)
    )
    publish_as_tidings(deployment, *invites)
    wait_for(
        lambda: len(emails(DeliveryStatus.SENDING)) == THREADS * len(USERS),
        timeout=10,
        what="every thread to be sending a batch",
    )
    assert Event.select().where(Event.source == "/shutdown").count() == EVENTS

    # when the worker gets SIGTERM
    in_flight = emails(DeliveryStatus.SENDING)
    received_before = len(smtp_server.messages)
    stopping = time.monotonic()
    worker.stop()
    stopped_in = time.monotonic() - stopping

    # then it exits cleanly once its in-flight batches are done (three emails of 3 s at most)
    assert worker.proc is not None and worker.proc.returncode == 0, worker.log()[-3000:]
    assert stopped_in < len(USERS) * SMTP_DELAY + 10
    # and every in-flight email was sent and recorded, and nothing else was started
    sent = emails(DeliveryStatus.SENT)
    assert in_flight <= sent
    assert {delivery_id(m) for m in smtp_server.messages} == sent
    assert emails(DeliveryStatus.SENDING) == set()
    unfinished = Delivery.select().where(Delivery.channel == "email", Delivery.status == DeliveryStatus.PENDING)
    assert {d.attempts for d in unfinished} <= {0}
    # and the unfinished messages are back in the queue, acknowledged by no one
    waiting = len({d.event_id for d in unfinished})
    assert waiting > 0, "every message was done before the signal: nothing left to test"
    wait_for(lambda: ready_messages(deployment, "email") == waiting, timeout=5, what="the unfinished messages requeued")

    # when a worker starts again
    worker.start()

    # then every remaining email goes out, and none twice
    wait_for(
        lambda: len(emails(DeliveryStatus.SENT)) == EVENTS * len(USERS),
        timeout=30,
        interval=0.1,
        what="every email after the restart",
    )
    message_ids = Counter(m["Message-ID"] for m in smtp_server.messages)
    assert len(message_ids) == EVENTS * len(USERS) and set(message_ids.values()) == {1}
    print(
        f"\nSIGTERM with {len(in_flight)} emails in flight ({received_before} of them received by then): "
        f"the worker exited 0 after {stopped_in:.1f} s, having sent {len(sent)}; {waiting} messages "
        f"({EVENTS * len(USERS) - len(sent)} emails) left in the queue, all sent once after the restart"
    )
