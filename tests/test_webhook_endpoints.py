"""Webhook endpoints (tidings.webhook.upsert), their matching, and what a request carries."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from channels.webhook import message_id, public_body, retry_after_seconds, signature_header
from dispatcher.commands.endpoints import endpoints_for, new_secret
from dispatcher.commands.registry import apply_command
from dispatcher.core import clock
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidCommand
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.models import Delivery, WebhookEndpoint
from tests.support.events import parsed_event

T0 = dt.datetime(2026, 5, 9, 12, 0, tzinfo=dt.UTC)
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def upsert(catalog: Catalog, data: dict, *, at: dt.datetime = T0) -> str:
    event = parsed_event("tidings.webhook.upsert", data, id=f"cmd-{time.monotonic_ns()}", source="/ops", time=at)
    return apply_command(event, catalog)


def endpoint(endpoint_id: str = "scores") -> WebhookEndpoint:
    return WebhookEndpoint.get_by_id(endpoint_id)


def test_an_endpoint_is_created_then_changed_field_by_field(db: str, catalog: Catalog) -> None:
    # when
    assert (
        upsert(
            catalog,
            {
                "id": "scores",
                "url": "https://scores.example/in",
                "secret": SECRET,
                "types": ["match.*"],
                "owner": "ana",
            },
        )
        == "applied"
    )
    assert (
        upsert(catalog, {"id": "scores", "types": ["match.*", "ranking.changed"]}, at=T0 + dt.timedelta(seconds=1))
        == "applied"
    )
    # then
    saved = endpoint()
    assert (saved.url, saved.types, saved.enabled, saved.owner) == (
        "https://scores.example/in",
        ["match.*", "ranking.changed"],
        True,
        "ana",
    )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/dev/webhooks/in/demo", "http://localhost/in", "http://[::1]/in"]
)
def test_a_plain_http_url_is_accepted_only_to_a_loopback_receiver(db: str, catalog: Catalog, url: str) -> None:
    assert upsert(catalog, {"id": "local", "url": url, "secret": SECRET, "types": ["*"]}) == "applied"
    assert endpoint("local").url == url


def test_an_older_upsert_does_not_overwrite_a_newer_one(db: str, catalog: Catalog) -> None:
    upsert(catalog, {"id": "scores", "url": "https://new.example/in", "secret": SECRET, "types": ["*"]})
    assert (
        upsert(catalog, {"id": "scores", "url": "https://old.example/in"}, at=T0 - dt.timedelta(minutes=1)) == "stale"
    )
    assert endpoint().url == "https://new.example/in"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": "e", "url": "http://plain.example/in", "secret": SECRET, "types": ["*"]}, "url must be an https://"),
        ({"id": "e", "url": "http://10.0.0.5/in", "secret": SECRET, "types": ["*"]}, "allowed only to 127.0.0.1"),
        ({"id": "e", "url": "ftp://x.example/in", "secret": SECRET, "types": ["*"]}, "url must be an https://"),
        ({"id": "e", "url": "https://x.example", "secret": "s3cr3t", "types": ["*"]}, 'secret must be "whsec_"'),
        (
            {
                "id": "e",
                "url": "https://x.example",
                "secret": "whsec_" + base64.b64encode(b"short").decode(),
                "types": ["*"],
            },
            "secret must hold 24 to 64 bytes, not 5",
        ),
        ({"id": "e", "url": "https://x.example", "secret": "whsec_not base64!", "types": ["*"]}, "is not base64"),
        ({"id": "e", "url": "https://x.example", "secret": SECRET, "types": []}, "types must be a list of 1"),
        ({"id": "e", "url": "https://x.example", "secret": SECRET}, "a new endpoint needs types"),
        ({"id": "e", "url": "https://x.example", "secret": SECRET, "types": ["*"], "colour": "red"}, "unknown fields"),
        (
            {"id": "e", "url": "https://x.example", "secret": SECRET, "types": ["*"], "enabled": "yes"},
            "enabled must be true or false",
        ),
    ],
)
def test_a_malformed_endpoint_is_rejected_with_the_reason(db: str, catalog: Catalog, data: dict, message: str) -> None:
    with pytest.raises(InvalidCommand, match=message):
        upsert(catalog, data)


def test_a_new_secret_keeps_the_old_one_for_the_rotation(db: str, catalog: Catalog) -> None:
    # given
    upsert(catalog, {"id": "scores", "url": "https://x.example", "secret": SECRET, "types": ["*"]})
    rotated = new_secret()
    # when
    upsert(catalog, {"id": "scores", "secret": rotated}, at=T0 + dt.timedelta(hours=1))
    # then
    saved = endpoint()
    assert (saved.secret, saved.previous_secret, saved.rotated_at) == (rotated, SECRET, dt.datetime(2026, 5, 9, 13))


def test_enabling_again_clears_the_reason_and_the_failure_streak(db: str, catalog: Catalog) -> None:
    upsert(catalog, {"id": "scores", "url": "https://x.example", "secret": SECRET, "types": ["*"]})
    WebhookEndpoint.update(enabled=False, disabled_reason="410 Gone", failing_since=dt.datetime(2026, 5, 1)).execute()
    upsert(catalog, {"id": "scores", "enabled": True}, at=T0 + dt.timedelta(seconds=1))
    saved = endpoint()
    assert (saved.enabled, saved.disabled_reason, saved.failing_since) == (True, None, None)


def test_endpoints_take_the_types_their_patterns_match_while_enabled(db: str, catalog: Catalog) -> None:
    upsert(catalog, {"id": "a-matches", "url": "https://a.example", "secret": SECRET, "types": ["match.*"]})
    upsert(catalog, {"id": "b-all", "url": "https://b.example", "secret": SECRET, "types": ["*"]})
    upsert(catalog, {"id": "c-off", "url": "https://c.example", "secret": SECRET, "types": ["*"], "enabled": False})
    assert endpoints_for("match.completed") == ["a-matches", "b-all"]
    assert endpoints_for("team.invite.sent") == ["b-all"]


def test_an_event_gets_one_webhook_delivery_per_matching_endpoint_whatever_the_preferences(
    db: str, catalog: Catalog
) -> None:
    # given
    upsert(catalog, {"id": "scores", "url": "https://x.example", "secret": SECRET, "types": ["match.*"]})
    event = parsed_event(
        "match.completed",
        {"recipients": ["ana"], "tournament_name": "Cup", "winner_name": "Owls"},
        id="m1",
        source="/matches",
    )
    # when
    ingest_event(event, catalog, ["in_app", "email", "webhook"])
    # then
    assert sorted((d.user_id, d.channel) for d in Delivery.select()) == [
        ("ana", "email"),
        ("ana", "in_app"),
        ("scores", "webhook"),
    ]


# --- what a request carries -------------------------------------------------------------------


def headers_for(saved: WebhookEndpoint, body: bytes, now: dt.datetime, overlap: float = 86400) -> dict[str, str]:
    msg = message_id("/matches", "m1", saved.id)
    timestamp = int(now.timestamp())
    return {
        "webhook-id": msg,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            saved, msg, timestamp, body, now=now.replace(tzinfo=None), overlap=overlap
        ),
    }


def test_a_request_verifies_with_the_standardwebhooks_library(db: str, catalog: Catalog) -> None:
    # given
    upsert(catalog, {"id": "scores", "url": "https://x.example", "secret": SECRET, "types": ["*"]})
    body = b'{"id":"m1","type":"match.completed"}'
    now = dt.datetime.now(dt.UTC)
    # when
    headers = headers_for(endpoint(), body, now)
    # then
    assert Webhook(SECRET).verify(body, headers) == {"id": "m1", "type": "match.completed"}
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)


def test_during_a_rotation_each_secret_verifies_and_after_it_only_the_new_one(db: str, catalog: Catalog) -> None:
    # given a rotation an hour ago
    upsert(catalog, {"id": "scores", "url": "https://x.example", "secret": SECRET, "types": ["*"]})
    rotated = new_secret()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    upsert(catalog, {"id": "scores", "secret": rotated}, at=now - dt.timedelta(hours=1))
    body = b"{}"
    # when / then: within the 24 h overlap both verify
    headers = headers_for(endpoint(), body, now)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(body, headers)
    Webhook(rotated).verify(body, headers)
    # and with a 30 min overlap, only the new one
    headers = headers_for(endpoint(), body, now, overlap=1800)
    Webhook(rotated).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers)


def test_the_webhook_id_is_stable_per_event_and_endpoint() -> None:
    assert message_id("/m", "1", "a") == message_id("/m", "1", "a")
    assert (
        len(
            {
                message_id("/m", "1", "a"),
                message_id("/m", "2", "a"),
                message_id("/m", "1", "b"),
                message_id("/x", "1", "a"),
            }
        )
        == 4
    )
    assert message_id("/m", "1", "a").startswith("msg_")


def test_the_body_leaves_out_personal_keys_and_recipients_email_addresses(db: str, catalog: Catalog) -> None:
    # given a payout whose data holds a personal key and a recipient's address
    from channels.base import Notification
    from dispatcher.core.rendering import Rendered
    from dispatcher.storage.models import User

    User.create(id="ana", email="Ana@Example.com", changed_at=T0.replace(tzinfo=None))
    data = {
        "recipients": ["ana"],
        "amount": "250.00",
        "currency": "EUR",
        "iban": "DE89 3704 0044 0532 0130 00",
        "contact": {"email": "ana@example.com", "team": "Owls"},
        "cc": ["ana@example.com", "ops@example.com"],
    }
    event = parsed_event("payout.received", data, id="p1", source="/payouts", time=T0)
    notification = Notification(
        delivery_id=1,
        user_id="scores",
        user=None,
        event=event,
        kind=catalog.types["payout.received"],
        rendered=Rendered("s", "t", "h"),
        url=None,
    )
    # when
    body = json.loads(public_body(notification))
    # then
    assert body == {
        "id": "p1",
        "type": "payout.received",
        "source": "/payouts",
        "time": "2026-05-09T12:00:00Z",
        "data": {
            "recipients": ["ana"],
            "amount": "250.00",
            "currency": "EUR",
            "contact": {"team": "Owls"},
            "cc": ["ops@example.com"],
        },
    }


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("2.5", 2.5), ("Sat, 09 May 2026 12:01:00 GMT", 60.0), ("soon", None), (None, None)],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, dt.datetime(2026, 5, 9, 12, 0)) == seconds


def test_clock_is_used_for_the_rotation_window(db: str, catalog: Catalog) -> None:
    # the rotation window is judged with the injected clock's time, not the wall clock
    upsert(catalog, {"id": "scores", "url": "https://x.example", "secret": SECRET, "types": ["*"]})
    upsert(catalog, {"id": "scores", "secret": new_secret()}, at=T0)
    with clock.use_clock(lambda: dt.datetime(2026, 5, 10, 13, 0)):
        saved = endpoint()
        header = signature_header(saved, "msg_x", 1, b"{}", now=clock.now(), overlap=86400)
    assert len(header.split(" ")) == 1
