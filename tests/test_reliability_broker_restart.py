"""RabbitMQ stopped and started in the middle of a burst: workers reconnect by themselves, nothing is lost.

The outage is on a private RabbitMQ node of this test's own (tests/support/rabbit_node.py), never on the
machine's shared broker: the deployment, its workers and the producer all use that node.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pika.exceptions
import pytest

from dispatcher.amqp.publisher import Publisher, PublishError, build_event
from dispatcher.storage.models import Delivery, Event, InboxItem, User
from tests.support.deliveries import finished
from tests.support.deployment import Deployment
from tests.support.events import invite
from tests.support.publishing import publish_users_as_tidings
from tests.support.rabbit_node import PrivateRabbitNode
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 300
USERS = ["ana", "bo", "cara"]


@pytest.fixture
def node() -> Iterator[PrivateRabbitNode]:
    """A RabbitMQ node of this test's own, stopped and its directory removed afterwards."""
    with PrivateRabbitNode() as node:
        print(f"\nprivate RabbitMQ node {node.name} on port {node.port} up in {node.started_in:.1f} s")
        yield node


@pytest.fixture
def deployment(tmp_path: Path, node: PrivateRabbitNode, smtp_server: SmtpServer) -> Iterator[Deployment]:
    """The deployment on the private node (this overrides conftest's, which uses the shared broker)."""
    deployment = Deployment(tmp_path, node.url, smtp_server.port)
    yield deployment
    if not node.app_running:  # the test failed during the outage: teardown deletes queues on the node
        node.start_app()
    deployment.teardown()


def broker_up(url: str) -> bool:
    try:
        Publisher(url, "amq.topic").close()
        return True
    except PublishError:
        return False


def publish_until_confirmed(url: str, exchange: str, events: list[dict], *, pace: float) -> int:
    """A producer that uses confirms: on any failure it reconnects and publishes the same event again."""
    retries, index, publisher = 0, 0, None
    while index < len(events):
        try:
            publisher = publisher or Publisher(url, exchange)
            publisher.publish(events[index])
            index += 1
            time.sleep(pace)  # a steady producer, so that the burst spans the outage
        except (PublishError, pika.exceptions.AMQPError):
            retries += 1
            publisher = None
            time.sleep(0.2)  # a producer's reconnect back-off, not a test wait
    if publisher:
        publisher.close()
    return retries


def test_workers_reconnect_after_a_broker_restart_and_nothing_is_lost(
    deployment: Deployment, node: PrivateRabbitNode, smtp_server: SmtpServer
) -> None:
    # given a worker, three users, and a producer publishing a burst with confirms
    url = deployment.env["TIDINGS_BROKER_URL"]
    assert url == node.url
    deployment.worker(threads=8).start()
    deployment.use_database()
    publish_users_as_tidings(deployment, USERS)
    wait_for(lambda: User.select().count() == 3, what="the users")
    events = [
        build_event("team.invite.sent", invite(USERS, team_name="Owls"), id=f"burst-{n}", source="/burst")
        for n in range(EVENTS)
    ]
    outcome: dict[str, int] = {}
    producer = threading.Thread(
        target=lambda: outcome.update(retries=publish_until_confirmed(url, deployment.exchange, events, pace=0.02))
    )
    producer.start()
    # when RabbitMQ's application (on the private node) stops mid-burst, and starts again
    wait_for(lambda: Event.select().where(Event.source == "/burst").count() >= 30, timeout=30, what="the burst")
    node.stop_app()
    stopped_at = time.monotonic()
    processed_when_stopped = Event.select().where(Event.source == "/burst").count()
    wait_for(lambda: time.monotonic() - stopped_at >= 3, timeout=10, interval=0.1, what="3 s of outage")
    node.start_app()
    wait_for(lambda: broker_up(url), timeout=60, interval=0.5, what="RabbitMQ to be back")
    outage = time.monotonic() - stopped_at
    producer.join(timeout=180)
    # then the workers carried on by themselves, and every delivery happened once
    wait_for(
        lambda: finished("in_app") == EVENTS * 3 and finished("email") == EVENTS * 3,
        timeout=240,
        what="every delivery after the restart",
    )
    assert processed_when_stopped < EVENTS and outcome["retries"] > 0, "the outage came too late to test anything"
    assert Event.select().where(Event.source == "/burst").count() == EVENTS
    assert InboxItem.select().count() == EVENTS * 3
    assert Counter(d.status for d in Delivery.select().join(Event).where(Event.source == "/burst")) == {
        "sent": EVENTS * 6
    }
    message_ids = Counter(m["Message-ID"] for m in smtp_server.messages)
    duplicates = sum(n - 1 for n in message_ids.values())
    print(
        f"\nbroker down {outage:.1f} s after {processed_when_stopped} of {EVENTS} events; producer retries "
        f"{outcome.get('retries')}; duplicate emails {duplicates}"
    )
    assert len(message_ids) == EVENTS * 3
    assert duplicates <= 8
    assert deployment.workers[0].proc.poll() is None, "the worker stayed up through the restart"
