"""The SMTP channel against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import email.utils

import pytest
import structlog

from channels.base import Notification
from channels.email import SmtpChannel
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import DeliveryError, DeliverySkipped
from dispatcher.core.rendering import Renderer
from dispatcher.core.settings import PROJECT_ROOT, Settings
from dispatcher.pipeline.delivery import run_delivery
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.models import Delivery, DeliveryStatus, User
from tests.support.events import invite, parsed_event
from tests.support.services import free_port
from tests.support.smtp import SmtpServer
from tests.support.tls import Certificate
from tests.support.tls import certificate as certificate  # a fixture

pytestmark = pytest.mark.integration


def make_settings(smtp_url: str, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "TIDINGS_SMTP_URL": smtp_url,
            "TIDINGS_SMTP_TIMEOUT": "5",
            "TIDINGS_MAIL_FROM": "Tidings <noreply@tidings.test>",
            **extra,
        }
    )


def make_notification(
    catalog: Catalog,
    *,
    email: str | None = "ana@example.com",
    delivery_id: int = 7,
    unsubscribe_url: str | None = None,
    name: str | None = "Ana",
    team_name: str = "Wolves",
) -> Notification:
    data = {"team_name": team_name, "inviter_name": "<script>alert(1)</script>", "url": "https://play.example/i/1"}
    event = parsed_event(
        "team.invite.sent",
        {"recipients": ["ana"], **data},
        id="evt-1",
        source="/teams",
        time=dt.datetime(2026, 11, 23, tzinfo=dt.UTC),
    )
    user = User(id="ana", email=email, name=name, timezone="UTC")
    context = {
        "data": data,
        "event": {"id": event.id, "type": event.type, "source": event.source, "time": None, "subject": None},
        "user": {"id": "ana", "name": name, "email": email, "timezone": "UTC", "locale": None},
        "url": data["url"],
        "unsubscribe_url": unsubscribe_url,
    }
    rendered = Renderer(PROJECT_ROOT / "templates").render(event.type, context)
    return Notification(
        delivery_id=delivery_id,
        user_id="ana",
        user=user,
        event=event,
        kind=catalog.types[event.type],
        rendered=rendered,
        url=data["url"],
        unsubscribe_url=unsubscribe_url,
    )


def test_an_email_is_multipart_alternative_with_escaped_html_and_automatic_headers(
    smtp_server: SmtpServer, catalog: Catalog
) -> None:
    # given
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    # when
    channel.deliver(make_notification(catalog))
    # then
    [message] = smtp_server.messages
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "<script>alert(1)</script> invited you to join the team Wolves" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert message["To"] == "Ana <ana@example.com>"
    assert message["From"] == "Tidings <noreply@tidings.test>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].startswith("<tidings.7.") and message["Message-ID"].endswith("@tidings.test>")
    assert message["Date"] is not None
    assert message["List-Unsubscribe"] is None
    assert smtp_server.handler.envelopes == [("noreply@tidings.test", ["ana@example.com"])]


def test_the_message_id_is_the_same_on_every_attempt_of_one_delivery(smtp_server: SmtpServer, catalog: Catalog) -> None:
    # given
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    # when
    channel.deliver(make_notification(catalog))
    channel.deliver(make_notification(catalog))
    channel.deliver(make_notification(catalog, delivery_id=8))
    # then
    ids = [m["Message-ID"] for m in smtp_server.messages]
    assert ids[0] == ids[1] != ids[2]


def test_one_click_unsubscribe_headers_are_sent_when_there_is_an_unsubscribe_url(
    smtp_server: SmtpServer, catalog: Catalog
) -> None:
    # given
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    link = "https://play.example/unsubscribe/abc.def"
    # when
    channel.deliver(make_notification(catalog, unsubscribe_url=link))
    # then
    [message] = smtp_server.messages
    assert message["List-Unsubscribe"] == f"<{link}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link in message.get_body(("plain",)).get_content()


def test_a_user_without_an_email_address_is_skipped_with_the_reason(smtp_server: SmtpServer, catalog: Catalog) -> None:
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    with pytest.raises(DeliverySkipped, match="no email address"):
        channel.deliver(make_notification(catalog, email=None))
    assert smtp_server.messages == []


def test_a_4xx_reply_is_a_transient_error_and_a_5xx_reply_a_permanent_one(
    smtp_server: SmtpServer, catalog: Catalog
) -> None:
    # given
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    smtp_server.reply_next("451 4.3.0 try again later", "550 5.1.1 no such mailbox")
    # when / then
    with pytest.raises(DeliveryError, match="451") as transient:
        channel.deliver(make_notification(catalog))
    assert transient.value.permanent is False
    with pytest.raises(DeliveryError, match="550") as permanent:
        channel.deliver(make_notification(catalog))
    assert permanent.value.permanent is True
    channel.deliver(make_notification(catalog))
    assert len(smtp_server.messages) == 1


def test_a_refused_connection_is_a_transient_error(catalog: Catalog) -> None:
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{free_port()}"))
    with pytest.raises(DeliveryError, match="connection failed") as error:
        channel.deliver(make_notification(catalog))
    assert error.value.permanent is False


def test_one_connection_is_reused_for_the_messages_of_a_thread(smtp_server: SmtpServer, catalog: Catalog) -> None:
    # given
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    # when
    for delivery_id in range(3):
        channel.deliver(make_notification(catalog, delivery_id=delivery_id))
    # then
    assert len(smtp_server.peers) == 3
    assert len(set(smtp_server.peers)) == 1


@pytest.mark.parametrize("check_idle_after", [0.0, 60.0], ids=["checked-with-noop", "found-at-mail-from"])
def test_a_connection_the_server_dropped_is_replaced_without_failing_the_delivery(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch, check_idle_after: float
) -> None:
    # given a channel holding a connection to a server that then restarts
    monkeypatch.setattr("channels.email.CHECK_IDLE_AFTER", check_idle_after)
    first = SmtpServer().start()
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{first.port}"))
    channel.deliver(make_notification(catalog))
    first.stop()
    second = SmtpServer(port=first.port).start()
    try:
        # when
        channel.deliver(make_notification(catalog, delivery_id=8))
        # then
        assert len(second.messages) == 1
    finally:
        second.stop()


def test_starttls_delivers_when_the_certificate_verifies(certificate: Certificate, catalog: Catalog) -> None:
    # given a server that requires STARTTLS, and a CA file that trusts its certificate
    server = SmtpServer(tls_context=certificate.server_context(), require_starttls=True).start()
    try:
        channel = SmtpChannel(
            make_settings(f"smtp+starttls://127.0.0.1:{server.port}", TIDINGS_SMTP_CA_FILE=str(certificate.ca_file))
        )
        # when
        channel.deliver(make_notification(catalog))
        # then
        assert len(server.messages) == 1
    finally:
        server.stop()


def test_starttls_refuses_a_certificate_it_cannot_verify(certificate: Certificate, catalog: Catalog) -> None:
    # given the same server but no CA file: its certificate, from an unknown CA, is not trusted
    server = SmtpServer(tls_context=certificate.server_context(), require_starttls=True).start()
    try:
        channel = SmtpChannel(make_settings(f"smtp+starttls://127.0.0.1:{server.port}"))
        # when / then
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            channel.deliver(make_notification(catalog))
        assert server.messages == []
    finally:
        server.stop()


def test_smtps_delivers_over_tls_from_the_first_byte(certificate: Certificate, catalog: Catalog) -> None:
    server = SmtpServer(ssl_context=certificate.server_context()).start()
    try:
        channel = SmtpChannel(
            make_settings(f"smtps://127.0.0.1:{server.port}", TIDINGS_SMTP_CA_FILE=str(certificate.ca_file))
        )
        channel.deliver(make_notification(catalog))
        assert len(server.messages) == 1
    finally:
        server.stop()


# Headers built from user and event data, checked in the bytes the server received: that is what
# a receiving mail system parses, whatever our own EmailMessage object believed it held.


def received(server: SmtpServer) -> email.message.EmailMessage:
    [raw] = server.raw_messages
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def to_addresses(server: SmtpServer) -> list[str]:
    """Every address the To header of the one received message resolves to."""
    return [address for _, address in email.utils.getaddresses(received(server).get_all("To", []))]


def test_a_display_name_holding_a_comma_and_an_address_cannot_add_a_recipient(
    smtp_server: SmtpServer, catalog: Catalog
) -> None:
    # given
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    # when
    channel.deliver(make_notification(catalog, name="Zoë, Mallory <evil@attacker.test>"))
    # then the whole name stays one display name, and the only address is the user's
    assert to_addresses(smtp_server) == ["ana@example.com"]
    assert received(smtp_server)["To"].addresses[0].display_name == "Zoë, Mallory <evil@attacker.test>"
    assert [a for _, a in email.utils.getaddresses(received(smtp_server).get_all("From"))] == ["noreply@tidings.test"]
    assert smtp_server.handler.envelopes == [("noreply@tidings.test", ["ana@example.com"])]


def test_a_line_separator_in_a_display_name_is_a_space_and_adds_no_recipient(
    smtp_server: SmtpServer, catalog: Catalog
) -> None:
    # given
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    # when
    channel.deliver(make_notification(catalog, name="Mallory\u2028evil@attacker.test, x"))
    # then
    assert to_addresses(smtp_server) == ["ana@example.com"]
    assert received(smtp_server)["To"].addresses[0].display_name == "Mallory evil@attacker.test, x"
    assert "\u2028".encode() not in smtp_server.raw_messages[0]


def test_a_vertical_tab_in_a_display_name_does_not_stop_the_email(smtp_server: SmtpServer, catalog: Catalog) -> None:
    # given: a name that used to fail every email to this user with ValueError, retried forever
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    # when
    channel.deliver(make_notification(catalog, name="Ana\x0bSmith"))
    # then
    assert to_addresses(smtp_server) == ["ana@example.com"]
    assert received(smtp_server)["To"].addresses[0].display_name == "Ana Smith"
    assert b"\x0b" not in smtp_server.raw_messages[0]


def test_bidi_overrides_are_removed_from_the_subject_and_the_display_name(
    smtp_server: SmtpServer, catalog: Catalog
) -> None:
    # given: U+202E would show "Ana\u202egnp.exe" as "Anaexe.png" and turn the subject around
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    # when
    channel.deliver(make_notification(catalog, name="Ana\u202egnp.exe", team_name="\u2066Wolves\u202e\u200b"))
    # then
    message = received(smtp_server)
    assert message["To"].addresses[0].display_name == "Anagnp.exe"
    assert message["Subject"] == "<script>alert(1)</script> invited you to join Wolves"
    assert to_addresses(smtp_server) == ["ana@example.com"]


def test_a_subject_with_control_and_format_characters_is_cleaned_by_the_channel_itself(
    smtp_server: SmtpServer, catalog: Catalog
) -> None:
    # given a rendered subject that did not come through the renderer's own cleaning
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    notification = make_notification(catalog)
    rendered = dataclasses.replace(notification.rendered, subject="Pay \u202e\x0b now\u2029\x00 please")
    # when
    channel.deliver(dataclasses.replace(notification, rendered=rendered))
    # then
    assert received(smtp_server)["Subject"] == "Pay now please"


@pytest.mark.parametrize("address", ["ana@exam\x0bple.com", "ana@example.com, evil@attacker.test", "ana@", "ana"])
def test_an_address_that_cannot_be_a_header_fails_permanently_without_naming_it(
    smtp_server: SmtpServer, catalog: Catalog, address: str
) -> None:
    # given
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    # when / then: permanent, so it is not retried forever, and the reason holds no address
    with pytest.raises(DeliveryError, match="email address cannot be a To header") as error:
        channel.deliver(make_notification(catalog, email=address))
    assert error.value.permanent is True
    assert "ana" not in str(error.value) and error.value.__cause__ is None
    assert smtp_server.messages == []


def test_a_non_ascii_address_fails_permanently_when_the_server_has_no_smtputf8(catalog: Catalog) -> None:
    # given a server that does not offer SMTPUTF8 (smtplib would raise SMTPNotSupportedError, read as transient)
    server = SmtpServer(enable_SMTPUTF8=False).start()
    try:
        channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{server.port}"))
        # when / then
        with pytest.raises(DeliveryError, match="SMTPUTF8") as error:
            channel.deliver(make_notification(catalog, email="ana@exämple.com"))
        assert error.value.permanent is True
        assert server.messages == []
    finally:
        server.stop()


def test_a_non_ascii_address_is_delivered_when_the_server_offers_smtputf8(
    smtp_server: SmtpServer, catalog: Catalog
) -> None:
    # given
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    # when
    channel.deliver(make_notification(catalog, email="ana@exämple.com"))
    # then
    assert to_addresses(smtp_server) == ["ana@exämple.com"]


# SMTP replies often quote the recipient; the failure reason is logged and stored, so it must not.


@pytest.mark.parametrize(
    "reply",
    [
        "550 5.1.1 <ana@example.com>: Recipient address rejected: User unknown",
        "550 5.1.1 <ANA@Example.COM>... User unknown",
    ],
)
def test_a_refused_recipient_is_not_named_in_the_error(smtp_server: SmtpServer, catalog: Catalog, reply: str) -> None:
    # given
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    smtp_server.reply_to_rcpt_next(reply)
    # when / then
    with pytest.raises(DeliveryError, match="550 5.1.1 <recipient>") as error:
        channel.deliver(make_notification(catalog))
    assert error.value.permanent is True
    assert "ana@example.com" not in str(error.value).lower()


def test_a_data_reply_quoting_the_recipient_is_not_named_in_the_error(
    smtp_server: SmtpServer, catalog: Catalog
) -> None:
    # given
    channel = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    smtp_server.reply_next("554 5.7.1 message to ana@example.com refused as spam")
    # when / then
    with pytest.raises(DeliveryError) as error:
        channel.deliver(make_notification(catalog))
    assert str(error.value) == "SMTP 554 5.7.1 message to <recipient> refused as spam"


def test_a_delivery_refused_with_the_address_echoed_records_and_logs_no_address(
    db: str, catalog: Catalog, smtp_server: SmtpServer
) -> None:
    # given a real email delivery to a user, and a server that rejects the recipient quoting it
    User.create(id="ana", email="ana@example.com", name="Ana", changed_at=dt.datetime(2026, 1, 1))
    event = parsed_event(
        "team.invite.sent",
        invite(["ana"], inviter_name="Bo", url="https://play.example/i/1"),
        id="evt-550",
        source="/teams",
    )
    [(delivery_id, _)] = ingest_event(event, catalog, ["email"]).to_enqueue
    settings = make_settings(f"smtp://127.0.0.1:{smtp_server.port}")
    smtp_server.reply_to_rcpt_next("550 5.1.1 <ana@example.com>: Recipient address rejected: User unknown")
    # when
    with structlog.testing.capture_logs() as logs:
        outcome = run_delivery(SmtpChannel(settings), delivery_id, message_id="m-1", settings=settings, catalog=catalog)
    # then
    assert outcome.status == DeliveryStatus.FAILED
    stored = Delivery.get_by_id(delivery_id).last_error
    assert "<recipient>" in stored and "ana@example.com" not in stored
    [failed] = [line for line in logs if line["event"] == "delivery_failed"]
    assert "<recipient>" in failed["error"]
    assert "ana@example.com" not in repr(logs)
