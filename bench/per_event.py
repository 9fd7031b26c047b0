"""The CPU one event costs, in this process, one thread, no broker: ingest (with its in-app rows) and email.

    .venv/bin/python -m bench.per_event [--events N] [--database-url URL] [--profile]

Declares the actors on dramatiq's StubBroker (as the tests and the embedded mode do), upserts 3 users,
then calls the ingest actor's function N times with payout.received events for them, and after that the
email actor's function for each email message ingest enqueued, against bench/lean_smtp.py's server in a
thread. Reported: CPU milliseconds per event for ingest and per email for the sender (time.process_time,
which counts every thread of the process: the SMTP server's too, so the email figure includes it).
``--profile`` prints cProfile's top functions of each phase (cProfile inflates Python-heavy code such as
peewee's query building; py-spy on a real worker is the fairer picture, see bench/README.md).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import pstats
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dramatiq
from dramatiq.brokers.stub import StubBroker

from bench.lean_smtp import LeanSmtpServer

USERS = ["u0", "u1", "u2"]


def timed(work: Callable[[], None], profile: bool) -> float:
    """CPU seconds ``work`` took; with ``profile``, its cProfile summary printed."""
    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    work()
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--database-url", help="default: a new SQLite file")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-per-event-") as tmp, LeanSmtpServer() as smtp:
        os.environ.update(
            {
                "TIDINGS_DATABASE_URL": args.database_url or f"sqlite:///{Path(tmp) / 'tidings.db'}",
                "TIDINGS_NAMESPACE": "per_event",
                "TIDINGS_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
                "TIDINGS_LOG_FORMAT": "json",
                "TIDINGS_LOG_LEVEL": "warning",
            }
        )
        from dispatcher.amqp.publisher import build_event
        from dispatcher.runtime.actors import declare_actors
        from dispatcher.runtime.broker import build_broker, configure_process, load_configuration
        from dispatcher.storage.migrate import migrate
        from dispatcher.storage.models import Delivery, User

        settings, catalog = load_configuration()
        configure_process(settings)
        migrate()
        broker = build_broker(settings, StubBroker())
        broker.emit_after("process_boot")
        dramatiq.set_broker(broker)
        actors = declare_actors(broker, settings, catalog)
        for i, user in enumerate(USERS):
            User.insert(
                id=user, email=f"{user}@bench.test", name=f"User {i}", changed_at=dt.datetime(2026, 1, 1)
            ).execute()
        envelope = {"routing_key": "payout.received", "content_type": "application/cloudevents+json", "publisher": None}
        events = [
            build_event(
                "payout.received", {"recipients": USERS, "amount": i, "currency": "EUR"}, source="/bench", id=f"e{i}"
            )
            for i in range(args.events)
        ]

        def ingest_all() -> None:
            for event in events:
                actors.ingest.fn(event=event, envelope=envelope)

        ingest_seconds = timed(ingest_all, args.profile)
        queue = broker.queues[settings.queue("email")]
        messages = [dramatiq.Message.decode(queue.get_nowait()) for _ in range(queue.qsize())]
        current = dramatiq.middleware.CurrentMessage

        def email_all() -> None:
            for message in messages:
                current._MESSAGE.set(message)
                actors.deliveries["email"].fn(*message.args)

        email_seconds = timed(email_all, args.profile)
        emails = args.events * len(USERS)
        statuses = Counter((d.channel, d.status) for d in Delivery.select(Delivery.channel, Delivery.status))
        if statuses != Counter({("in_app", "sent"): emails, ("email", "sent"): emails}) or smtp.count() != emails:
            print(f"bench: FAILED: deliveries {dict(statuses)}, SMTP server holds {smtp.count()}", file=sys.stderr)
            return 1
        print(f"ingest, with 3 in-app rows: {ingest_seconds / args.events * 1000:.2f} ms CPU per event")
        print(f"email (the SMTP server's share included): {email_seconds / emails * 1000:.2f} ms CPU per email")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
