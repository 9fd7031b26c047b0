"""The parts of the embedded mode one by one: the local bus, the clock, the mail server, the receiver, the sweep."""

from __future__ import annotations

import datetime as dt
import smtplib
import stat
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import SkipMessage
from periodiq import PeriodiqMiddleware, cron
from standardwebhooks import Webhook

from dispatcher.amqp import bus, local
from dispatcher.amqp.inbox_feed import Announcement, InboxAnnouncer, InboxFeed
from dispatcher.amqp.intake import ORIGINAL_PUBLISHER_HEADER
from dispatcher.amqp.publisher import PublishError
from dispatcher.commands.endpoints import new_secret
from dispatcher.core import clock
from dispatcher.core.settings import Settings
from dispatcher.embedded.demo import demo_events
from dispatcher.embedded.outbox import OutboxServer, read_email, read_outbox
from dispatcher.embedded.receiver import Receiver, signed_by
from dispatcher.embedded.server import DevPaths, dev_environment, dev_secrets
from dispatcher.embedded.ticker import Ticker, due_actors, next_minute
from dispatcher.jobs.maintenance import orphaned_deliveries
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, WebhookEndpoint

T0 = dt.datetime(2026, 12, 2, 18, 0)


@pytest.fixture
def local_bus() -> Iterator[local.LocalBus]:
    published: list[tuple[bytes, str, str | None]] = []
    the_bus = local.LocalBus(lambda body, key, publisher: published.append((body, key, publisher)))
    the_bus.published = published  # type: ignore[attr-defined]
    local.install(the_bus)
    yield the_bus
    local.install(None)


# --- the local bus ---------------------------------------------------------------------------------------------


def test_the_local_bus_ingests_a_publish_with_the_relayed_publisher() -> None:
    published: list[tuple[bytes, str, str | None]] = []
    the_bus = local.LocalBus(lambda body, key, publisher: published.append((body, key, publisher)))
    the_bus.publish_raw(b"{}", routing_key="team.invite.sent", headers={ORIGINAL_PUBLISHER_HEADER: "api:scores"})
    the_bus.publish({"type": "match.started", "id": "m-1"})
    assert published[0] == (b"{}", "team.invite.sent", "api:scores")
    assert published[1][1:] == ("match.started", None), "Tidings' own authority when no one is relayed"


def test_the_local_bus_refuses_to_publish_before_it_has_an_ingest() -> None:
    with pytest.raises(PublishError, match="still starting"):
        local.LocalBus().publish({"type": "match.started", "id": "m-1"})


def test_an_announcement_reaches_only_the_feeds_bound_to_its_user() -> None:
    the_bus = local.LocalBus()
    got: list[Announcement] = []
    connected: list[bool] = []
    feed = the_bus.feed(got.append, lambda: connected.append(True))
    feed.start()
    assert connected == [True] and feed.connected
    assert feed.bind("ana").result(timeout=0) is None
    the_bus.notification("ana", 7)
    the_bus.counts_changed("ben")
    feed.unbind("ana")
    the_bus.counts_changed("ana")
    feed.close()
    the_bus.notification("ana", 8)
    assert got == [Announcement("ana", 7)]


def test_an_announcement_never_fails_the_announcer_even_when_a_stream_does() -> None:
    the_bus = local.LocalBus()

    def broken(announcement: Announcement) -> None:
        raise RuntimeError("the event loop is closed")

    feed = the_bus.feed(broken, lambda: None)
    feed.start()
    feed.bind("ana")
    the_bus.notification("ana", 1)  # no exception


def test_the_bus_hands_out_the_local_bus_once_installed_and_rabbitmq_otherwise(local_bus: local.LocalBus) -> None:
    settings = Settings()
    assert bus.event_publisher(settings) is local_bus
    assert bus.new_announcer(settings) is local_bus
    assert bus.announcer_for(settings) is local_bus
    assert isinstance(bus.inbox_feed(settings, lambda a: None, lambda: None), local.LocalFeed)
    local.install(None)
    assert isinstance(bus.new_announcer(settings), InboxAnnouncer)
    assert isinstance(bus.inbox_feed(settings, lambda a: None, lambda: None), InboxFeed)


# --- the clock ---------------------------------------------------------------------------------------------------


@pytest.fixture
def periodic_actors() -> Iterator[tuple[StubBroker, list[dramatiq.Actor]]]:
    broker = StubBroker()
    broker.add_middleware(PeriodiqMiddleware())
    every_minute = dramatiq.actor(lambda: None, actor_name="every_minute", broker=broker, periodic=cron("* * * * *"))
    quarterly = dramatiq.actor(lambda: None, actor_name="quarterly", broker=broker, periodic=cron("*/15 * * * *"))
    nightly = dramatiq.actor(lambda: None, actor_name="nightly", broker=broker, periodic=cron("17 3 * * *"))
    yield broker, [every_minute, quarterly, nightly]
    broker.close()


@pytest.mark.parametrize(
    ("minute", "due"),
    [
        (dt.datetime(2026, 12, 2, 18, 1, tzinfo=dt.UTC), ["every_minute"]),
        (dt.datetime(2026, 12, 2, 18, 15, tzinfo=dt.UTC), ["every_minute", "quarterly"]),
        (dt.datetime(2026, 12, 3, 3, 17, tzinfo=dt.UTC), ["every_minute", "nightly"]),
    ],
)
def test_the_clock_sends_the_actors_whose_cron_spec_matches_the_minute(
    periodic_actors: tuple[StubBroker, list[dramatiq.Actor]], minute: dt.datetime, due: list[str]
) -> None:
    broker, actors = periodic_actors
    assert [a.actor_name for a in due_actors(actors, minute)] == due
    assert Ticker(actors).tick(minute) == due
    sent = [dramatiq.Message.decode(body) for queue in broker.queues.values() for body in list(queue.queue)]
    assert sorted(message.actor_name for message in sent) == sorted(due)


def test_the_clock_marks_each_message_with_its_minute_so_a_late_one_is_skipped(
    periodic_actors: tuple[StubBroker, list[dramatiq.Actor]],
) -> None:
    broker, actors = periodic_actors
    minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=5)
    Ticker(actors[:1]).tick(minute)
    (body,) = list(broker.queues["default"].queue)
    message = dramatiq.Message.decode(body)
    assert message.options["scheduled_at"] == minute.isoformat()
    with pytest.raises(SkipMessage):  # periodiq's own rule: older than its skip delay
        PeriodiqMiddleware(skip_delay=60).before_process_message(broker, message)


def test_the_next_minute_starts_on_the_minute() -> None:
    assert next_minute(dt.datetime(2026, 12, 2, 18, 1, 59, 999, tzinfo=dt.UTC)) == dt.datetime(
        2026, 12, 2, 18, 2, tzinfo=dt.UTC
    )
    assert next_minute(dt.datetime(2026, 12, 2, 23, 59, tzinfo=dt.UTC)) == dt.datetime(2026, 12, 3, 0, 0, tzinfo=dt.UTC)


# --- the mail server ---------------------------------------------------------------------------------------------


def test_the_mail_server_keeps_each_email_as_a_file_read_back_newest_first(tmp_path: Path) -> None:
    server = OutboxServer(tmp_path / "outbox").start()
    try:
        for number in (1, 2):
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "t@localhost", "ana@example.test", f"Hello {number}"
            message.set_content(f"text {number}")
            message.add_alternative(f"<p>html {number}</p>", subtype="html")
            with smtplib.SMTP(server.host, server.port, timeout=5) as client:
                client.send_message(message)
    finally:
        server.stop()
    kept = read_outbox(tmp_path / "outbox")
    assert [email.subject for email in kept] == ["Hello 2", "Hello 1"]
    assert kept[0].part("plain") == "text 2\n" and kept[0].part("html") == "<p>html 2</p>\n"
    assert ("To", "ana@example.test") in kept[0].headers()
    assert not list((tmp_path / "outbox").glob("*.tmp"))


@pytest.mark.parametrize("name", ["../secrets.json", "x.eml", ".tidings", "20261202T181957.405528-1.eml/../x"])
def test_a_name_that_is_not_one_of_the_outboxs_files_reads_nothing(tmp_path: Path, name: str) -> None:
    (tmp_path / "secrets.json").write_text("{}")
    assert read_email(tmp_path / "outbox", name) is None


# --- the webhook receiver ----------------------------------------------------------------------------------------


def test_the_receiver_says_which_endpoint_signed_a_request_as_a_standard_webhooks_library_signs_it(
    sqlite_db: str, tmp_path: Path
) -> None:
    secret = new_secret()
    WebhookEndpoint.create(
        id="demo", url="http://127.0.0.1:8000/dev/webhooks/in/demo", secret=secret, types=["*"], changed_at=T0
    )
    body = b'{"type":"match.completed"}'
    when = dt.datetime.now(dt.UTC)
    signature = Webhook(secret).sign("msg_1", when, body.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signature}
    assert signed_by("demo", headers, body) == "demo"
    assert signed_by("demo", headers, body + b" ") is None, "a changed body"
    assert signed_by("other", headers, body) is None, "another label's URL"
    assert signed_by("demo", {**headers, "webhook-signature": "v1,AAAA"}, body) is None
    received = Receiver(tmp_path / "webhooks").keep("demo", headers, body)
    assert Receiver(tmp_path / "webhooks").read() == [received] and received.verified_by == "demo"


# --- the sweep at start ------------------------------------------------------------------------------------------


def test_a_start_finds_every_unfinished_delivery_with_the_time_it_is_due(sqlite_db: str) -> None:
    with clock.use_clock(lambda: T0):
        event = Event.create(source="/t", event_id="e", type="team.invite.sent", data={}, received_at=T0)

        users = iter(["ana", "ben", "chloe", "dan"])

        def delivery(
            status: str, *, held: bool = False, due: dt.datetime = T0, claimed: dt.datetime | None = None
        ) -> int:
            row = Delivery.create(
                event=event, user_id=next(users), channel="email", status=status, held=held,
                next_attempt_at=due, claimed_at=claimed, created_at=T0, updated_at=T0,
            )  # fmt: skip
            return int(row.id)

        pending = delivery(DeliveryStatus.PENDING, due=T0 + dt.timedelta(seconds=30))
        claimed = delivery(DeliveryStatus.SENDING, claimed=T0 - dt.timedelta(seconds=5))
        delivery(DeliveryStatus.PENDING, held=True)  # the release job's
        delivery(DeliveryStatus.SENT)
        pairs, due = orphaned_deliveries(stale_after=600)
    assert pairs == [(pending, "email"), (claimed, "email")]
    assert due == {pending: T0 + dt.timedelta(seconds=30), claimed: T0 + dt.timedelta(seconds=595)}


# --- settings and secrets ----------------------------------------------------------------------------------------


def test_the_embedded_mode_makes_its_secrets_once_readable_by_the_owner_only(tmp_path: Path) -> None:
    paths = DevPaths(tmp_path)
    first, second = dev_secrets(paths), dev_secrets(paths)
    assert first == second and len(first["api_key"]) >= 32
    assert stat.S_IMODE(paths.secrets.stat().st_mode) == 0o600
    assert paths.api_key_file.read_text().strip() == first["api_key"]


def test_the_embedded_mode_keeps_the_users_settings_but_always_uses_its_own_mail_server(tmp_path: Path) -> None:
    paths = DevPaths(tmp_path)
    secrets = dev_secrets(paths)
    mine = {"TIDINGS_DATABASE_URL": "sqlite:////data/mine.db", "TIDINGS_SMTP_URL": "smtp://mail.example:25"}
    env = dev_environment(mine, paths, host="127.0.0.1", port=8123, smtp_url="smtp://127.0.0.1:2525", dev=secrets)
    settings = Settings.from_env(env)
    assert settings.database_url == "sqlite:////data/mine.db"
    assert settings.smtp_url == "smtp://127.0.0.1:2525"
    assert settings.public_url == "http://127.0.0.1:8123" and settings.http_port == 8123
    assert [key.name for key in settings.api_keys] == ["dev"]
    assert {str(network) for network in settings.allow_private_networks} == {"127.0.0.0/8", "::1/128"}
    default = Settings.from_env(
        dev_environment({}, paths, host="127.0.0.1", port=8000, smtp_url="smtp://127.0.0.1:1", dev=secrets)
    )
    assert default.database_url == f"sqlite:///{paths.database.resolve()}"


def test_the_demo_uses_fixed_ids_so_a_second_demo_adds_nothing() -> None:
    now = dt.datetime(2026, 12, 2, 18, 0, tzinfo=dt.UTC)
    first = demo_events("http://127.0.0.1:8000/dev/webhooks/in/", now)
    again = demo_events("http://127.0.0.1:8000/dev/webhooks/in/", now + dt.timedelta(hours=1))
    assert [e["id"] for part in first for e in part] == [e["id"] for part in again for e in part]
    assert len({e["id"] for part in first for e in part}) == sum(len(part) for part in first)
