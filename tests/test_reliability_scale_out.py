"""Scale-out: two groups of worker processes, as if on two hosts, sharing PostgreSQL and RabbitMQ.

One host is killed with SIGKILL in the middle of a burst while the other carries on, then it comes
back: the guarantees hold as with one worker (see test_integration_crash.py).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from peewee import fn

from dispatcher.amqp.publisher import build_event
from dispatcher.storage.migrate import SCHEMA_VERSION
from dispatcher.storage.models import Delivery, Event, InboxItem, SchemaVersion, User
from tests.support.deliveries import finished, inbox_copies
from tests.support.deployment import Deployment
from tests.support.events import invite
from tests.support.publishing import publish_as_tidings, publish_users_as_tidings
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 300
USERS = ["ana", "bo", "cara"]
PROCESSES, THREADS = 2, 4  # per host


def log_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a worker group's log (dramatiq's own lines are not JSON)."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    return lines


def test_two_hosts_sharing_postgresql_and_rabbitmq_keep_the_guarantees_when_one_is_killed_mid_burst(
    fresh_postgres_url: str, deployment: Deployment, smtp_server: SmtpServer
) -> None:
    # given two hosts of two worker processes each, started together on an empty PostgreSQL database
    deployment.configure(TIDINGS_DATABASE_URL=fresh_postgres_url, TIDINGS_LOG_FORMAT="json")
    host_a = deployment.worker(processes=PROCESSES, threads=THREADS)
    host_b = deployment.worker(processes=PROCESSES, threads=THREADS)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(WorkerProcess.start, [host_a, host_b]))
    deployment.use_database()
    publish_users_as_tidings(deployment, USERS)
    wait_for(lambda: User.select().count() == len(USERS), what="the users")

    # when a burst comes in, and host A is killed while both ingest and email are busy
    ids = [f"burst-{n}" for n in range(EVENTS)]

    def publish(event_ids: list[str]) -> None:
        events = (build_event("team.invite.sent", invite(USERS), id=i, source="/burst") for i in event_ids)
        publish_as_tidings(deployment, *events)

    publish(ids[: EVENTS // 2])
    wait_for(lambda: finished("email") >= 30, timeout=60, what="emails to be under way")
    producer = threading.Thread(target=publish, args=(ids[EVENTS // 2 :],))
    producer.start()
    burst_events = Event.select().where(Event.source == "/burst")
    wait_for(lambda: burst_events.count() >= EVENTS // 2 + 20, timeout=60, what="the second half to be under way")
    host_a.kill()
    killed_at = (burst_events.count(), finished("in_app"), finished("email"))
    # (while host B carries on alone)
    wait_for(
        lambda: finished("in_app") + finished("email") >= killed_at[1] + killed_at[2] + 300,
        timeout=60,
        what="host B to carry on alone",
    )
    producer.join(timeout=60)
    host_a.start()

    # then every event is processed once, every in-app row exists once and every email was sent
    wait_for(
        lambda: finished("in_app") == EVENTS * 3 and finished("email") == EVENTS * 3,
        timeout=120,
        interval=0.2,
        what="every delivery to finish",
    )
    assert killed_at[0] < EVENTS and killed_at[2] < EVENTS * 3, "the kill came too late to test anything"
    assert burst_events.count() == EVENTS
    per_event = Delivery.select(Delivery.event, fn.COUNT(Delivery.id)).group_by(Delivery.event).tuples()
    assert Counter(n for _, n in per_event if n) == {6: EVENTS}
    assert InboxItem.select().count() == EVENTS * 3
    assert inbox_copies() == {1}
    assert Counter(d.status for d in Delivery.select()) == {"sent": EVENTS * 6}
    message_ids = Counter(m["Message-ID"] for m in smtp_server.messages)
    assert len(message_ids) == EVENTS * 3, "every email delivery reached the SMTP server"
    lines = log_lines(host_a.log_path) + log_lines(host_b.log_path)
    accepted = Counter(line.get("event_id") for line in lines if line.get("event") == "event_accepted")
    assert set(accepted.values()) == {1} and set(accepted) <= set(ids), "no event fanned out twice"
    # and the schema was migrated once, by one of the four processes that raced for it
    assert [row.version for row in SchemaVersion.select()] == [SCHEMA_VERSION]
    ready = [line for line in lines if line.get("event") == "worker_ready"]
    assert len(ready) == PROCESSES * 3, "two hosts, one of them twice"
    assert [line["migrated_from"] for line in ready if line.get("migrated_from") is not None] == [0]
    # An email accepted by the SMTP server just before the kill, but not yet recorded, goes out again
    # (with the same Message-ID): at most one per busy thread of the killed host.
    duplicates = sum(n - 1 for n in message_ids.values())
    print(
        f"\nhost A killed after {killed_at[0]} of {EVENTS} events ingested, {killed_at[1]} in-app rows and "
        f"{killed_at[2]} emails; {len(accepted)} events accepted in the logs, each once; duplicate emails: "
        f"{duplicates} (at most {PROCESSES * THREADS})"
    )
    assert duplicates <= PROCESSES * THREADS
