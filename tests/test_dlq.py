"""`tidings dlq`, in-process, against the real RabbitMQ and a real worker."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pika
import pytest

from dispatcher.amqp.publisher import Publisher
from dispatcher.cli.dlq import SWEEP_NOTE
from dispatcher.cli.main import main
from dispatcher.storage.models import InboxItem, Rejection
from tests.support.deployment import Deployment
from tests.support.events import INVITE_URL, as_body, cloud_event, invite
from tests.support.publishing import publish
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def dlq(capsys: pytest.CaptureFixture[str], deployment: Deployment, *argv: str) -> tuple[int, str, str]:
    code = main(["dlq", *argv], settings=deployment.settings)
    out, err = capsys.readouterr()
    return code, out, err


def publish_raw_as_tidings(deployment: Deployment, routing_key: str, body: bytes) -> None:
    with Publisher(deployment.settings.broker_url, deployment.exchange) as publisher:
        publisher.publish_raw(body, routing_key=routing_key)


def xq_name(deployment: Deployment, queue: str = "ingest") -> str:
    return deployment.settings.queue(queue) + ".XQ"


def xq_bodies(deployment: Deployment, queue: str = "ingest") -> list[bytes]:
    """Every body in the XQ, head first, handed back in place."""
    connection = pika.BlockingConnection(pika.URLParameters(deployment.settings.broker_url))
    channel = connection.channel()
    bodies, tag = [], 0
    while True:
        method, _, body = channel.basic_get(xq_name(deployment, queue), auto_ack=False)
        if method is None:
            break
        bodies.append(body)
        tag = method.delivery_tag
    if tag:
        channel.basic_nack(tag, multiple=True, requeue=True)
    connection.close()
    return bodies


def put_in_xq(
    deployment: Deployment,
    body: bytes,
    queue: str = "ingest",
    routing_key: str = "team.invite.sent",
    exchange: str | None = None,
) -> None:
    """What RabbitMQ does when dramatiq nacks a message: the body, with an x-death header, in Q.XQ."""
    death = {
        "count": 1,
        "reason": "rejected",
        "queue": deployment.settings.queue(queue),
        "time": dt.datetime.now(dt.UTC).replace(microsecond=0),
        "exchange": deployment.exchange if exchange is None else exchange,
        "routing-keys": [routing_key],
    }
    publish(deployment, body, exchange="", routing_key=xq_name(deployment, queue), headers={"x-death": [death]})


def log_events(deployment: Deployment, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in deployment.workers[0].log().splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == name]


def given_rejected(deployment: Deployment, *bodies: tuple[str, bytes]) -> None:
    for routing_key, body in bodies:
        publish_raw_as_tidings(deployment, routing_key, body)
    wait_for(lambda: len(xq_bodies(deployment)) == len(bodies), what="the events in the dead-letter queue")
    assert Rejection.select().count() == len(bodies)


def test_list_shows_each_rejected_event_with_its_reason_and_routing_key_and_consumes_nothing(
    capsys, running: Deployment
) -> None:
    # given three events the worker rejected, one a command carrying a webhook secret
    secret = "whsec_" + "A" * 32
    given_rejected(
        running,
        ("team.invite.sent", as_body(cloud_event("team.invite.sent", {"recipients": ["ana"]}, id="r1"))),
        ("match.scheduled", b"not json at all"),
        (
            "tidings.webhook.upsert",
            json.dumps(
                {
                    "data": {"secret": secret, "id": "h1", "url": "ftp://x"},
                    "type": "tidings.webhook.upsert",
                    "id": "c1",
                    "specversion": "1.0",
                    "source": "/tests",
                }
            ).encode(),
        ),
    )
    before = xq_bodies(running)
    # when
    code, out, _ = dlq(capsys, running, "list", "--json")
    text_code, text, _ = dlq(capsys, running, "list", "--limit", "2")
    # then every event is listed in the queue's order (the worker's threads set it), with the reason ingest gave
    listed = json.loads(out)
    assert (code, text_code, listed["total"], listed["queue"]) == (0, 0, 3, xq_name(running))
    rows = listed["dead_letters"]
    assert [r["size"] for r in rows] == [len(body) for body in before]
    assert {(r["routing_key"], r["exchange"], r["deaths"]) for r in rows} == {
        ("team.invite.sent", running.exchange, 1),
        ("match.scheduled", running.exchange, 1),
        ("tidings.webhook.upsert", running.exchange, 1),
    }
    reasons = {r.message_id: r.reason for r in Rejection.select()}
    assert [r["reason"] for r in rows] == [reasons[r["message_id"]] for r in rows]
    by_key = {r["routing_key"]: r for r in rows}
    assert by_key["team.invite.sent"]["reason"] == (
        "data lacks the keys team.invite.sent requires: team_name, inviter_name"
    )
    assert by_key["team.invite.sent"]["preview"].startswith('{"specversion": "1.0", "id": "r1"')
    assert by_key["match.scheduled"]["reason"].startswith("the body is not JSON")
    assert by_key["match.scheduled"]["preview"] == "not json at all"
    assert all(r["dead_lettered_at"].endswith("Z") for r in rows)
    # and the text form names reasons, shows two of three, and never the secret
    assert f"{xq_name(running)}: 3 dead letters, the oldest 2 shown" in text
    assert sum(r["reason"] in text for r in rows) == 2
    assert secret not in out + text and '"secret": "***"' in by_key["tidings.webhook.upsert"]["preview"]
    # and the queue holds the same messages in the same order
    assert xq_bodies(running) == before


def test_show_prints_the_whole_body_and_its_reason(capsys, running: Deployment) -> None:
    # given
    body = as_body(cloud_event("team.invite.sent", {"recipients": ["ana"], "note": "x" * 200}, id="long-1"))
    given_rejected(running, ("team.invite.sent", body))
    [row] = json.loads(dlq(capsys, running, "list", "--json")[1])["dead_letters"]
    # when
    code, out, _ = dlq(capsys, running, "show", row["message_id"])
    [shown] = json.loads(dlq(capsys, running, "show", row["message_id"], "--json")[1])
    # then
    assert code == 0 and json.dumps(json.loads(body), indent=2) in out
    assert "reason: data lacks the keys team.invite.sent requires" in out and "routing key: team.invite.sent" in out
    assert (shown["body_format"], shown["body"]) == ("json", json.loads(body))
    code, _, err = dlq(capsys, running, "show", "no-such-id")
    assert (code, err) == (
        1,
        "tidings: error: no dead letter has message id 'no-such-id' (`tidings dlq list` shows them)\n",
    )
    assert len(xq_bodies(running)) == 1


def test_replaying_an_event_still_invalid_puts_it_back_with_its_reason_and_delivers_nothing(
    capsys, running: Deployment
) -> None:
    # given
    body = as_body(cloud_event("team.invite.sent", {"recipients": ["ana"]}, id="bad-1"))
    given_rejected(running, ("team.invite.sent", body))
    [row] = json.loads(dlq(capsys, running, "list", "--json")[1])["dead_letters"]
    # when
    code, out, _ = dlq(capsys, running, "replay", row["message_id"])
    # then it went through ingest again and came back, rejected for the same reason
    assert code == 0 and f"replayed  {row['message_id']}  team.invite.sent" in out and "replayed 1 of 1" in out
    wait_for(lambda: len(log_events(running, "event_rejected")) == 2, what="the second rejection")
    wait_for(lambda: len(xq_bodies(running)) == 1, what="the event back in the dead-letter queue")
    [again] = json.loads(dlq(capsys, running, "list", "--json")[1])["dead_letters"]
    assert (again["message_id"], again["reason"]) == (row["message_id"], row["reason"])
    assert InboxItem.select().count() == 0


def test_a_valid_dead_letter_is_delivered_once_however_often_it_is_replayed(
    capsys, caplog: pytest.LogCaptureFixture, running: Deployment
) -> None:
    # given a valid event dead-lettered as RabbitMQ does it
    body = as_body(cloud_event("team.invite.sent", invite(url=INVITE_URL), id="ok-1"))
    put_in_xq(running, body)
    # when
    code, out, _ = dlq(capsys, running, "replay", "--all")
    # then
    assert code == 0 and "replayed 1 of 1" in out
    wait_for(lambda: InboxItem.select().count() == 1, what="the replayed event's inbox row")
    assert xq_bodies(running) == []
    # when the same body is dead-lettered and replayed once more
    put_in_xq(running, body)
    assert dlq(capsys, running, "replay", "--all")[0] == 0
    # then ingest sees a duplicate and nothing more is delivered
    wait_for(lambda: log_events(running, "event_duplicate"), what="the duplicate to be recognised")
    assert InboxItem.select().count() == 1 and xq_bodies(running) == []
    assert "PRECONDITION_FAILED" not in caplog.text  # nothing acked twice, no channel closed on us


def test_a_dead_letter_that_cannot_be_published_stays_in_the_queue(capsys, running: Deployment) -> None:
    # given a letter whose routing key nothing is bound to any more
    put_in_xq(running, as_body(cloud_event("team.renamed", {"recipients": ["ana"]})), routing_key="team.renamed")
    # when
    code, out, err = dlq(capsys, running, "replay", "--all")
    # then
    assert code == 1 and "left" in out and "no queue is bound for routing key 'team.renamed'" in out
    assert err == f"tidings: error: 1 could not be published again and stay in {xq_name(running)}\n"
    assert len(xq_bodies(running)) == 1


def test_purge_refuses_without_yes_then_empties_the_queue(capsys, running: Deployment) -> None:
    # given
    given_rejected(running, ("team.invite.sent", b"[1]"), ("team.invite.sent", b"[2]"))
    # when
    code, _, err = dlq(capsys, running, "purge")
    # then
    assert code == 1 and err == (
        f"tidings: error: purge deletes the 2 messages in {xq_name(running)} for good: add --yes to do it\n"
    )
    assert len(xq_bodies(running)) == 2
    # when
    code, out, _ = dlq(capsys, running, "purge", "--yes")
    # then
    assert (code, out) == (0, f"purged 2 messages from {xq_name(running)}\n")
    assert xq_bodies(running) == []


def test_list_counts_the_other_dead_letter_queues_and_show_prints_a_dead_delivery_message(
    capsys, running: Deployment
) -> None:
    # given a delivery message whose retries ran out (once the worker's consumer declared the queue)
    def email_xq_declared() -> bool:
        counts = json.loads(dlq(capsys, running, "list", "--json")[1])["dead_letter_queues"]
        return counts[xq_name(running, "email")] is not None

    wait_for(email_xq_declared, what="the email queues to be declared")
    message_id = str(uuid.uuid4())
    traceback = "Traceback (most recent call last):\n  ...\ndispatcher.errors.DeliveryError: SMTP 451\n"
    message = {
        "queue_name": running.settings.queue("email"),
        "actor_name": "deliver_email",
        "args": [[41, 42]],
        "kwargs": {},
        "options": {"retries": 5, "traceback": traceback},
        "message_id": message_id,
        "message_timestamp": 1_700_000_000_000,
    }
    put_in_xq(
        running, json.dumps(message).encode(), queue="email", exchange="", routing_key=running.settings.queue("email")
    )
    # when
    counts = json.loads(dlq(capsys, running, "list", "--json")[1])["dead_letter_queues"]
    code, out, _ = dlq(capsys, running, "list", "--queue", "email", "--json")
    text = dlq(capsys, running, "show", message_id)[1]
    # then
    assert counts[xq_name(running, "email")] == 1 and counts[xq_name(running)] == 0
    assert set(counts) == {
        xq_name(running, q) for q in ("ingest", "ingest_retry", "in_app", "email", "discord", "webhook", "maintenance")
    }
    [row] = json.loads(out)["dead_letters"]
    assert code == 0 and (row["message_id"], row["actor"], row["args"], row["retries"], row["error"]) == (
        message_id,
        "deliver_email",
        [[41, 42]],
        5,
        "dispatcher.errors.DeliveryError: SMTP 451",
    )
    assert "actor: deliver_email" in text and traceback.rstrip() in text
    code, _, err = dlq(capsys, running, "replay", message_id)
    assert code == 1 and SWEEP_NOTE in err
    assert len(xq_bodies(running, "email")) == 1


def test_a_preview_is_one_line_and_masks_webhook_secrets_and_discord_tokens() -> None:
    from dispatcher.ops.dead_letters import DeadLetter

    def preview(body: bytes) -> str:
        return DeadLetter(
            queue="q.XQ",
            message_id="m",
            body=body,
            message={},
            exchange="e",
            routing_key="k",
            dead_lettered_at=None,
            deaths=1,
            delivery_tag=1,
        ).preview

    assert preview(b'{"secret": "whsec_abc", "previous_secret":"whsec_old"}') == (
        '{"secret": "***", "previous_secret":"***"}'
    )
    assert preview(b'{"u": "https://discord.com/api/webhooks/123/tok-EN_1"}') == (
        '{"u": "https://discord.com/api/webhooks/123/***"}'
    )
    assert preview(b"a\nb  whsec_QUJD+/= c") == "a b whsec_*** c"
    assert preview(b"x" * 100) == "x" * 80 + "…"
    assert preview(b"\xff" * 100) == repr(b"\xff" * 80)
