"""The Discord channel: pure helpers, the rate limiter with a fake clock, and real HTTPS on loopback."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from channels.base import Notification
from channels.discord import DEFAULT_COLOUR, LIMITER, DiscordChannel, colour, execute_url, target_key
from channels.discord_format import ELLIPSIS, embed_length, escape_markdown, fit_embed, fit_message, truncate
from channels.ratelimit import RateLimiter
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import DeliveryError, DeliverySkipped
from dispatcher.core.rendering import Rendered, Renderer
from dispatcher.core.settings import PROJECT_ROOT, Settings
from dispatcher.storage.db import database
from dispatcher.storage.models import DisabledTarget, User
from tests.support.events import parsed_event
from tests.support.http import HttpServer, Reply
from tests.support.http import https_server as https_server  # a fixture
from tests.support.services import free_port
from tests.support.tls import Certificate
from tests.support.tls import certificate as certificate  # a fixture

TOKEN = "SECRETTOKEN"
JSON = {"Content-Type": "application/json"}


# --- Helpers and fixtures ------------------------------------------------------------------------


def make_notification(
    catalog: Catalog,
    *,
    webhook_url: str | None = None,
    user: bool = True,
    type_name: str = "team.invite.sent",
    data: dict[str, Any] | None = None,
    rendered: Rendered | None = None,
    templates_dir: Path = PROJECT_ROOT / "templates",
    time: dt.datetime | None = dt.datetime(2026, 11, 23, 18, 30, tzinfo=dt.UTC),
) -> Notification:
    data = data or {"team_name": "Wolves", "inviter_name": "Bo", "url": "https://play.example/i/1"}
    event = parsed_event(type_name, {"recipients": ["ana"], **data}, id="evt-1", source="/teams", time=time)
    context = {
        "data": data,
        "event": {"id": event.id, "type": event.type, "source": event.source, "time": None, "subject": None},
        "user": {"id": "ana", "name": "Ana", "email": None, "timezone": "UTC", "locale": None},
        "url": data.get("url"),
        "unsubscribe_url": None,
    }
    return Notification(
        delivery_id=7,
        user_id="ana",
        user=User(id="ana", name="Ana", timezone="UTC", discord_webhook_url=webhook_url) if user else None,
        event=event,
        kind=catalog.types[type_name],
        rendered=rendered or Renderer(templates_dir).render(type_name, context),
        url=data.get("url"),
        template_context=context,
    )


@pytest.fixture
def server(https_server: HttpServer) -> HttpServer:
    """Discord's stand-in: an HTTPS server of this test's own."""
    return https_server


_webhook_ids = itertools.count(1000)


@pytest.fixture
def webhook(server: HttpServer) -> str:
    """A webhook URL of this test's own: no rate limit another test met carries over (the limiter is global)."""
    return server.url(f"/api/webhooks/{next(_webhook_ids)}/{TOKEN}")


def posted_path(webhook: str) -> str:
    """The path and query the channel POSTs to for ``webhook``."""
    return urllib.parse.urlsplit(webhook).path.replace("/api/", "/api/v10/", 1) + "?wait=true"


def make_settings(certificate: Certificate, **extra: str) -> Settings:
    return Settings.from_env(
        {
            **certificate.https_settings(),
            "TIDINGS_HTTP_CONNECT_TIMEOUT": "2",
            "TIDINGS_HTTP_READ_TIMEOUT": "5",
            **extra,
        }
    )


@pytest.fixture
def channel(certificate: Certificate) -> Iterator[DiscordChannel]:
    channel = DiscordChannel(make_settings(certificate))
    yield channel
    channel.close()


def sent_json(server: HttpServer, index: int = -1) -> dict[str, Any]:
    return json.loads(server.requests()[index].body)


# --- Pure helpers --------------------------------------------------------------------------------


def test_truncate_keeps_short_text_and_cuts_long_text_to_the_limit_with_an_ellipsis() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("x" * 10, 10) == "x" * 10
    assert truncate("x" * 11, 10) == "x" * 9 + ELLIPSIS
    assert truncate("word " * 5, 6) == "word" + ELLIPSIS  # no space before the ellipsis
    assert truncate("anything", 0) == ""


def test_fit_embed_cuts_every_part_to_its_own_limit() -> None:
    # given an embed with every part too long, and too many fields
    embed = {
        "title": "t" * 300,
        "description": "d" * 5000,
        "footer": {"text": "f" * 3000},
        "author": {"name": "a" * 300},
        "fields": [{"name": "n" * 300, "value": "v" * 2000}] * 30,
    }
    # when
    fitted = fit_embed(embed)
    # then
    assert len(fitted["title"]) == 256 and fitted["title"].endswith(ELLIPSIS)
    assert len(fitted["author"]["name"]) == 256
    assert all(len(f["name"]) <= 256 and len(f["value"]) <= 1024 for f in fitted["fields"])
    assert len(fitted["fields"]) <= 25
    assert embed_length(fitted) <= 6000
    assert embed["title"] == "t" * 300  # the input is left alone


def test_fit_embed_shortens_the_description_first_to_stay_within_6000_in_total() -> None:
    # given title 256 + description 4096 + footer 2048 = 6400 characters
    embed = {"title": "t" * 256, "description": "d" * 4096, "footer": {"text": "f" * 2048}}
    # when
    fitted = fit_embed(embed)
    # then
    assert embed_length(fitted) == 6000
    assert fitted["title"] == "t" * 256 and fitted["footer"]["text"] == "f" * 2048
    assert len(fitted["description"]) == 6000 - 256 - 2048 and fitted["description"].endswith(ELLIPSIS)


def test_fit_embed_drops_fields_from_the_end_when_the_description_is_not_enough() -> None:
    embed = {"title": "t", "fields": [{"name": str(i), "value": "v" * 1000} for i in range(10)]}
    fitted = fit_embed(embed)
    assert [f["name"] for f in fitted["fields"]] == ["0", "1", "2", "3", "4"]
    assert embed_length(fitted) <= 6000


def test_fit_message_keeps_10_embeds_sharing_6000_characters_and_cuts_the_content() -> None:
    # given
    payload = {
        "content": "c" * 2500,
        "embeds": [{"description": "d" * 4000} for _ in range(12)],
        "allowed_mentions": {"parse": []},
    }
    # when
    fitted = fit_message(payload)
    # then
    assert len(fitted["content"]) == 2000 and fitted["content"].endswith(ELLIPSIS)
    assert len(fitted["embeds"]) == 10
    assert sum(embed_length(e) for e in fitted["embeds"]) <= 6000
    assert fitted["allowed_mentions"] == {"parse": []}


def test_markdown_is_escaped_but_urls_stay_whole() -> None:
    text = "[free](https://evil.example/a_b) *bold* <@123> `code`\n# heading\n> quote\n- item"
    escaped = escape_markdown(text)
    assert "[free](" not in escaped
    assert escaped.startswith(r"\[free\]\(https://evil.example/a_b)")
    assert r"\*bold\*" in escaped and r"\<@123>" in escaped and r"\`code\`" in escaped
    assert escaped.endswith("\\# heading\n\\> quote\n\\- item")
    assert escape_markdown("plain text, 3 points.") == "plain text, 3 points."


def test_execute_url_asks_for_wait_true_and_api_v10() -> None:
    assert execute_url("https://discord.com/api/webhooks/1/T") == "https://discord.com/api/v10/webhooks/1/T?wait=true"
    assert (
        execute_url("https://discord.com/api/v9/webhooks/1/T?thread_id=5&wait=false")
        == "https://discord.com/api/v9/webhooks/1/T?thread_id=5&wait=true"
    )


def test_each_family_of_types_has_its_colour_and_unknown_ones_a_default() -> None:
    assert colour("team.invite.sent") == colour("team.roster.changed")
    assert colour("sponsor.approved") == colour("promotion.started")
    assert colour("payout.received") == colour("payment.refunded")
    families = ["team", "tournament", "match", "ranking", "sponsor", "payout", "achievement", "system"]
    assert len({colour(f"{family}.x") for family in families}) == len(families)
    assert colour("weather.changed") == DEFAULT_COLOUR


def test_the_key_of_a_webhook_is_the_sha256_of_its_url() -> None:
    key = target_key("https://discord.com/api/webhooks/1/T")
    assert key == hashlib.sha256(b"https://discord.com/api/webhooks/1/T").hexdigest()
    assert key != target_key("https://discord.com/api/webhooks/1/U")


# --- The rate limiter, with a fake clock ---------------------------------------------------------


class FakeTime:
    """A monotonic clock that only sleep() moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def limiter(fake_time: FakeTime) -> RateLimiter:
    return RateLimiter(max_wait=5.0, clock=fake_time.clock, sleep=fake_time.sleep)


def test_a_webhook_the_limiter_knows_nothing_of_is_called_at_once(limiter: RateLimiter, fake_time: FakeTime) -> None:
    limiter.acquire("a")
    limiter.acquire("a")
    assert fake_time.sleeps == []


def test_after_a_short_block_the_next_request_waits_it_out(limiter: RateLimiter, fake_time: FakeTime) -> None:
    # given
    limiter.block("a", 2.5)
    # when
    limiter.acquire("a")
    # then
    assert fake_time.sleeps == [2.5]
    limiter.acquire("a")
    assert fake_time.sleeps == [2.5]


def test_after_a_long_block_the_delivery_is_retried_later_without_waiting(
    limiter: RateLimiter, fake_time: FakeTime
) -> None:
    # given
    limiter.block("a", 30.0)
    fake_time.now += 10.0
    # when
    with pytest.raises(DeliveryError, match="rate limit") as error:
        limiter.acquire("a")
    # then
    assert error.value.permanent is False and error.value.retry_after == pytest.approx(20.0)
    assert fake_time.sleeps == []


def test_a_block_holds_back_only_its_own_webhook(limiter: RateLimiter, fake_time: FakeTime) -> None:
    limiter.block("a", 30.0)
    limiter.acquire("b")
    assert fake_time.sleeps == []


def test_no_requests_remaining_waits_until_the_window_resets(limiter: RateLimiter, fake_time: FakeTime) -> None:
    # given a response said: 0 remaining, reset in 1 s
    limiter.update("a", remaining=0, reset_after=1.0)
    # when
    limiter.acquire("a")
    # then
    assert fake_time.sleeps == [1.0]


def test_requests_in_flight_count_against_the_remaining_ones(limiter: RateLimiter, fake_time: FakeTime) -> None:
    # given a response said: 2 remaining in the next 2 s
    limiter.update("a", remaining=2, reset_after=2.0)
    # when three requests go before any answer
    limiter.acquire("a")
    limiter.acquire("a")
    assert fake_time.sleeps == []
    limiter.acquire("a")
    # then the third waited for the new window
    assert fake_time.sleeps == [2.0]


def test_a_late_response_cannot_raise_the_count_within_a_window(limiter: RateLimiter, fake_time: FakeTime) -> None:
    # given 1 remaining, then an answer from an older request that said 3
    limiter.update("a", remaining=1, reset_after=2.0)
    limiter.acquire("a")
    limiter.update("a", remaining=3, reset_after=2.0)
    # when
    limiter.acquire("a")
    # then
    assert fake_time.sleeps == [2.0]


def test_a_wait_longer_than_max_wait_raises_with_the_time_left(limiter: RateLimiter, fake_time: FakeTime) -> None:
    limiter.update("a", remaining=0, reset_after=60.0)
    with pytest.raises(DeliveryError) as error:
        limiter.acquire("a")
    assert error.value.retry_after == pytest.approx(60.0)


def test_every_channel_instance_shares_the_process_limiter(certificate: Certificate) -> None:
    first, second = DiscordChannel(make_settings(certificate)), DiscordChannel(make_settings(certificate))
    try:
        assert first.limiter is second.limiter is LIMITER
    finally:
        first.close()
        second.close()


# --- Against a real HTTPS server -----------------------------------------------------------------

integration = pytest.mark.integration


@integration
def test_a_notification_is_posted_as_one_embed_with_wait_true_and_no_mention_parsed(
    sqlite_db: str, server: HttpServer, webhook: str, channel: DiscordChannel, catalog: Catalog
) -> None:
    # given a user whose invitation text tries to ping everyone and someone
    url = webhook
    data = {"team_name": "Wolves", "inviter_name": "@everyone <@123>", "url": "https://play.example/i/1"}
    # when
    channel.deliver(make_notification(catalog, webhook_url=url, data=data))
    # then
    [request] = server.requests()
    assert request.method == "POST"
    assert request.path == posted_path(webhook)
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert body["allowed_mentions"] == {"parse": []}
    [embed] = body["embeds"]
    assert embed["title"] == "@everyone <@123> invited you to join Wolves"
    assert "@everyone" in embed["description"] and "<@123>" in embed["description"]
    assert "https://play.example/i/1" not in embed["description"]  # the title links there
    assert embed["url"] == "https://play.example/i/1"
    assert embed["color"] == colour("team.invite.sent")
    assert embed["timestamp"] == "2026-11-23T18:30:00+00:00"
    assert embed["footer"] == {"text": "Tidings · team.invite.sent"}


def test_the_footer_names_the_product_from_tidings_product_name(certificate: Certificate, catalog: Catalog) -> None:
    # given
    channel = DiscordChannel(make_settings(certificate, TIDINGS_PRODUCT_NAME="Acme Arena"))
    # when
    [embed] = channel.build_payload(make_notification(catalog))["embeds"]
    # then
    assert embed["footer"] == {"text": "Acme Arena · team.invite.sent"}
    channel.close()


@pytest.mark.parametrize("type_name", ["team.invite.sent", "tournament.completed", "system.announcement"])
def test_the_description_leaves_out_the_call_to_action_line_whatever_its_label(
    certificate: Certificate, catalog: Catalog, type_name: str
) -> None:
    # given a notification whose text ends with "<label>: <url>"
    data = {key: "Wolves" for key in catalog.types[type_name].required} | {"url": "https://play.example/x/1"}
    notification = make_notification(catalog, type_name=type_name, data=data)
    assert notification.rendered.text.rstrip().endswith(": https://play.example/x/1")
    channel = DiscordChannel(make_settings(certificate))
    # when
    [embed] = channel.build_payload(notification)["embeds"]
    # then the title links there instead
    assert "https://play.example/x/1" not in embed["description"] and "Wolves" in embed["description"]
    assert embed["url"] == "https://play.example/x/1"
    channel.close()


@integration
def test_without_an_event_time_the_timestamp_is_now(
    sqlite_db: str, server: HttpServer, webhook: str, channel: DiscordChannel, catalog: Catalog
) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    channel.deliver(make_notification(catalog, webhook_url=webhook, time=None))
    timestamp = dt.datetime.fromisoformat(sent_json(server)["embeds"][0]["timestamp"])
    assert before <= timestamp <= dt.datetime.now(dt.UTC)


@integration
def test_the_users_webhook_comes_first_then_the_server_channel_then_the_delivery_is_skipped(
    sqlite_db: str, server: HttpServer, certificate: Certificate, catalog: Catalog
) -> None:
    # given a server channel webhook, and a user webhook
    user_url, server_url = server.url("/api/webhooks/1/USERTOKEN"), server.url("/api/webhooks/2/SERVERTOKEN")
    with_server = DiscordChannel(make_settings(certificate, TIDINGS_DISCORD_WEBHOOK_URL=server_url))
    without_server = DiscordChannel(make_settings(certificate))
    try:
        # when
        with_server.deliver(make_notification(catalog, webhook_url=user_url))
        with_server.deliver(make_notification(catalog, webhook_url=None))
        with_server.deliver(make_notification(catalog, user=False))
        without_server.deliver(make_notification(catalog, webhook_url=user_url))
        with pytest.raises(DeliverySkipped, match="no Discord webhook.*TIDINGS_DISCORD_WEBHOOK_URL"):
            without_server.deliver(make_notification(catalog, webhook_url=None))
        with pytest.raises(DeliverySkipped):
            without_server.deliver(make_notification(catalog, user=False))
    finally:
        with_server.close()
        without_server.close()
    # then
    paths = [r.path.split("?")[0] for r in server.requests()]
    assert paths == [
        "/api/v10/webhooks/1/USERTOKEN",
        "/api/v10/webhooks/2/SERVERTOKEN",
        "/api/v10/webhooks/2/SERVERTOKEN",
        "/api/v10/webhooks/1/USERTOKEN",
    ]


@integration
def test_long_text_is_cut_with_an_ellipsis_and_the_embed_stays_within_6000_characters(
    sqlite_db: str, server: HttpServer, webhook: str, channel: DiscordChannel, catalog: Catalog
) -> None:
    # given
    rendered = Rendered(subject="T" * 300, text="x" * 10_000, html="")
    # when
    channel.deliver(make_notification(catalog, webhook_url=webhook, rendered=rendered))
    # then
    [embed] = sent_json(server)["embeds"]
    assert len(embed["title"]) == 256 and embed["title"].endswith(ELLIPSIS)
    assert len(embed["description"]) == 4096 and embed["description"].endswith(ELLIPSIS)
    assert embed_length(embed) <= 6000


@integration
def test_a_discord_template_writes_the_description_with_the_event_data_escaped(
    sqlite_db: str, server: HttpServer, webhook: str, certificate: Certificate, catalog: Catalog, tmp_path: Path
) -> None:
    # given a discord.md for team.invite.sent, and a team name that tries to add a link
    templates = tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", templates)
    (templates / "team.invite.sent" / "discord.md").write_text(
        "**{{ data.inviter_name }}** invited you to **{{ data.team_name }}**. [Open]({{ url }})\n"
    )
    channel = DiscordChannel(make_settings(certificate, TIDINGS_TEMPLATES_DIR=str(templates)))
    data = {"team_name": "[Free](https://evil.example)", "inviter_name": "Bo_", "url": "https://play.example/i/1"}
    try:
        # when
        channel.deliver(make_notification(catalog, webhook_url=webhook, data=data, templates_dir=templates))
    finally:
        channel.close()
    # then
    [embed] = sent_json(server)["embeds"]
    assert embed["description"] == (
        r"**Bo\_** invited you to **\[Free\]\(https://evil.example)**. "
        "[Open](https://play.example/i/1)"
    )


@integration
def test_a_429_is_retried_later_and_holds_every_thread_back_until_retry_after(
    sqlite_db: str,
    server: HttpServer,
    webhook: str,
    channel: DiscordChannel,
    certificate: Certificate,
    catalog: Catalog,
) -> None:
    # given a webhook that answers 429 with retry_after 2.5 after 0.2 s, then 200
    server.reply_next(
        Reply(429, JSON, b'{"message": "You are being rate limited.", "retry_after": 2.5, "global": false}', delay=0.2)
    )
    notification = make_notification(catalog, webhook_url=webhook)
    # when
    with pytest.raises(DeliveryError, match="rate limit") as error:
        channel.deliver(notification)
    # then the delivery is to be retried, no sooner than Discord said
    assert error.value.permanent is False
    assert error.value.retry_after == 2.5
    assert TOKEN not in str(error.value)

    # when two more deliveries follow at once: from another thread through the same channel,
    # and from this thread through another instance of the channel
    errors: list[BaseException] = []

    def deliver_in_another_thread() -> None:
        try:
            channel.deliver(notification)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            database.close()

    thread = threading.Thread(target=deliver_in_another_thread)
    thread.start()
    other = DiscordChannel(make_settings(certificate))
    try:
        other.deliver(notification)
    finally:
        other.close()
    thread.join(timeout=10)
    # then both went through, and neither reached the server before 2.5 s after the 429 was answered
    assert errors == []
    first, *later = server.requests()
    answered = first.at + 0.2
    assert len(later) == 2
    assert all(request.at >= answered + 2.5 for request in later), [r.at - answered for r in later]


@integration
def test_a_429_without_a_json_body_is_timed_by_its_retry_after_header(
    sqlite_db: str, server: HttpServer, webhook: str, channel: DiscordChannel, catalog: Catalog
) -> None:
    # given a 429 such as Cloudflare's, in HTML
    server.reply_next(Reply(429, {"Content-Type": "text/html", "Retry-After": "7"}, b"<html>banned</html>"))
    # when
    with pytest.raises(DeliveryError) as error:
        channel.deliver(make_notification(catalog, webhook_url=webhook))
    # then
    assert error.value.retry_after == 7.0 and error.value.permanent is False
    # and the next delivery is put off without a request (7 s is more than the channel waits in a thread)
    with pytest.raises(DeliveryError, match="rate limit") as later:
        channel.deliver(make_notification(catalog, webhook_url=webhook))
    assert later.value.retry_after is not None and 6.0 < later.value.retry_after <= 7.0
    assert len(server.requests()) == 1


@integration
def test_no_requests_remaining_on_a_200_makes_the_next_request_wait_for_the_reset(
    sqlite_db: str, server: HttpServer, webhook: str, channel: DiscordChannel, catalog: Catalog
) -> None:
    # given
    server.reply_next(
        Reply(200, {**JSON, "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1.0"})
    )
    notification = make_notification(catalog, webhook_url=webhook)
    # when
    channel.deliver(notification)
    channel.deliver(notification)
    # then
    first, second = server.requests()
    assert second.at - first.at >= 1.0


@integration
@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (404, b'{"message": "Unknown Webhook", "code": 10015}', "Discord answered 404: Unknown Webhook (code 10015)"),
        (
            401,
            b'{"message": "Invalid Webhook Token", "code": 50027}',
            "Discord answered 401: Invalid Webhook Token (code 50027)",
        ),
    ],
    ids=["404", "401"],
)
def test_a_webhook_that_is_gone_is_disabled_and_never_called_again(
    db: str,
    server: HttpServer,
    webhook: str,
    channel: DiscordChannel,
    catalog: Catalog,
    status: int,
    body: bytes,
    reason: str,
) -> None:
    # given
    url = webhook
    server.reply_next(Reply(status, JSON, body))
    # when
    with structlog.testing.capture_logs() as logs, pytest.raises(DeliveryError) as error:
        channel.deliver(make_notification(catalog, webhook_url=url))
    # then the failure is permanent and the webhook is recorded as disabled, without its token
    assert error.value.permanent is True
    assert reason in str(error.value) and TOKEN not in str(error.value)
    target = DisabledTarget.get_by_id(target_key(url))
    assert (target.channel, target.reason) == ("discord", reason)
    assert TOKEN not in target.description and str(server.port) in target.description
    assert logs and TOKEN not in repr(logs)

    # when another delivery goes to the same webhook
    with pytest.raises(DeliverySkipped, match=re.escape(f"is disabled: {reason}")) as skipped:
        channel.deliver(make_notification(catalog, webhook_url=url))
    # then no request is made at all
    assert TOKEN not in str(skipped.value)
    assert len(server.requests()) == 1

    # when the user sets a new webhook
    channel.deliver(make_notification(catalog, webhook_url=server.url("/api/webhooks/124/NEWTOKEN")))
    # then it is served
    assert [r.path for r in server.requests()][1] == "/api/v10/webhooks/124/NEWTOKEN?wait=true"


@integration
@pytest.mark.parametrize(
    ("reply", "permanent", "words"),
    [
        (Reply(500, JSON, b'{"message": "Internal Server Error", "code": 0}'), False, "Discord answered 500"),
        (Reply(502, {"Content-Type": "text/html"}, b"<html>Bad gateway</html>"), False, "Discord answered 502"),
        (
            Reply(400, JSON, b'{"message": "Invalid Form Body", "code": 50035, "errors": {"embeds": {}}}'),
            True,
            "Discord answered 400: Invalid Form Body (code 50035)",
        ),
    ],
    ids=["500", "502-html", "400"],
)
def test_a_5xx_is_transient_and_a_400_is_permanent_with_discords_message(
    sqlite_db: str,
    server: HttpServer,
    webhook: str,
    channel: DiscordChannel,
    catalog: Catalog,
    reply: Reply,
    permanent: bool,
    words: str,
) -> None:
    # given
    server.reply_next(reply)
    # when
    with pytest.raises(DeliveryError) as error:
        channel.deliver(make_notification(catalog, webhook_url=webhook))
    # then
    assert error.value.permanent is permanent
    assert words in str(error.value) and TOKEN not in str(error.value)
    assert DisabledTarget.select().count() == 0


@integration
def test_a_closed_port_is_a_transient_error_that_does_not_show_the_token(
    sqlite_db: str, channel: DiscordChannel, catalog: Catalog
) -> None:
    url = f"https://127.0.0.1:{free_port()}/api/webhooks/123/{TOKEN}"
    with pytest.raises(DeliveryError) as error:
        channel.deliver(make_notification(catalog, webhook_url=url))
    assert error.value.permanent is False
    assert TOKEN not in str(error.value)
