"""The one-click unsubscribe headers go out verbatim, on one line: folded or encoded, mail clients cannot use them.

Checked on the bytes as smtplib generates them (BytesGenerator with the message's policy, CRLF) and, last, on
the bytes a real SMTP server receives.
"""

from __future__ import annotations

import email.policy
import io
from email.generator import BytesGenerator
from email.message import EmailMessage

import pytest

from channels.email import SmtpChannel
from dispatcher.core.catalog import Catalog
from dispatcher.core.unsubscribe import make_token
from tests.support.smtp import SmtpServer
from tests.test_email_channel import make_notification, make_settings

#: A link as long as Tidings makes them for long ids: far past 78 columns, with nowhere to fold.
LINK = "https://notifications.play.example/unsubscribe/" + make_token(
    "k" * 40, "user-" + "x" * 120, "team.invite.sent", ttl=3600
)


def channel() -> SmtpChannel:
    return SmtpChannel(make_settings("smtp://127.0.0.1:2525"))  # never connects: build_message only


def as_sent(message: EmailMessage) -> bytes:
    """The bytes smtplib's send_message writes for an ASCII message."""
    out = io.BytesIO()
    BytesGenerator(out).flatten(message, linesep="\r\n")
    return out.getvalue()


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def test_a_long_unsubscribe_link_is_sent_verbatim_on_one_line(catalog: Catalog) -> None:
    # given
    assert len(LINK) > 200
    message = channel().build_message(make_notification(catalog, unsubscribe_url=LINK), "ana@example.com", "Ana")
    # when
    headers = header_block(as_sent(message))
    # then
    assert f"List-Unsubscribe: <{LINK}>\r\n".encode() in headers
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in headers
    assert b"=?utf-8?q?=3Chttps" not in headers.lower()
    # the next line is another header, not a continuation of the link
    after = headers.split(f"<{LINK}>\r\n".encode(), 1)[1]
    assert not after.startswith((b" ", b"\t"))


def test_other_headers_are_folded_as_the_default_policy_folds_them(catalog: Catalog) -> None:
    # given a long subject that is not ASCII
    notification = make_notification(catalog, unsubscribe_url=LINK, team_name="Wölfe " * 30)
    message = channel().build_message(notification, "ana@example.com", "Ana")
    # when
    headers = header_block(as_sent(message)).decode("ascii")
    # then: lines of at most 78 characters and short encoded-words, as email.policy.default makes them
    subject = EmailMessage(policy=email.policy.default)
    subject["Subject"] = message["Subject"]
    assert header_block(as_sent(subject)).decode("ascii") in headers
    lines = headers.split("\r\n")
    assert all(len(line) <= 78 for line in lines if not line.startswith("List-Unsubscribe:"))
    assert len([line for line in lines if "=?utf-8?" in line]) > 2


@pytest.mark.parametrize(
    "link",
    [
        pytest.param("https://play.example/unsubscribe/a\r\nBcc: eve@example.com", id="crlf"),
        pytest.param("https://play.example/unsubscribe/" + "a" * 1000, id="longer-than-a-line"),
        pytest.param("https://plåy.example/unsubscribe/abc", id="not-ascii"),
    ],
)
def test_a_link_that_cannot_go_verbatim_on_one_line_sends_no_unsubscribe_header(catalog: Catalog, link: str) -> None:
    # when
    message = channel().build_message(make_notification(catalog, unsubscribe_url=link), "ana@example.com", "Ana")
    # then: no header at all (a folded or encoded one would break), and nothing injected
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    assert message["Bcc"] is None
    assert b"\r\nBcc:" not in header_block(as_sent(message))


@pytest.mark.integration
def test_the_smtp_server_receives_the_link_verbatim_in_the_raw_message(
    smtp_server: SmtpServer, catalog: Catalog
) -> None:
    # given
    sender = SmtpChannel(make_settings(f"smtp://127.0.0.1:{smtp_server.port}"))
    # when
    sender.deliver(make_notification(catalog, unsubscribe_url=LINK))
    # then
    [raw] = smtp_server.raw_messages
    headers = header_block(raw)
    assert f"\r\nList-Unsubscribe: <{LINK}>\r\n".encode() in headers
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in headers
    assert b"=?utf-8?" not in headers.split(b"List-Unsubscribe:", 1)[1].split(b"\r\n", 1)[0]
