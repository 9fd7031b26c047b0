"""Discord and signed webhooks end to end: pika → worker → a real HTTPS receiver on loopback."""

from __future__ import annotations

import json

import pytest
from standardwebhooks import Webhook

from channels.http import redact_url
from dispatcher.cli.main import main
from dispatcher.commands.endpoints import new_secret
from dispatcher.core.settings import PROJECT_ROOT
from dispatcher.storage.models import Delivery, Event, WebhookEndpoint
from tests.support.deployment import Deployment
from tests.support.events import invite
from tests.support.http import HttpServer, Reply
from tests.support.http import https_server as https_server  # a fixture
from tests.support.publishing import publish_event_as_tidings
from tests.support.scheduler import run_release_job, time_passes
from tests.support.smtp import SmtpServer
from tests.support.tls import Certificate
from tests.support.tls import certificate as certificate  # a fixture
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

SECRET = new_secret()


@pytest.fixture
def receiver(https_server: HttpServer) -> HttpServer:
    """The webhook (or Discord) receiver: an HTTPS server of this test's own."""
    return https_server


@pytest.fixture
def hooks(deployment: Deployment, certificate: Certificate) -> Deployment:
    """A deployment allowed to reach loopback over HTTPS, trusting the test certificate."""
    deployment.configure(**certificate.https_settings(), TIDINGS_LOG_FORMAT="json")
    return deployment


def register(deployment: Deployment, receiver: HttpServer, **fields: object) -> None:
    data = {"id": "scores", "url": receiver.url("/hooks/tidings"), "secret": SECRET, "types": ["match.*"], **fields}
    publish_event_as_tidings(deployment, "tidings.webhook.upsert", data)
    wait_for(lambda: WebhookEndpoint.select().count() == 1, what="the endpoint")


def match_completed(**extra: object) -> dict:
    return {"recipients": ["ana"], "tournament_name": "Spring Cup", "winner_name": "Night Owls", **extra}


def webhook_delivery() -> Delivery | None:
    return Delivery.select().where(Delivery.channel == "webhook").first()


def test_every_webhook_request_verifies_with_standardwebhooks(hooks: Deployment, receiver: HttpServer) -> None:
    # given
    hooks.worker().start()
    hooks.use_database()
    register(hooks, receiver)
    # when
    event_id = publish_event_as_tidings(hooks, "match.completed", match_completed(score="2-1"))
    publish_event_as_tidings(hooks, "team.invite.sent", invite(team_name="Owls"))
    # then only the matching type arrives, signed
    wait_for(lambda: len(receiver.requests()) == 1, what="the webhook")
    wait_for(lambda: Event.select().count() == 3, what="the other event")
    [request] = receiver.requests()
    payload = Webhook(SECRET).verify(request.body, request.headers)
    assert payload == {
        "id": event_id,
        "type": "match.completed",
        "source": "/tests",
        "time": payload["time"],
        "data": match_completed(score="2-1"),
    }
    assert request.path == "/hooks/tidings" and request.headers["Content-Type"] == "application/json"
    wait_for(lambda: getattr(webhook_delivery(), "status", None) == "sent", what="the delivery recorded")
    assert len(receiver.requests()) == 1


def test_a_410_disables_the_endpoint_and_nothing_more_is_sent(hooks: Deployment, receiver: HttpServer) -> None:
    # given
    hooks.worker().start()
    hooks.use_database()
    register(hooks, receiver)
    receiver.reply_next(Reply(410))
    # when
    publish_event_as_tidings(hooks, "match.completed", match_completed())
    wait_for(lambda: not WebhookEndpoint.get().enabled, what="the endpoint to be disabled")
    publish_event_as_tidings(
        hooks, "match.started", {"recipients": ["ana"], "tournament_name": "Cup", "opponent_name": "Owls"}
    )
    wait_for(lambda: Event.select().count() == 3, what="the second event")
    # then
    assert len(receiver.requests()) == 1
    assert WebhookEndpoint.get().disabled_reason == "the endpoint answered 410 Gone"
    assert (webhook_delivery().status, webhook_delivery().last_error) == (
        "failed",
        "the endpoint answered 410 Gone: disabled",
    )
    assert Delivery.select().where(Delivery.channel == "webhook").count() == 1


def test_a_retry_due_an_hour_ahead_survives_a_restart_of_every_process_and_is_delivered_once(
    hooks: Deployment, receiver: HttpServer
) -> None:
    # given a receiver failing once, and a schedule that retries an hour later
    hooks.configure(TIDINGS_WEBHOOK_RETRY_SCHEDULE="0,3600")
    worker = hooks.worker().start()
    hooks.use_database()
    register(hooks, receiver)
    receiver.reply_next(Reply(500))
    publish_event_as_tidings(hooks, "match.completed", match_completed())
    wait_for(lambda: getattr(webhook_delivery(), "held", False), what="the retry to be held in the database")
    # when every process restarts
    worker.kill()
    worker.start()
    # then nothing is sent before the hour is up...
    time_passes(0.9 * 3600)
    run_release_job(hooks)
    assert webhook_delivery().held and len(receiver.requests()) == 1
    # ...and once it is, exactly one more request, with the same webhook-id
    time_passes(0.11 * 3600)
    run_release_job(hooks)
    run_release_job(hooks)  # a second scheduler releases nothing more
    wait_for(lambda: webhook_delivery().status == "sent", what="the retry")
    first, second = receiver.requests()
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.headers["webhook-timestamp"] <= second.headers["webhook-timestamp"]
    Webhook(SECRET).verify(second.body, second.headers)
    assert webhook_delivery().attempts == 2


def test_a_replay_sends_again_with_the_original_webhook_id(hooks: Deployment, receiver: HttpServer, capsys) -> None:
    # given a delivered webhook
    hooks.worker().start()
    hooks.use_database()
    register(hooks, receiver)
    event_id = publish_event_as_tidings(hooks, "match.completed", match_completed())
    wait_for(lambda: getattr(webhook_delivery(), "status", None) == "sent", what="the first delivery")
    # when
    assert main(["webhooks", "replay", event_id], settings=hooks.settings) == 0
    assert "replaying 1 webhook deliveries" in capsys.readouterr().out
    run_release_job(hooks)
    # then
    wait_for(lambda: len(receiver.requests()) == 2, what="the replay")
    first, second = receiver.requests()
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    Webhook(SECRET).verify(second.body, second.headers)


def test_a_private_address_is_refused_unless_allowed(
    deployment: Deployment, receiver: HttpServer, certificate: Certificate
) -> None:
    # given a worker with the default egress rules (no private networks), trusting the certificate
    deployment.configure(TIDINGS_HTTP_CA_FILE=str(certificate.ca_file))
    deployment.worker().start()
    deployment.use_database()
    register(deployment, receiver)
    # when
    publish_event_as_tidings(deployment, "match.completed", match_completed())
    # then
    wait_for(lambda: getattr(webhook_delivery(), "status", None) == "failed", what="the refusal")
    assert "127.0.0.1" in webhook_delivery().last_error
    assert "TIDINGS_ALLOW_PRIVATE_NETWORKS" in webhook_delivery().last_error
    assert receiver.requests() == []


def test_an_endpoint_failing_for_too_long_is_disabled_and_its_owner_told(
    hooks: Deployment, receiver: HttpServer, smtp_server: SmtpServer
) -> None:
    # given an endpoint owned by ana, that fails, with a disable-after shorter than its retries
    hooks.configure(TIDINGS_WEBHOOK_RETRY_SCHEDULE="0,0.5,0.5,0.5", TIDINGS_WEBHOOK_DISABLE_AFTER="0.8")
    hooks.worker().start()
    hooks.use_database()
    publish_event_as_tidings(hooks, "tidings.user.upsert", {"id": "ana", "email": "ana@example.com"})
    register(hooks, receiver, owner="ana")
    receiver.default = Reply(503)
    # when
    publish_event_as_tidings(hooks, "match.completed", match_completed())
    # then
    wait_for(lambda: not WebhookEndpoint.get().enabled, what="the endpoint to be disabled")
    assert WebhookEndpoint.get().disabled_reason.startswith("failing since ")
    wait_for(
        lambda: any("Webhook endpoint scores was disabled" in str(m["Subject"]) for m in smtp_server.messages),
        what="the notice to the owner",
    )
    notices = [
        json.loads(line)
        for line in hooks.workers[0].log().splitlines()
        if line.startswith("{") and '"webhook_endpoint_disabled"' in line
    ]
    assert [notice["url"] for notice in notices] == [redact_url(receiver.url("/hooks/tidings"))]


def test_a_redirect_is_a_failure_and_is_not_followed(hooks: Deployment, receiver: HttpServer) -> None:
    # given a receiver that redirects once, to a path of its own
    hooks.configure(TIDINGS_WEBHOOK_RETRY_SCHEDULE="0,0.2")
    hooks.worker().start()
    hooks.use_database()
    register(hooks, receiver)
    receiver.reply_next(Reply(302, {"Location": receiver.url("/elsewhere")}))
    # when
    publish_event_as_tidings(hooks, "match.completed", match_completed())
    # then the retry goes to the registered URL again, never to the Location
    wait_for(lambda: getattr(webhook_delivery(), "status", None) == "sent", what="the retry")
    assert [r.path for r in receiver.requests()] == ["/hooks/tidings", "/hooks/tidings"]
    assert webhook_delivery().attempts == 2


def test_a_503_with_retry_after_delays_the_retry_that_long(hooks: Deployment, receiver: HttpServer) -> None:
    # given a schedule that would retry after 0.1 s, and a receiver asking for 2 s
    hooks.configure(TIDINGS_WEBHOOK_RETRY_SCHEDULE="0,0.1")
    hooks.worker().start()
    hooks.use_database()
    register(hooks, receiver)
    receiver.reply_next(Reply(503, {"Retry-After": "2"}))
    # when
    publish_event_as_tidings(hooks, "match.completed", match_completed())
    # then
    wait_for(lambda: len(receiver.requests()) == 2, what="the retry")
    first, second = receiver.requests()
    assert second.at - first.at >= 2.0


def test_during_a_rotation_the_requests_verify_with_either_secret(hooks: Deployment, receiver: HttpServer) -> None:
    # given an endpoint whose secret was just rotated
    hooks.worker().start()
    hooks.use_database()
    register(hooks, receiver)
    rotated = new_secret()
    publish_event_as_tidings(hooks, "tidings.webhook.upsert", {"id": "scores", "secret": rotated})
    wait_for(lambda: WebhookEndpoint.get().secret == rotated, what="the rotation")
    # when
    publish_event_as_tidings(hooks, "match.completed", match_completed())
    # then
    wait_for(lambda: len(receiver.requests()) == 1, what="the webhook")
    [request] = receiver.requests()
    Webhook(SECRET).verify(request.body, request.headers)
    Webhook(rotated).verify(request.body, request.headers)


def test_the_documented_hmac_verifier_accepts_a_real_request_and_rejects_a_forged_one(
    hooks: Deployment, receiver: HttpServer
) -> None:
    # given the ten-line verifier from docs/webhooks.md
    text = (PROJECT_ROOT / "docs" / "webhooks.md").read_text()
    code = text.split("## Verifying with nothing but the standard library")[1].split("```python")[1].split("```")[0]
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own documentation
    verify = namespace["verify"]
    hooks.worker().start()
    hooks.use_database()
    register(hooks, receiver)
    # when
    publish_event_as_tidings(hooks, "match.completed", match_completed())
    wait_for(lambda: len(receiver.requests()) == 1, what="the webhook")
    [request] = receiver.requests()
    headers = {k.lower(): v for k, v in request.headers.items()}
    # then
    assert verify(SECRET, headers, request.body) is True
    assert verify(SECRET, headers, request.body.replace(b"Night Owls", b"Day Owls")) is False
    assert verify(new_secret(), headers, request.body) is False


def test_a_user_who_turned_discord_on_gets_an_embed_from_the_worker(hooks: Deployment, receiver: HttpServer) -> None:
    # given a user with a Discord webhook of their own who wants invites there
    hooks.worker().start()
    hooks.use_database()
    url = receiver.url("/api/webhooks/42/SECRETTOKEN")
    publish_event_as_tidings(hooks, "tidings.user.upsert", {"id": "ana", "discord_webhook_url": url})
    publish_event_as_tidings(
        hooks,
        "tidings.preferences.set",
        {"user": "ana", "preferences": [{"type": "team.invite.sent", "channel": "discord", "enabled": True}]},
    )
    wait_for(lambda: Event.select().count() == 2, what="the commands")
    # when
    publish_event_as_tidings(hooks, "team.invite.sent", invite(team_name="Owls", inviter_name="@everyone"))
    # then
    wait_for(lambda: len(receiver.requests()) == 1, what="the Discord request")
    [request] = receiver.requests()
    body = json.loads(request.body)
    assert request.path == "/api/v10/webhooks/42/SECRETTOKEN?wait=true"
    assert body["allowed_mentions"] == {"parse": []}
    assert body["embeds"][0]["title"] == "@everyone invited you to join Owls"
    wait_for(
        lambda: Delivery.select().where(Delivery.channel == "discord", Delivery.status == "sent").count() == 1,
        what="the delivery recorded",
    )
    assert "SECRETTOKEN" not in hooks.workers[0].log()
