"""A no-op dramatiq actor for ``bench.baselines.noop_dramatiq``: dramatiq's own cost per message.

    BENCH_NOOP_QUEUE=q BENCH_NOOP_OUT=/tmp/times dramatiq bench.noop_actor --processes 1 --threads 8

Each message appends one line, its time.time(), to BENCH_NOOP_OUT (one O_APPEND write: atomic,
a few microseconds), so the run's first and last message are timed exactly without a side channel.
"""

from __future__ import annotations

import os
import time

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

QUEUE = os.environ["BENCH_NOOP_QUEUE"]
OUT = os.open(os.environ["BENCH_NOOP_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

dramatiq.set_broker(RabbitmqBroker(url=os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")))


@dramatiq.actor(queue_name=QUEUE, actor_name="noop", max_retries=0)
def noop(i: int) -> None:
    os.write(OUT, b"%.6f\n" % time.time())
