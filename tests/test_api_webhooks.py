"""Webhook endpoints over HTTP (API key), against the real web process and its database."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from standardwebhooks import Webhook

from channels import channel_names
from channels.webhook import message_id, signature_header
from dispatcher.core import clock
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, WebhookEndpoint
from tests.support.deployment import Deployment

pytestmark = pytest.mark.integration

OPS_KEY = "ops-key-0123456789abcdefghijklmnopqrstuvwxyz"
USERS_KEY = "users-key-0123456789abcdefghijklmnopqrstuvw"
API_KEYS = f"ops:read+users+webhooks:{OPS_KEY},support:read+users:{USERS_KEY}"
#: A public address, so that the egress check lets it through; nothing is sent to it in these tests.
URL = "https://93.184.215.14/hooks/scores/receiver-token"
NEW_ENDPOINT = {"id": "scores", "url": URL, "types": ["match.*"], "owner": "ana"}
(WEBHOOK_CHANNEL,) = channel_names(addresses="endpoint")


def stored(endpoint_id: str = "scores") -> WebhookEndpoint:
    return WebhookEndpoint.get_by_id(endpoint_id)


def test_a_created_endpoint_returns_its_secret_once_and_the_list_never_shows_it(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        # when
        created = client.post("/v1/webhooks", json=NEW_ENDPOINT)
        listed = client.get("/v1/webhooks")
    # then
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert created.json()["url"] == "https://93.184.215.14/hooks/scores/***"
    assert listed.status_code == 200
    (item,) = listed.json()["items"]
    assert item == {k: v for k, v in created.json().items() if k != "secret"}
    assert (item["types"], item["owner"], item["enabled"], item["rotating_secret"]) == (["match.*"], "ana", True, False)
    assert "whsec_" not in listed.text and "receiver-token" not in listed.text
    deployment.use_database()
    assert (stored().secret, stored().url, stored().types) == (secret, URL, ["match.*"])
    command = Event.get(Event.type == "tidings.webhook.upsert")
    assert (command.source, command.publisher) == ("/tidings/api", "api:ops")
    assert secret not in str(command.data)


def test_creating_an_endpoint_with_a_taken_id_is_a_409_and_keeps_the_first(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        first = client.post("/v1/webhooks", json=NEW_ENDPOINT)
        again = client.post("/v1/webhooks", json={**NEW_ENDPOINT, "types": ["*"]})
    assert (first.status_code, again.status_code) == (201, 409)
    deployment.use_database()
    assert (stored().secret, stored().types) == (first.json()["secret"], ["match.*"])


def test_an_invalid_or_unknown_endpoint_field_is_a_422_naming_it(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        no_types = client.post("/v1/webhooks", json={**NEW_ENDPOINT, "types": []})
        unknown = client.post("/v1/webhooks", json={**NEW_ENDPOINT, "colour": "teal"})
        bad_secret = client.post("/v1/webhooks", json={**NEW_ENDPOINT, "secret": "whsec_c2hvcnQ="})
    assert no_types.status_code == unknown.status_code == bad_secret.status_code == 422
    assert no_types.json()["errors"][0]["field"] == "types"
    assert "glob patterns" in no_types.json()["errors"][0]["message"]
    assert [e["field"] for e in unknown.json()["errors"]] == ["colour"]
    assert bad_secret.json()["errors"][0]["field"] == "secret"
    deployment.use_database()
    assert WebhookEndpoint.select().count() == 0


def test_patch_changes_what_it_names_and_keeps_the_rest(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        # given
        secret = client.post("/v1/webhooks", json=NEW_ENDPOINT).json()["secret"]
        # when
        disabled = client.patch("/v1/webhooks/scores", json={"enabled": False, "types": ["match.*", "team.*"]})
        moved = client.patch("/v1/webhooks/scores", json={"url": "https://93.184.215.15/new/hook", "enabled": True})
        unknown_field = client.patch("/v1/webhooks/scores", json={"secret": "whsec_x"})
        unknown_id = client.patch("/v1/webhooks/nowhere", json={"enabled": False})
    # then
    assert disabled.status_code == 200
    assert (disabled.json()["enabled"], disabled.json()["types"]) == (False, ["match.*", "team.*"])
    assert disabled.json()["disabled_reason"]
    assert moved.status_code == 200
    assert (moved.json()["url"], moved.json()["enabled"]) == ("https://93.184.215.15/new/***", True)
    assert moved.json()["disabled_reason"] is None
    assert unknown_field.status_code == 422 and unknown_field.json()["errors"][0]["field"] == "secret"
    assert unknown_id.status_code == 404
    deployment.use_database()
    endpoint = stored()
    assert (endpoint.url, endpoint.types, endpoint.enabled, endpoint.owner, endpoint.secret) == (
        "https://93.184.215.15/new/hook",
        ["match.*", "team.*"],
        True,
        "ana",
        secret,
    )


def test_rotating_a_secret_returns_the_new_one_and_the_old_one_signs_for_the_overlap(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        # given
        old = client.post("/v1/webhooks", json=NEW_ENDPOINT).json()["secret"]
        # when
        rotated = client.post("/v1/webhooks/scores/rotate-secret")
        listed = client.get("/v1/webhooks").json()["items"]
        unknown = client.post("/v1/webhooks/nowhere/rotate-secret")
    # then
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert listed[0]["rotating_secret"] is True and new not in str(listed)
    assert unknown.status_code == 404
    deployment.use_database()
    endpoint = stored()
    assert (endpoint.secret, endpoint.previous_secret) == (new, old)
    until = dt.datetime.fromisoformat(rotated.json()["previous_secret_valid_until"].replace("Z", "+00:00"))
    overlap = deployment.settings.secret_rotation_overlap
    assert until.replace(tzinfo=None) - endpoint.rotated_at == pytest.approx(
        dt.timedelta(seconds=overlap), abs=dt.timedelta(milliseconds=1)
    )
    # and a webhook signed now verifies with either secret
    body, msg_id, timestamp = b'{"type":"match.completed"}', message_id("/src", "e1", "scores"), int(time.time())
    header = signature_header(endpoint, msg_id, timestamp, body, now=clock.now(), overlap=overlap)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": header}
    for secret in (new, old):
        Webhook(secret).verify(body, headers)


@pytest.mark.parametrize(
    "url",
    ["https://10.0.0.1/hook", "https://127.0.0.1/hook", "https://[::1]/hook", "https://localhost/hook"],
)
def test_a_url_on_a_private_network_is_refused_without_the_allow_setting(deployment: Deployment, url: str) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        # given
        client.post("/v1/webhooks", json=NEW_ENDPOINT)
        # when
        created = client.post("/v1/webhooks", json={**NEW_ENDPOINT, "id": "inside", "url": url})
        patched = client.patch("/v1/webhooks/scores", json={"url": url})
    # then
    for response in (created, patched):
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "url"
        assert "TIDINGS_ALLOW_PRIVATE_NETWORKS" in response.json()["detail"]
    deployment.use_database()
    assert [e.id for e in WebhookEndpoint.select()] == ["scores"] and stored().url == URL


def test_a_plain_http_url_is_refused_with_the_commands_reason(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        response = client.post("/v1/webhooks", json={**NEW_ENDPOINT, "url": "http://hooks.example/hook"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["message"] == (
        "url must be an https:// URL (http:// is allowed only to 127.0.0.1, ::1 or localhost)"
    )


def test_a_private_url_is_accepted_in_a_range_the_operator_allows(deployment: Deployment) -> None:
    with (
        deployment.web(TIDINGS_API_KEYS=API_KEYS, TIDINGS_ALLOW_PRIVATE_NETWORKS="10.0.0.0/8").start() as web,
        web.client(OPS_KEY) as client,
    ):
        allowed = client.post("/v1/webhooks", json={**NEW_ENDPOINT, "url": "https://10.0.0.1/hook"})
        outside = client.post("/v1/webhooks", json={**NEW_ENDPOINT, "id": "lo", "url": "https://127.0.0.1/hook"})
    assert allowed.status_code == 201
    assert outside.status_code == 422
    deployment.use_database()
    assert stored().url == "https://10.0.0.1/hook"


def _delivery(event_id: str, endpoint_id: str, status: str, *, updated_at: dt.datetime) -> Delivery:
    event = Event.create(source="/billing", event_id=event_id, type="match.completed", data={})
    return Delivery.create(
        event=event,
        user_id=endpoint_id,
        channel=WEBHOOK_CHANNEL,
        status=status,
        attempts=5,
        last_error="HTTP 500",
        updated_at=updated_at,
    )


def test_a_replay_makes_the_endpoints_deliveries_due_again(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        # given two endpoints with deliveries: sent, failed an hour ago, failed a day ago, another's
        client.post("/v1/webhooks", json=NEW_ENDPOINT)
        client.post("/v1/webhooks", json={**NEW_ENDPOINT, "id": "other"})
        deployment.use_database()
        now = clock.now()
        sent = _delivery("e-sent", "scores", DeliveryStatus.SENT, updated_at=now)
        recent = _delivery("e-recent", "scores", DeliveryStatus.FAILED, updated_at=now - dt.timedelta(hours=1))
        old = _delivery("e-old", "scores", DeliveryStatus.FAILED, updated_at=now - dt.timedelta(days=1))
        others = _delivery("e-others", "other", DeliveryStatus.FAILED, updated_at=now - dt.timedelta(hours=1))
        since = (now - dt.timedelta(hours=2)).isoformat() + "Z"
        # when
        by_event = client.post("/v1/webhooks/scores/replay", json={"event_id": "e-sent", "source": "/billing"})
        by_time = client.post("/v1/webhooks/scores/replay", json={"since": since})
        neither = client.post("/v1/webhooks/scores/replay", json={})
        both = client.post("/v1/webhooks/scores/replay", json={"event_id": "e-sent", "since": since})
        bad_time = client.post("/v1/webhooks/scores/replay", json={"since": "yesterday"})
        unknown = client.post("/v1/webhooks/nowhere/replay", json={"since": since})
    # then
    assert (by_event.status_code, by_event.json()) == (202, {"replayed": 1})
    assert (by_time.status_code, by_time.json()) == (202, {"replayed": 1})
    assert neither.status_code == both.status_code == bad_time.status_code == 422
    assert bad_time.json()["errors"][0]["field"] == "since"
    assert unknown.status_code == 404
    replayed = {d.id: d for d in Delivery.select()}
    for delivery in (sent, recent):
        again = replayed[delivery.id]
        assert (again.status, again.attempts, again.held, again.last_error) == (DeliveryStatus.PENDING, 0, True, None)
    for delivery in (old, others):
        assert (replayed[delivery.id].status, replayed[delivery.id].attempts) == (DeliveryStatus.FAILED, 5)


def test_managing_webhooks_needs_the_webhooks_scope(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web:
        with web.client(USERS_KEY) as support:
            responses = [
                support.get("/v1/webhooks"),
                support.post("/v1/webhooks", json=NEW_ENDPOINT),
                support.patch("/v1/webhooks/scores", json={"enabled": False}),
                support.post("/v1/webhooks/scores/rotate-secret"),
                support.post("/v1/webhooks/scores/replay", json={"event_id": "e1"}),
            ]
        with web.client() as anonymous:
            no_key = anonymous.get("/v1/webhooks")
    assert [r.status_code for r in responses] == [403] * 5
    assert no_key.status_code == 401
    deployment.use_database()
    assert WebhookEndpoint.select().count() == 0


def test_concurrent_changes_to_endpoints_all_apply(deployment: Deployment) -> None:
    # given
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:

        def create_then_disable(n: int) -> tuple[int, int]:
            created = client.post("/v1/webhooks", json={**NEW_ENDPOINT, "id": f"hook-{n}"})
            patched = client.patch(f"/v1/webhooks/hook-{n}", json={"enabled": False})
            return created.status_code, patched.status_code

        # when
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(create_then_disable, range(16)))
    # then
    assert statuses == [(201, 200)] * 16
    deployment.use_database()
    assert WebhookEndpoint.select().where(WebhookEndpoint.enabled == False).count() == 16  # noqa: E712
