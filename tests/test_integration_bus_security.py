"""The bus as an attacker with a RabbitMQ account sees it: each test replays one finding and shows it refused.

Producers are real RabbitMQ users made for the test with rabbitmqctl, with the
permissions a producing service gets (write to the events exchange, nothing
else). Authority rests on one fact, shown first: RabbitMQ refuses a message whose
``user_id`` property is not the connection's user. ``ops`` is in TIDINGS_COMMAND_USERS;
``producer`` is not; guest is Tidings' own user.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pytest

from dispatcher.amqp.intake import CONTENT_TYPE
from dispatcher.amqp.publisher import build_event
from dispatcher.commands.endpoints import new_secret
from dispatcher.storage.models import (
    Delivery,
    DeliveryStatus,
    Event,
    InboxItem,
    Rejection,
    Subscription,
    User,
    WebhookEndpoint,
)
from tests.support.deployment import Deployment
from tests.support.events import invite
from tests.support.publishing import Producer, connect_producer, publish_as_tidings
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

UTC = dt.UTC
#: A permission regex that matches nothing: producers may configure and read nothing.
NOTHING = "^$"


# --- RabbitMQ users ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RabbitUser:
    """A RabbitMQ account of this test's own."""

    name: str
    password: str

    @classmethod
    def new(cls, role: str) -> RabbitUser:
        return cls(f"{role}_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex)

    @property
    def url(self) -> str:
        return f"amqp://{self.name}:{self.password}@127.0.0.1:5672/%2F"


@dataclasses.dataclass(frozen=True)
class BusUsers:
    producer: RabbitUser  # a producing service: may publish, holds no authority
    ops: RabbitUser  # listed in TIDINGS_COMMAND_USERS


def rabbitmqctl(*commands: list[str], missing_ok: bool = False) -> None:
    """Run rabbitmqctl commands side by side (each takes about 0.4 s); fail if one fails."""
    procs = [
        subprocess.Popen(["rabbitmqctl", "-q", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    errors = []
    for command, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        if proc.returncode != 0 and not (missing_ok and "does not exist" in out + err):
            errors.append(f"rabbitmqctl {' '.join(command[:2])}: exit {proc.returncode}: {(out + err).strip()}")
    assert not errors, "\n".join(errors)


@pytest.fixture
def users(deployment: Deployment) -> Iterator[BusUsers]:
    """A producer and an ops user, each allowed to write to the deployment's exchange only; deleted afterwards."""
    if shutil.which("rabbitmqctl") is None:
        message = "rabbitmqctl is not installed: these tests create RabbitMQ users with it"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must have it)", pytrace=False)
        pytest.skip(message)
    both = BusUsers(producer=RabbitUser.new("producer"), ops=RabbitUser.new("ops"))
    accounts = (both.producer, both.ops)
    write = f"^{re.escape(deployment.exchange)}$"
    try:
        rabbitmqctl(*(["add_user", user.name, user.password] for user in accounts))
        rabbitmqctl(*(["set_permissions", "-p", "/", user.name, NOTHING, write, NOTHING] for user in accounts))
        yield both
    finally:
        rabbitmqctl(*(["delete_user", user.name] for user in accounts), missing_ok=True)


def start(deployment: Deployment, users: BusUsers, **env: str) -> Deployment:
    """One worker whose command users are ``ops``, logging JSON lines."""
    deployment.configure(TIDINGS_COMMAND_USERS=users.ops.name, TIDINGS_LOG_FORMAT="json", **env)
    deployment.worker().start()
    deployment.use_database()
    return deployment


@pytest.fixture
def secured(deployment: Deployment, users: BusUsers) -> Deployment:
    return start(deployment, users)


# --- publishing ----------------------------------------------------------------------------------


def connected(user: RabbitUser, deployment: Deployment) -> Producer:
    """A producer connected to RabbitMQ as ``user``."""
    return connect_producer(deployment, broker_url=user.url)


def in_seconds(seconds: float) -> str:
    moment = dt.datetime.now(UTC) + dt.timedelta(seconds=seconds)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def dramatiq_message(
    queue: str,
    actor: str,
    *,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A body shaped exactly like dramatiq's own messages."""
    return {
        "queue_name": queue,
        "actor_name": actor,
        "args": args or [],
        "kwargs": kwargs or {},
        "options": options or {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }


# --- what the worker said ------------------------------------------------------------------------


def json_log_lines(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def rejected(deployment: Deployment) -> list[dict[str, Any]]:
    """The worker's event_rejected log lines."""
    return [line for line in json_log_lines(deployment.workers[0].log()) if line["event"] == "event_rejected"]


def wait_rejected(deployment: Deployment, count: int, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Wait until ``count`` bodies were rejected and are in the dead-letter queue; their log lines."""
    wait_for(lambda: len(rejected(deployment)) >= count, timeout=timeout, what=f"{count} event_rejected lines")
    wait_for(lambda: len(deployment.dead_letters()) >= count, timeout=timeout, what=f"{count} dead letters")
    lines = rejected(deployment)
    assert len(lines) == count and len(deployment.dead_letters()) == count
    assert sorted(r.reason for r in Rejection.select()) == sorted(line["reason"] for line in lines)
    return lines


def applied(event_id: str) -> bool:
    return Event.select().where(Event.event_id == event_id).exists()


# --- the trust model -----------------------------------------------------------------------------


def test_rabbitmq_refuses_a_producer_that_claims_another_users_name(secured: Deployment, users: BusUsers) -> None:
    # given
    upsert = build_event("tidings.user.upsert", {"id": "ana", "email": "ana@example.com"}, id="claimed")
    # when the producer sets user_id to the ops user's name
    with (
        connected(users.producer, secured) as producer,
        pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused,
    ):
        producer.send(upsert, user_id=users.ops.name)
    # then RabbitMQ closed the channel, and only ops itself can publish as ops
    assert refused.value.reply_code == 406
    assert (
        f"user_id property set to '{users.ops.name}' but authenticated user was '{users.producer.name}'"
        in refused.value.reply_text
    )
    with connected(users.ops, secured) as ops:
        ops.send({**upsert, "id": "genuine"}, user_id=users.ops.name)
    wait_for(lambda: applied("genuine"), what="the genuine command")
    assert [(e.event_id, e.publisher) for e in Event.select()] == [("genuine", users.ops.name)]
    assert rejected(secured) == [] and secured.dead_letters() == []


# --- findings ------------------------------------------------------------------------------------


def test_a_dramatiq_shaped_body_from_a_producer_cannot_run_a_delivery_actor_early(
    secured: Deployment, users: BusUsers
) -> None:
    # given an invitation scheduled two minutes ahead, its in-app delivery waiting in the database
    publish_as_tidings(secured, build_event("team.invite.sent", invite(["ana"], deliver_at=in_seconds(120))))
    delivery_id = wait_for(
        lambda: Delivery.select(Delivery.id).where(Delivery.channel == "in_app").scalar(), what="the scheduled delivery"
    )
    forged = dramatiq_message(secured.settings.queue("in_app"), "deliver_in_app", args=[[delivery_id]])
    # when the producer publishes a dramatiq message naming that delivery to the events exchange
    with connected(users.producer, secured) as producer:
        producer.send(forged, routing_key="team.invite.sent", user_id=users.producer.name)
    # then it is rejected for what it is and dead-lettered, and nothing was delivered
    [line] = wait_rejected(secured, 1)
    assert (line["reason"], line["publisher"], line["routing_key"]) == (
        (
            "the body is shaped like a dramatiq message (actor_name, args, kwargs, message_id, options, queue_name): "
            "only CloudEvents enter through the events exchange"
        ),
        users.producer.name,
        "team.invite.sent",
    )
    assert json.loads(secured.dead_letters()[0]) == forged
    assert InboxItem.select().count() == 0
    delivery = Delivery.get_by_id(delivery_id)
    assert (delivery.status, delivery.held, delivery.attempts, delivery.sent_at) == (
        DeliveryStatus.PENDING,
        True,
        0,
        None,
    )


def test_dramatiq_shaped_bodies_with_a_far_eta_are_dead_lettered_and_do_not_stall_the_worker(
    secured: Deployment, users: BusUsers
) -> None:
    # given 80 dramatiq messages for the ingest actor, each due in 24 hours (held in memory by the old code)
    eta = int((time.time() + 86400) * 1000)
    smuggled = build_event("team.invite.sent", invite(["eve"]), source="/smuggled")
    forged = [
        dramatiq_message(secured.settings.queue("ingest"), "ingest", kwargs={"event": smuggled}, options={"eta": eta})
        for _ in range(80)
    ]
    # when the producer publishes them, then one valid invitation
    with connected(users.producer, secured) as producer:
        for body in forged:
            producer.send(body, routing_key="team.invite.sent", user_id=users.producer.name)
        producer.send(build_event("team.invite.sent", invite(["ana"]), source="/teams"), user_id=users.producer.name)
        sent = time.monotonic()
    # then the invitation arrives promptly and every forged body is dead-lettered
    wait_for(lambda: InboxItem.select().count() == 1, timeout=15, what="the valid invitation in the inbox")
    print(f"\nthe valid invitation reached the inbox {time.monotonic() - sent:.2f} s after 80 forged bodies")
    wait_for(lambda: len(secured.dead_letters()) == 80, timeout=15, what="80 dead letters")
    assert InboxItem.get().user_id == "ana"
    reasons = {r.reason for r in Rejection.select()}
    assert Rejection.select().count() == 80 and len(reasons) == 1
    assert reasons.pop().startswith("the body is shaped like a dramatiq message")
    assert not Event.select().where(Event.source == "/smuggled").exists()


def test_a_future_dated_command_is_rejected_and_later_corrections_apply(secured: Deployment, users: BusUsers) -> None:
    # given
    from dispatcher.cli.console import Context

    Context(secured.settings).command("tidings.user.upsert", {"id": "ana", "email": "ana@example.com"})
    poison = build_event(
        "tidings.user.upsert", {"id": "ana", "email": "ana@poisoned.example"}, time=dt.datetime(2999, 1, 1, tzinfo=UTC)
    )
    # when ops, an authorised user, dates a command in 2999
    with connected(users.ops, secured) as ops:
        ops.send(poison, user_id=users.ops.name)
    # then it is rejected for the clock skew and changes nothing
    [line] = wait_rejected(secured, 1)
    assert line["reason"] == (
        "time 2999-01-01T00:00:00+00:00 is more than 300 s ahead of Tidings' clock (TIDINGS_MAX_CLOCK_SKEW): "
        "fix the producer's clock"
    )
    assert (line["id"], line["publisher"]) == (poison["id"], users.ops.name)
    ana = User.get_by_id("ana")
    assert ana.email == "ana@example.com" and ana.changed_at.year < 2999
    # and corrections apply: from ops on the bus, and from the owner at the command line
    with connected(users.ops, secured) as ops:
        ops.send(
            build_event("tidings.user.upsert", {"id": "ana", "email": "ana@ops.example"}, id="fix"),
            user_id=users.ops.name,
        )
    wait_for(lambda: applied("fix"), what="ops's correction")
    assert User.get_by_id("ana").email == "ana@ops.example"
    assert (
        Context(secured.settings).command("tidings.user.upsert", {"id": "ana", "email": "ana@owner.example"})
        == "applied"
    )
    assert User.get_by_id("ana").email == "ana@owner.example"


def test_the_cli_corrects_records_already_poisoned_with_a_future_time(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a user and an endpoint whose changed_at the old code let a command set to 2999
    from dispatcher.cli.console import Context
    from dispatcher.cli.main import main

    context = Context(deployment.settings)
    context.command("tidings.user.upsert", {"id": "ana", "email": "ana@poisoned.example"})
    context.command(
        "tidings.webhook.upsert",
        {"id": "scores", "url": "https://scores.example/hooks", "secret": new_secret(), "types": ["match.*"]},
    )
    deployment.use_database()
    year_2999 = dt.datetime(2999, 1, 1)
    User.update(changed_at=year_2999).where(User.id == "ana").execute()
    WebhookEndpoint.update(changed_at=year_2999).where(WebhookEndpoint.id == "scores").execute()
    # when the operator corrects them: `tidings users upsert`'s command, and `tidings webhooks disable`
    outcome = Context(deployment.settings).command("tidings.user.upsert", {"id": "ana", "email": "ana@example.com"})
    code = main(["webhooks", "disable", "scores"], settings=deployment.settings)
    # then both apply
    assert outcome == "applied" and User.get_by_id("ana").email == "ana@example.com"
    assert (code, capsys.readouterr().out) == (0, "applied\n")
    endpoint = WebhookEndpoint.get_by_id("scores")
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "disabled by tidings.webhook.upsert")


def test_a_producer_without_authority_cannot_send_commands_or_restricted_types(
    secured: Deployment, users: BusUsers
) -> None:
    # given a user known to Tidings
    publish_as_tidings(secured, build_event("tidings.user.upsert", {"id": "ana", "email": "ana@example.com"}))
    wait_for(lambda: User.get_or_none(User.id == "ana"), what="ana")
    attacks: list[tuple[str, dict[str, Any]]] = [
        ("tidings.user.upsert", {"id": "ana", "email": "ana@attacker.example"}),
        (
            "tidings.webhook.upsert",
            {"id": "leak", "url": "https://attacker.example/hook", "secret": new_secret(), "types": ["*"]},
        ),
        ("tidings.topic.subscribe", {"topic": "team:7", "user": "mallory"}),
        (
            "system.announcement",
            {"recipients": ["ana"], "title": "Security notice", "message": "Log in at https://attacker.example"},
        ),
    ]
    # when the producer sends each, once as itself and once anonymously
    with connected(users.producer, secured) as producer:
        for user_id in (users.producer.name, None):
            for type_, data in attacks:
                producer.send(build_event(type_, data, source="/producer"), user_id=user_id)
    # then each is dead-lettered with the authority rule as its reason, and nothing changed
    lines = wait_rejected(secured, 8)
    seen = {(line["type"], line["publisher"]) for line in lines}
    assert seen == {(type_, who) for type_, _ in attacks for who in (users.producer.name, None)}
    for line in lines:
        who = (
            f"RabbitMQ user {users.producer.name!r}"
            if line["publisher"]
            else "an anonymous publisher (the message has no user_id property)"
        )
        rule = "is restricted" if line["type"] == "system.announcement" else "is a control command"
        assert f"{line['type']} {rule} and {who} may not" in line["reason"], line["reason"]
        assert "TIDINGS_COMMAND_USERS" in line["reason"]
    assert User.get_by_id("ana").email == "ana@example.com"
    assert WebhookEndpoint.select().count() == Subscription.select().count() == InboxItem.select().count() == 0
    assert Event.select().count() == 1  # guest's upsert
    # when ops sends the same upsert
    with connected(users.ops, secured) as ops:
        ops.send(build_event(*attacks[0], id="by-ops"), user_id=users.ops.name)
    # then it applies: the rule is about who sends it
    wait_for(lambda: applied("by-ops"), what="ops's upsert")
    assert User.get_by_id("ana").email == "ana@attacker.example"


def test_a_cancel_from_a_producer_reaches_only_its_own_events_of_the_same_source(
    secured: Deployment, users: BusUsers
) -> None:
    # given two reminders in 10 minutes with one cancel_key and source: one from Tidings' user, one from the producer
    key = "match:1:reminder"
    reminder = invite(["ana"], deliver_at=in_seconds(600), cancel_key=key)
    publish_as_tidings(secured, build_event("team.invite.sent", reminder, source="/matches", id="by-guest"))
    with connected(users.producer, secured) as producer:
        producer.send(
            build_event("team.invite.sent", reminder, source="/matches", id="by-producer"), user_id=users.producer.name
        )
    wait_for(lambda: applied("by-guest") and applied("by-producer"), what="both reminders")

    def statuses(event_id: str) -> set[str]:
        return {d.status for d in Delivery.select().join(Event).where(Event.event_id == event_id)}

    # when the producer cancels the key from another source
    with connected(users.producer, secured) as producer:
        producer.send(
            build_event("tidings.notification.cancel", {"cancel_key": key}, source="/attacker", id="cancel-1"),
            user_id=users.producer.name,
        )
    wait_for(lambda: applied("cancel-1"), what="the first cancel")
    # then nothing is cancelled
    assert statuses("by-guest") == statuses("by-producer") == {DeliveryStatus.PENDING}
    # when it cancels the key from its own source
    with connected(users.producer, secured) as producer:
        producer.send(
            build_event("tidings.notification.cancel", {"cancel_key": key}, source="/matches", id="cancel-2"),
            user_id=users.producer.name,
        )
    wait_for(lambda: applied("cancel-2"), what="the second cancel")
    # then only its own reminder is cancelled, not Tidings' one of the same source
    assert statuses("by-producer") == {DeliveryStatus.CANCELLED}
    assert statuses("by-guest") == {DeliveryStatus.PENDING}
    assert rejected(secured) == []


def test_a_command_published_under_another_types_routing_key_is_rejected(secured: Deployment, users: BusUsers) -> None:
    # given ops, whose topic permissions could allow "match.*" only
    upsert = build_event("tidings.user.upsert", {"id": "ana", "email": "ana@example.com"})
    # when it publishes a command with routing key match.completed
    with connected(users.ops, secured) as ops:
        ops.send(upsert, routing_key="match.completed", user_id=users.ops.name)
    # then it is rejected for the routing key and not applied
    [line] = wait_rejected(secured, 1)
    assert line["reason"] == (
        "the routing key 'match.completed' is not the event's type 'tidings.user.upsert': "
        "publish each event with routing key = type"
    )
    assert (line["routing_key"], line["id"]) == ("match.completed", upsert["id"])
    assert User.select().count() == 0 and Event.select().count() == 0


def test_an_event_published_without_the_cloudevents_content_type_is_rejected(
    secured: Deployment, users: BusUsers
) -> None:
    # given three copies of one valid invitation
    events = {
        content_type: build_event("team.invite.sent", invite([user]))
        for content_type, user in (("text/plain", "ana"), ("application/json", "bo"), (CONTENT_TYPE, "cara"))
    }
    # when the producer publishes them with their content types
    with connected(users.producer, secured) as producer:
        for content_type, event in events.items():
            producer.send(event, user_id=users.producer.name, content_type=content_type)
    # then only the structured-mode CloudEvent is accepted
    lines = wait_rejected(secured, 2)
    assert {line["id"]: line["reason"] for line in lines} == {
        events[shown]["id"]: f"the content type is {shown!r}: publish structured-mode CloudEvents with the AMQP "
        f"content_type {CONTENT_TYPE!r}"
        for shown in ("text/plain", "application/json")
    }
    wait_for(lambda: InboxItem.select().count() == 1, what="the valid invitation")
    assert InboxItem.get().user_id == "cara"
    assert [e.event_id for e in Event.select()] == [events[CONTENT_TYPE]["id"]]


def test_an_oversized_event_is_logged_with_its_id_and_source(deployment: Deployment, users: BusUsers) -> None:
    # given a worker taking events up to 2048 bytes
    running = start(deployment, users, TIDINGS_MAX_EVENT_BYTES="2048")
    event = build_event("team.invite.sent", invite(["ana"], note="x" * 3000), source="/teams/big", id="big-1")
    # when the producer publishes an event over the limit
    with connected(users.producer, running) as producer:
        producer.send(event, user_id=users.producer.name)
    # then the rejection names the event
    [line] = wait_rejected(running, 1)
    size = len(json.dumps(event).encode())
    assert line["reason"] == f"the body is {size} bytes, over the limit of 2048 (TIDINGS_MAX_EVENT_BYTES)"
    assert (line["id"], line["source"], line["type"], line["publisher"]) == (
        "big-1",
        "/teams/big",
        "team.invite.sent",
        users.producer.name,
    )
    [rejection] = Rejection.select()
    assert (rejection.event_id, rejection.source) == ("big-1", "/teams/big")
    assert InboxItem.select().count() == 0


def test_a_replayed_dead_letter_keeps_the_authority_of_its_first_publisher(
    secured: Deployment, users: BusUsers, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a user, and the producer's forged upsert of it dead-lettered for want of authority
    from dispatcher.cli.main import main

    publish_as_tidings(secured, build_event("tidings.user.upsert", {"id": "ana", "email": "ana@example.com"}))
    wait_for(lambda: User.get_or_none(User.id == "ana"), what="ana")
    with connected(users.producer, secured) as producer:
        producer.send(
            build_event("tidings.user.upsert", {"id": "ana", "email": "ana@attacker.example"}, source="/producer"),
            user_id=users.producer.name,
        )
    wait_rejected(secured, 1)
    # when the operator replays every dead letter (the CLI publishes as Tidings' own user, guest)
    assert main(["dlq", "replay", "--all"], settings=secured.settings) == 0
    assert "replayed 1 of 1" in capsys.readouterr().out
    # then the letter is judged as the producer's again: rejected (back in the dead-letter queue), nothing changed
    wait_for(lambda: len(rejected(secured)) == 2, what="the replayed letter's rejection")
    first, again = rejected(secured)
    assert again["publisher"] == users.producer.name and again["reason"] == first["reason"]
    wait_for(lambda: len(secured.dead_letters()) == 1, what="the letter back in the dead-letter queue")
    assert User.get_by_id("ana").email == "ana@example.com"
