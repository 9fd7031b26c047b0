"""Email over SMTP: multipart text and HTML, one connection reused per worker thread.

TIDINGS_SMTP_URL chooses the transport: ``smtp://`` (plain), ``smtp+starttls://``
(STARTTLS, port 587 by default) or ``smtps://`` (TLS from the first byte, port
465). TLS always verifies the server's certificate and host name.

Headers are built so that event and user data cannot spoof or break them: every
address is an :class:`email.headerregistry.Address` object (a display name is
quoted or encoded as one phrase, never re-parsed as addresses), and every text
taken from an event or a user goes through :func:`dispatcher.rendering.one_line`
(control and format characters removed, whitespace collapsed). A message that
still cannot be built fails permanently. Error messages made from SMTP replies
name the recipient ``<recipient>``, never by address.

The one-click unsubscribe headers are written verbatim on one line (:class:`LinkHeadersPolicy`):
folded or encoded, mail clients cannot use them.

The From header's display name is TIDINGS_MAIL_FROM's, else TIDINGS_PRODUCT_NAME. The text part is the
rendered email text (templates/_layouts/email.txt: greeting, body, footer), as the HTML part is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import re
import smtplib
import ssl
import threading
import time
import urllib.parse
from email.errors import HeaderParseError
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from pathlib import Path
from typing import Any

from dispatcher.core import clock
from dispatcher.core.errors import ConfigError, DeliveryError, DeliverySkipped
from dispatcher.core.rendering import one_line
from dispatcher.core.settings import Settings, redact_url

from .base import Channel, Notification

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
#: A connection idle for longer is checked with NOOP before reuse (servers drop idle ones).
CHECK_IDLE_AFTER = 5.0
#: What error messages say instead of the recipient's address, which SMTP replies often echo.
RECIPIENT_PLACEHOLDER = "<recipient>"
#: What the email package raises for a value that cannot become a header.
HEADER_ERRORS = (ValueError, TypeError, IndexError, HeaderParseError)
#: RFC 5322's limit on a line, CRLF excluded.
MAX_LINE_LENGTH = 998
#: The one-click unsubscribe headers (RFC 2369, RFC 8058): never folded, never encoded.
LINK_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})


class LinkHeadersPolicy(EmailPolicy):
    """The default email policy, except that the link headers are written on one line, verbatim.

    The default policy folds at 78 columns, and a value with no space to fold at (a link with a
    long token) becomes RFC 2047 encoded-words (``=?utf-8?q?=3Chttps=3A//…``), which RFC 2047
    forbids in List-Unsubscribe: mail clients then cannot find the link and one-click fails.
    Those headers alone are folded with a 998-column limit. Raising the limit for every header
    instead would make a long Subject one encoded-word longer than the 75 characters RFC 2047
    allows. Values are still parsed and checked by the policy (no CR or LF gets in).
    """

    def fold(self, name: str, value: Any) -> str:
        policy = self.clone(max_line_length=MAX_LINE_LENGTH) if name.lower() in LINK_HEADERS else self
        folded: str = EmailPolicy.fold(policy, name, value)
        return folded

    def fold_binary(self, name: str, value: Any) -> bytes:
        policy = self.clone(max_line_length=MAX_LINE_LENGTH) if name.lower() in LINK_HEADERS else self
        return EmailPolicy.fold_binary(policy, name, value)


class HeaderClasses(HeaderRegistry):
    """The email package's header classes, each made once per name: HeaderRegistry makes a new class for
    every header it parses, a tenth of the time it takes to build and send a message (bench/README.md)."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


#: The policy every message is built and sent with (smtplib generates with the message's policy).
POLICY = LinkHeadersPolicy(header_factory=HeaderClasses())


def list_unsubscribe(url: str) -> str | None:
    """The List-Unsubscribe value for ``url`` (``<url>``), or None if it cannot be sent verbatim on one line.

    Such a link (not ASCII, or too long) would be folded or encoded, which breaks it: the message
    goes without the header then (its body still has the link).
    """
    value = f"<{url}>"
    if not value.isascii() or len(f"List-Unsubscribe: {value}") > MAX_LINE_LENGTH or not value.isprintable():
        return None
    return value


@dataclasses.dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect, parsed from TIDINGS_SMTP_URL."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ConfigError("TIDINGS_SMTP_URL must look like smtp://host:port, smtp+starttls://… or smtps://…")
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=parts.port or DEFAULT_PORTS[parts.scheme],
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
        )


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A context that verifies certificates and host names (smtplib's default does not)."""
    return ssl.create_default_context(cafile=ca_file)


def mailbox(display_name: str | None, address: str) -> Address:
    """An Address for a header; raises ValueError (or HeaderParseError) if it cannot be one."""
    return Address(display_name=one_line(display_name or ""), addr_spec=address)


def without_address(text: str, address: str) -> str:
    """``text`` (an SMTP server's reply) with every mention of ``address`` replaced, in any case."""
    if not address:
        return text
    return re.sub(f"<?{re.escape(address)}>?", RECIPIENT_PLACEHOLDER, text, flags=re.IGNORECASE)


def classify(error: Exception, address: str = "") -> DeliveryError:
    """SMTP replies 5xx are permanent; 4xx replies and connection trouble are transient.

    The message never holds ``address`` (the recipient's), even where the server's reply did.
    """
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        detail = "; ".join(f"{code} {_text(msg)}" for code, msg in error.recipients.values())
        return DeliveryError(
            f"recipient refused: {without_address(detail, address)}", permanent=all(500 <= c < 600 for c in codes)
        )
    if isinstance(error, smtplib.SMTPResponseException):
        text = without_address(_text(error.smtp_error), address)
        return DeliveryError(f"SMTP {error.smtp_code} {text}", permanent=500 <= error.smtp_code < 600)
    return DeliveryError(without_address(f"SMTP connection failed: {type(error).__name__}: {error}", address))


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def connect(target: SmtpTarget, timeout: float, ca_file: Path | None = None) -> smtplib.SMTP:
    """A new connection to ``target``, greeted (EHLO), with TLS and logged in as its URL says."""
    ca = str(ca_file) if ca_file else None
    connection: smtplib.SMTP
    if target.scheme == "smtps":
        connection = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=tls_context(ca))
    else:
        connection = smtplib.SMTP(target.host, target.port, timeout=timeout)
    try:
        connection.ehlo()
        if target.scheme == "smtp+starttls":
            connection.starttls(context=tls_context(ca))
            connection.ehlo()
        if target.username:
            connection.login(target.username, target.password or "")
    except BaseException:
        connection.close()
        raise
    return connection


class SmtpChannel(Channel):
    """Sends each email delivery through TIDINGS_SMTP_URL."""

    name = "email"
    addresses = "user"
    quiet_hours = True
    digests = True
    unsubscribe_link = True
    process_group = "sender"
    priority = 10  # behind in-app when threads are scarce
    batch_size = 10  # small, so a large fan-out spreads over the worker threads

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.target = SmtpTarget.from_url(settings.smtp_url)
        try:
            display_name, address = email.utils.parseaddr(settings.mail_from)
            self.mail_from = mailbox(display_name or settings.product_name, address)
        except HEADER_ERRORS as e:
            raise ConfigError(f"TIDINGS_MAIL_FROM is not a mail address ({e})") from None
        if not (self.mail_from.username and self.mail_from.domain):
            raise ConfigError("TIDINGS_MAIL_FROM is not a mail address")
        self.sender = self.mail_from.addr_spec
        self.domain = self.sender.rpartition("@")[2] or "localhost"
        self._local = threading.local()
        self._all: list[smtplib.SMTP] = []
        self._lock = threading.Lock()

    def deliver(self, notification: Notification) -> None:
        user = notification.user
        if user is None:
            raise DeliverySkipped("unknown user: no tidings.user.upsert has named it")
        if not user.email:
            raise DeliverySkipped("the user has no email address")
        message = self.build_message(notification, user.email, user.name)
        recipient = message["To"].addresses[0].addr_spec  # as parsed, so envelope and header agree
        try:
            self._send(message, recipient)
        except (smtplib.SMTPException, OSError) as e:
            self._drop_connection()
            raise classify(e, recipient) from e

    def build_message(self, notification: Notification, address: str, name: str | None) -> EmailMessage:
        """The multipart/alternative message for one delivery.

        Raises a permanent DeliveryError if it cannot be built: the same data would fail the
        same way on every retry. The reason names no address (it is logged).
        """
        # The email package's errors quote the address: "from None" keeps them out of the logs.
        try:
            to = mailbox(name, address)
        except HEADER_ERRORS as e:
            raise DeliveryError(
                f"the user's email address cannot be a To header ({type(e).__name__})", permanent=True
            ) from None
        try:
            return self._message(notification, to)
        except (*HEADER_ERRORS, UnicodeError) as e:
            raise DeliveryError(
                f"the notification cannot be made into an email ({type(e).__name__})", permanent=True
            ) from None

    def _message(self, notification: Notification, to: Address) -> EmailMessage:
        rendered = notification.rendered
        message = EmailMessage(policy=POLICY)
        message["From"] = self.mail_from
        message["To"] = to
        message["Subject"] = one_line(rendered.subject)
        message["Date"] = email.utils.format_datetime(clock.now().replace(tzinfo=dt.UTC))
        # Stable across retries, so a receiving system can drop a duplicate.
        digest = hashlib.sha256(f"{notification.event.source}\x00{notification.event.id}".encode()).hexdigest()[:16]
        message["Message-ID"] = f"<tidings.{notification.delivery_id}.{digest}@{self.domain}>"
        message["Auto-Submitted"] = "auto-generated"
        message["X-Auto-Response-Suppress"] = "All"
        link = list_unsubscribe(notification.unsubscribe_url) if notification.unsubscribe_url else None
        if link:
            # RFC 8058: the POST a mail client sends to the link turns this type's email off.
            message["List-Unsubscribe"] = link
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        text = rendered.email_text
        if text is None:  # a templates folder without _layouts/email.txt: the body, and the link after it
            text = rendered.text
            if notification.unsubscribe_url:
                text += f"\n--\nUnsubscribe: {notification.unsubscribe_url}\n"
        message.set_content(text)
        message.add_alternative(rendered.html, subtype="html")
        return message

    def _send(self, message: EmailMessage, address: str) -> None:
        connection, fresh = self._connection()
        if not (address.isascii() and self.sender.isascii()) and not connection.has_extn("smtputf8"):
            # smtplib would raise SMTPNotSupportedError, which reads as a transient failure.
            raise DeliveryError(
                "the email address is not ASCII and the SMTP server does not offer SMTPUTF8", permanent=True
            )
        try:
            refused = connection.send_message(message, from_addr=self.sender, to_addrs=[address])
        except (smtplib.SMTPServerDisconnected, ConnectionResetError, BrokenPipeError):
            if fresh:
                raise
            # The server dropped a connection we reused: that shows at MAIL FROM, before
            # any message data, so one try on a new connection cannot send it twice.
            self._drop_connection()
            connection, _ = self._connection()
            refused = connection.send_message(message, from_addr=self.sender, to_addrs=[address])
        if refused:  # only when some of several recipients fail; kept for safety
            raise smtplib.SMTPRecipientsRefused(refused)

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        """This thread's open connection (checked with NOOP if it sat idle), or a new one (True)."""
        connection: smtplib.SMTP | None = getattr(self._local, "connection", None)
        now = time.monotonic()
        if connection is not None:
            if now - self._local.used_at < CHECK_IDLE_AFTER:
                self._local.used_at = now
                return connection, False
            try:
                if connection.noop()[0] == 250:
                    self._local.used_at = now
                    return connection, False
            except (smtplib.SMTPException, OSError):
                pass
            self._drop_connection()
        connection = self._connect()
        self._local.connection = connection
        self._local.used_at = now
        with self._lock:
            self._all.append(connection)
        return connection, True

    @classmethod
    def unreachable(cls, settings: Settings, *, timeout: float) -> str | None:
        """Connects, greets, starts TLS and logs in as a delivery would, then quits: the reason it failed, or None."""
        try:
            target = SmtpTarget.from_url(settings.smtp_url)
            connect(target, min(timeout, settings.smtp_timeout), settings.smtp_ca_file).quit()
        except (smtplib.SMTPException, OSError, ConfigError) as e:
            where = redact_url(settings.smtp_url)
            return f"the SMTP server {where} cannot be reached ({type(e).__name__}: {e})"
        return None

    def _connect(self) -> smtplib.SMTP:
        return connect(self.target, self.settings.smtp_timeout, self.settings.smtp_ca_file)

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            with self._lock:
                if connection in self._all:
                    self._all.remove(connection)
            try:
                connection.close()
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
        for connection in connections:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()
