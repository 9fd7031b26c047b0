"""End to end: plain pika → RabbitMQ → the stock dramatiq worker → SQLite and a real SMTP server."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from typing import Any

import pytest

from dispatcher.core.settings import PROJECT_ROOT
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, InboxItem, Rejection, User
from tests.support.deployment import Deployment
from tests.support.events import INVITE_URL, as_body, cloud_event, invite, parsed_event
from tests.support.publishing import publish, publish_event
from tests.support.scheduler import run_schedules
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def given_users(deployment: Deployment) -> None:
    """ana gets email, bo turned email off for invites, cara was never upserted (by Tidings' own user, guest)."""
    publish_event(
        deployment, "tidings.user.upsert", {"id": "ana", "email": "ana@example.com", "name": "Ana"}, user_id="guest"
    )
    publish_event(deployment, "tidings.user.upsert", {"id": "bo", "email": "bo@example.com"}, user_id="guest")
    publish_event(
        deployment,
        "tidings.preferences.set",
        {"user": "bo", "preferences": [{"type": "team.invite.sent", "channel": "email", "enabled": False}]},
        user_id="guest",
    )
    wait_for(lambda: User.select().count() == 2, what="the users to be upserted")
    wait_for(
        lambda: Event.select().where(Event.type == "tidings.preferences.set").count() == 1,
        what="the preference to be applied",
    )


def json_log_lines(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_an_event_published_with_plain_pika_reaches_inboxes_and_the_smtp_server_within_a_second(
    running: Deployment, smtp_server: SmtpServer
) -> None:
    # given
    given_users(running)
    # when
    started = time.monotonic()
    event_id = publish_event(running, "team.invite.sent", invite(["ana", "bo", "cara"], url=INVITE_URL))
    # then: every recipient's inbox, and email as their preferences say
    deadline = started + 1.0
    wait_for(lambda: InboxItem.select().count() == 3, timeout=deadline - time.monotonic(), what="3 inbox rows")
    wait_for(lambda: len(smtp_server.messages) == 1, timeout=max(0.0, deadline - time.monotonic()), what="one email")
    [message] = smtp_server.messages
    assert message["To"] == "Ana <ana@example.com>"
    assert message.get_content_type() == "multipart/alternative"
    assert {p.get_content_type() for p in message.iter_parts()} == {"text/plain", "text/html"}
    items = {item.user_id: item for item in InboxItem.select()}
    assert set(items) == {"ana", "bo", "cara"}
    assert items["bo"].title == "Mira invited you to join Wolves"
    assert items["bo"].url == "https://play.example/invites/1"
    assert items["bo"].data["team_name"] == "Wolves" and "recipients" not in items["bo"].data
    wait_for(
        lambda: Delivery.select().where(Delivery.status.in_(DeliveryStatus.FINAL)).count() == 5,
        what="every delivery to finish",
    )
    outcomes = {(d.user_id, d.channel): (d.status, d.last_error) for d in Delivery.select()}
    assert outcomes == {
        ("ana", "in_app"): ("sent", None),
        ("ana", "email"): ("sent", None),
        ("bo", "in_app"): ("sent", None),
        ("cara", "in_app"): ("sent", None),
        ("cara", "email"): ("skipped", "unknown user: no tidings.user.upsert has named it"),
    }
    lines = json_log_lines(running.workers[0].log())
    accepted = [line for line in lines if line["event"] == "event_accepted"]
    assert [(line["event_id"], line["event_type"]) for line in accepted] == [(event_id, "team.invite.sent")]
    sent = [line for line in lines if line["event"] == "delivery_sent"]
    assert len(sent) == 4
    assert {(line["event_id"], line["event_type"]) for line in sent} == {(event_id, "team.invite.sent")}
    assert {(line["user_id"], line["channel"]) for line in sent} == {
        ("ana", "in_app"),
        ("ana", "email"),
        ("bo", "in_app"),
        ("cara", "in_app"),
    }


def test_republishing_the_same_event_changes_nothing(running: Deployment, smtp_server: SmtpServer) -> None:
    # given an event that was delivered
    given_users(running)
    event_id = publish_event(running, "team.invite.sent", invite(["ana"], url=INVITE_URL))
    wait_for(lambda: len(smtp_server.messages) == 1 and InboxItem.select().count() == 1, what="the first delivery")
    # when the producer publishes it again, then a new event after it
    publish_event(running, "team.invite.sent", invite(["ana"], url=INVITE_URL), id=event_id)
    later = publish_event(running, "team.invite.sent", invite(["ana"], url=INVITE_URL))
    # then only the new event adds anything
    wait_for(lambda: InboxItem.select().count() == 2 and len(smtp_server.messages) == 2, what="the later event")
    wait_for(lambda: '"event_duplicate"' in running.workers[0].log(), what="the duplicate to be recognised")
    assert Event.select().where(Event.type == "team.invite.sent").count() == 2
    assert sorted(Delivery.select(Event.event_id).join(Event).where(Delivery.channel == "email").tuples()) == sorted(
        [(event_id,), (later,)]
    )
    assert len(smtp_server.messages) == 2


def test_malformed_events_are_dead_lettered_with_a_reason_and_the_worker_keeps_serving(
    running: Deployment, smtp_server: SmtpServer
) -> None:
    # given
    bad = [
        b"not json at all",
        b"\xff\xfe\x00 invalid utf-8",
        b'["a", "list"]',
        b'{"specversion": "1.0", "source": "/tests", "type": "team.invite.sent", "data": {}}',
        as_body(cloud_event("team.invite.sent", invite("ana", url=INVITE_URL), id="r1")),
        as_body(cloud_event("team.invite.sent", {"recipients": ["ana"]}, id="r2")),
    ]
    # when
    publish(running, *bad, routing_key="team.invite.sent")
    publish_event(running, "team.invite.sent", invite(["ana"], url=INVITE_URL))
    # then
    wait_for(lambda: len(running.dead_letters()) == len(bad), what="every bad event in the dead-letter queue")
    assert sorted(running.dead_letters()) == sorted(bad)
    wait_for(lambda: InboxItem.select().count() == 1, what="the good event after the bad ones")
    reasons = [line["reason"] for line in json_log_lines(running.workers[0].log()) if line["event"] == "event_rejected"]
    assert sorted(r.reason for r in Rejection.select()) == sorted(reasons)  # kept for `tidings dlq`
    assert sorted(reasons) == sorted(
        [
            "the body is not JSON (Expecting value: line 1 column 1 (char 0))",
            "the body is not UTF-8",
            "the body is JSON but not an object (got list)",
            "id must be a non-empty string",
            "data.recipients must be a list of user id strings",
            "data lacks the keys team.invite.sent requires: team_name, inviter_name",
        ]
    )
    assert Event.select().where(Event.type == "team.invite.sent").count() == 1


def test_a_rejected_command_is_logged_without_its_personal_data(running: Deployment) -> None:
    # when
    publish_event(
        running,
        "tidings.user.upsert",
        {"id": "ana", "email": "hidden.person@example.com", "timezone": "Mars/Olympus"},
        user_id="guest",
    )
    # then
    wait_for(lambda: len(running.dead_letters()) == 1, what="the command in the dead-letter queue")
    log = running.workers[0].log()
    [rejected] = [line for line in json_log_lines(log) if line["event"] == "event_rejected"]
    assert rejected["reason"] == "timezone 'Mars/Olympus' is not an IANA time zone name"
    assert "hidden.person@example.com" not in log


def test_topic_subscribers_receive_an_event_sent_to_their_topic(running: Deployment) -> None:
    # given commands carrying their time: worker threads may apply them in any order, the later one wins
    publish_event(
        running,
        "tidings.topic.subscribe",
        {"topic": "team:7", "user": "ana"},
        time="2026-05-09T12:00:00Z",
        user_id="guest",
    )
    publish_event(
        running,
        "tidings.topic.subscribe",
        {"topic": "team:7", "user": "bo"},
        time="2026-05-09T12:00:01Z",
        user_id="guest",
    )
    publish_event(
        running,
        "tidings.topic.unsubscribe",
        {"topic": "team:7", "user": "bo"},
        time="2026-05-09T12:00:02Z",
        user_id="guest",
    )
    wait_for(lambda: Event.select().where(Event.type.startswith("tidings.topic")).count() == 3, what="commands")
    # when
    publish_event(
        running,
        "team.roster.changed",
        {"topic": "team:7", "recipients": ["cara"], "team_name": "Wolves", "player_name": "Dan", "change": "joined"},
    )
    # then
    wait_for(lambda: InboxItem.select().count() == 2, what="two inbox rows")
    assert {i.user_id for i in InboxItem.select()} == {"ana", "cara"}


def test_smtp_4xx_replies_are_retried_and_5xx_replies_fail_for_good(
    running: Deployment, smtp_server: SmtpServer
) -> None:
    # given
    given_users(running)
    smtp_server.reply_next("451 4.3.0 greylisted, try again", "452 4.2.2 mailbox full")
    # when
    first = publish_event(running, "team.invite.sent", invite(["ana"], url=INVITE_URL))
    wait_for(lambda: len(smtp_server.messages) == 1, what="the email after two transient failures")
    smtp_server.reply_next("550 5.1.1 no such user")
    second = publish_event(running, "team.invite.sent", invite(["ana"], url=INVITE_URL))

    # then
    def email_of(event_id: str) -> Delivery | None:
        return Delivery.select().join(Event).where(Event.event_id == event_id, Delivery.channel == "email").first()

    wait_for(lambda: getattr(email_of(second), "status", None) == "failed", what="the permanent failure")
    assert (email_of(first).status, email_of(first).attempts) == ("sent", 3)
    assert email_of(second).attempts == 1 and "550 5.1.1 no such user" in email_of(second).last_error
    assert len(smtp_server.messages) == 1


def test_the_periodic_sweep_delivers_what_a_lost_message_left_pending(running: Deployment, catalog) -> None:
    # given deliveries recorded an hour ago whose messages never reached RabbitMQ
    from dispatcher.core import clock
    from dispatcher.pipeline.ingest import ingest_event

    an_hour_ago = clock.now() - dt.timedelta(hours=1)
    event = parsed_event("team.invite.sent", invite(["ana"], url=INVITE_URL), id="lost-1")
    with clock.use_clock(lambda: an_hour_ago):
        ingest_event(event, catalog, ["in_app"])
    # when the scheduler's job is enqueued, as periodiq does every five minutes
    run_schedules(running, "requeue_stale_deliveries.send()")
    # then the worker runs it and the delivery is made
    wait_for(lambda: InboxItem.select().count() == 1, what="the swept delivery")
    assert [
        line["count"]
        for line in json_log_lines(running.workers[0].log())
        if line["event"] == "stale_deliveries_requeued"
    ] == [1]


def test_the_documented_pika_example_delivers_a_notification(running: Deployment) -> None:
    # given the example from docs/contract.md, pointed at this test's exchange and broker
    example = (PROJECT_ROOT / "docs" / "examples" / "publish_with_pika.py").read_text()
    example = example.replace('"events"', repr(running.exchange)).replace(
        "amqp://guest:guest@127.0.0.1:5672/%2F", running.env["TIDINGS_BROKER_URL"]
    )
    # when
    subprocess.run([sys.executable, "-c", example], check=True, timeout=60)
    # then
    wait_for(lambda: InboxItem.select().count() == 1, what="the example's notification")
    assert InboxItem.get().user_id == "user-42"


def test_the_flow_is_the_same_with_postgresql_as_the_database(
    deployment: Deployment, fresh_postgres_url: str, smtp_server: SmtpServer
) -> None:
    # given two worker processes sharing PostgreSQL (pooled connections, migrated at start)
    deployment.configure(TIDINGS_DATABASE_URL=fresh_postgres_url, TIDINGS_LOG_FORMAT="json")
    deployment.worker(processes=2).start()
    deployment.use_database()
    given_users(deployment)
    # when
    event_id = publish_event(deployment, "team.invite.sent", invite(["ana", "bo", "cara"], url=INVITE_URL))
    publish_event(deployment, "team.invite.sent", invite(["ana", "bo", "cara"], url=INVITE_URL), id=event_id)
    # then
    wait_for(lambda: InboxItem.select().count() == 3 and len(smtp_server.messages) == 1, what="the deliveries")
    wait_for(lambda: '"event_duplicate"' in deployment.workers[0].log(), what="the duplicate")
    wait_for(
        lambda: Delivery.select().where(Delivery.status.in_(DeliveryStatus.FINAL)).count() == 5,
        what="every delivery to finish",
    )
    assert len(smtp_server.messages) == 1 and InboxItem.select().count() == 3


def queue_types(deployment: Deployment) -> dict[str, str]:
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "type"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    rows = (line.split() for line in listing.splitlines())
    return {row[0]: row[1] for row in rows if len(row) == 2 and row[0].startswith(deployment.namespace + ".")}


def test_with_quorum_queues_events_flow_and_bad_ones_are_dead_lettered(
    deployment: Deployment, smtp_server: SmtpServer
) -> None:
    # given a deployment whose queues are quorum queues
    deployment.configure(TIDINGS_QUEUE_TYPE="quorum", TIDINGS_LOG_FORMAT="json")
    deployment.worker().start()
    deployment.use_database()
    given_users(deployment)
    # when
    publish_event(deployment, "team.invite.sent", invite(["ana"], url=INVITE_URL))
    publish(deployment, b"not json", routing_key="team.invite.sent")
    # then
    wait_for(lambda: InboxItem.select().count() == 1 and len(smtp_server.messages) == 1, what="the deliveries")
    wait_for(lambda: deployment.dead_letters() == [b"not json"], what="the dead letter")
    types = queue_types(deployment)
    for name in ("ingest", "ingest.DQ", "ingest.XQ", "in_app", "email"):
        assert types[f"{deployment.namespace}.{name}"] == "quorum", name
