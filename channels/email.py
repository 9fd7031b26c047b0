"""Email over SMTP: multipart text and HTML, one connection reused per worker thread.

TIDINGS_SMTP_URL chooses the transport: ``smtp://`` (plain), ``smtp+starttls://``
(STARTTLS, port 587 by default) or ``smtps://`` (TLS from the first byte, port
465). TLS always verifies the server's certificate and host name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import smtplib
import ssl
import threading
import time
import urllib.parse
from email.message import EmailMessage

from dispatcher import clock
from dispatcher.errors import ConfigError, DeliveryError, DeliverySkipped
from dispatcher.settings import Settings

from .base import Channel, Notification

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
#: A connection idle for longer is checked with NOOP before reuse (servers drop idle ones).
CHECK_IDLE_AFTER = 5.0


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


def classify(error: Exception) -> DeliveryError:
    """SMTP replies 5xx are permanent; 4xx replies and connection trouble are transient."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        detail = "; ".join(f"{code} {msg.decode(errors='replace')}" for code, msg in error.recipients.values())
        return DeliveryError(f"recipient refused: {detail}", permanent=all(500 <= c < 600 for c in codes))
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else error.smtp_error
        return DeliveryError(f"SMTP {error.smtp_code} {text}", permanent=500 <= error.smtp_code < 600)
    return DeliveryError(f"SMTP connection failed: {type(error).__name__}: {error}")


class SmtpChannel(Channel):
    """Sends each email delivery through TIDINGS_SMTP_URL."""

    name = "email"
    priority = 10  # behind in-app when threads are scarce
    batch_size = 10  # small, so a large fan-out spreads over the worker threads

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.target = SmtpTarget.from_url(settings.smtp_url)
        self.sender = email.utils.parseaddr(settings.mail_from)[1]
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
        try:
            self._send(message, user.email)
        except (smtplib.SMTPException, OSError) as e:
            self._drop_connection()
            raise classify(e) from e

    def build_message(self, notification: Notification, address: str, name: str | None) -> EmailMessage:
        """The multipart/alternative message for one delivery."""
        rendered = notification.rendered
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = email.utils.formataddr((name or "", address))
        message["Subject"] = rendered.subject
        message["Date"] = email.utils.format_datetime(clock.now().replace(tzinfo=dt.timezone.utc))
        # Stable across retries, so a receiving system can drop a duplicate.
        digest = hashlib.sha256(f"{notification.event.source}\x00{notification.event.id}".encode()).hexdigest()[:16]
        message["Message-ID"] = f"<tidings.{notification.delivery_id}.{digest}@{self.domain}>"
        message["Auto-Submitted"] = "auto-generated"
        message["X-Auto-Response-Suppress"] = "All"
        if notification.unsubscribe_url:
            message["List-Unsubscribe"] = f"<{notification.unsubscribe_url}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        text = rendered.text
        if notification.unsubscribe_url:
            text += f"\n--\nUnsubscribe: {notification.unsubscribe_url}\n"
        message.set_content(text)
        message.add_alternative(rendered.html, subtype="html")
        return message

    def _send(self, message: EmailMessage, address: str) -> None:
        connection, fresh = self._connection()
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

    def _connect(self) -> smtplib.SMTP:
        target, timeout = self.target, self.settings.smtp_timeout
        ca_file = str(self.settings.smtp_ca_file) if self.settings.smtp_ca_file else None
        connection: smtplib.SMTP
        if target.scheme == "smtps":
            connection = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=tls_context(ca_file))
        else:
            connection = smtplib.SMTP(target.host, target.port, timeout=timeout)
        try:
            connection.ehlo()
            if target.scheme == "smtp+starttls":
                connection.starttls(context=tls_context(ca_file))
                connection.ehlo()
            if target.username:
                connection.login(target.username, target.password or "")
        except BaseException:
            connection.close()
            raise
        return connection

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
