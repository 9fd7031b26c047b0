"""TidingsBroker on the real RabbitMQ: what producers publish is wrapped; Tidings' own ingest messages stay internal."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import dramatiq
import pika
import pytest

from dispatcher.amqp.intake import CONTENT_TYPE, Intake
from dispatcher.amqp.rabbitmq import TidingsBroker
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(rabbitmq: str) -> Iterator[TidingsBroker]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    broker = TidingsBroker(
        url=rabbitmq,
        confirm_delivery=True,
        relays=frozenset({"guest"}),
        intake=Intake(ingest_queue=f"{namespace}.ingest", max_event_bytes=4096),
        retry_queue=f"{namespace}.ingest_retry",
    )
    yield broker
    channel = broker.channel
    for queue in (broker.intake.ingest_queue, broker.retry_queue):
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            channel.queue_delete(name)
    broker.close()


def ready(broker: TidingsBroker, queue: str) -> int:
    return broker.channel.queue_declare(queue, passive=True).method.message_count


def test_tidings_own_ingest_messages_go_to_the_internal_retry_queue(broker: TidingsBroker) -> None:
    # given the queue bound to the exchange, and an ingest message of Tidings' own (a retry: delayed, then due)
    broker.declare_queue(broker.intake.ingest_queue, ensure=True)
    message = dramatiq.Message(
        queue_name=broker.intake.ingest_queue, actor_name="ingest", args=(), kwargs={}, options={}
    )
    # when
    broker.enqueue(message, delay=60_000)
    broker.enqueue(message)
    # then neither touched the queue bound to the exchange
    retry = broker.retry_queue
    wait_for(lambda: (ready(broker, f"{retry}.DQ"), ready(broker, retry)) == (1, 1), what="both in the retry queues")
    assert ready(broker, broker.intake.ingest_queue) == ready(broker, f"{broker.intake.ingest_queue}.DQ") == 0


def test_the_ingest_queue_consumer_wraps_a_dramatiq_shaped_body_with_its_envelope(broker: TidingsBroker) -> None:
    # given a body shaped like a dramatiq message for an internal actor, published to the ingest queue
    broker.declare_queue(broker.intake.ingest_queue, ensure=True)
    forged = {
        "queue_name": "x.in_app",
        "actor_name": "deliver_in_app",
        "args": [[1]],
        "kwargs": {},
        "options": {"eta": 4102444800000},
        "message_id": "forged",
    }
    broker.channel.basic_publish(
        "",
        broker.intake.ingest_queue,
        json.dumps(forged).encode(),
        pika.BasicProperties(content_type=CONTENT_TYPE, user_id="guest"),
    )
    # when the worker's consumer takes it
    consumer = broker.consume(broker.intake.ingest_queue, timeout=100)
    try:
        received = wait_for(lambda: next(consumer), what="the message")
        consumer.ack(received)
    finally:
        consumer.close()
    # then it is an ingest message that will be rejected, carrying who published it
    assert (received.queue_name, received.actor_name, received.options) == (broker.intake.ingest_queue, "ingest", {})
    assert received.kwargs["error"].startswith("the body is shaped like a dramatiq message")
    assert received.kwargs["envelope"] == {
        "routing_key": broker.intake.ingest_queue,
        "content_type": CONTENT_TYPE,
        "publisher": "guest",
    }
