"""The embedded mode's mail server: an SMTP server on loopback that keeps every email as an .eml file.

Email goes out through the real email channel, over SMTP, to this server (aiosmtpd); each message is
written to ``<outbox>/<time>-<n>.eml`` (written to a temporary name, then renamed, so a reader never
sees half a file). :func:`read_outbox` and :func:`read_email` read them back for the /dev/outbox pages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.policy
import itertools
import os
import re
import socket
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.controller import Controller

log = structlog.get_logger("tidings.outbox")

#: Bytes an email may have at most (the server answers 552 past it).
MAX_EMAIL_BYTES = 10 * 1024 * 1024
#: How a stored email's file is named; anything else in the directory is ignored.
NAME = re.compile(r"^[0-9]{8}T[0-9]{6}\.[0-9]{6}-[0-9]+\.eml$")


class OutboxHandler:
    """aiosmtpd's handler: accept every message and keep it in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._numbers = itertools.count(1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%f")
        path = self.directory / f"{stamp}-{next(self._numbers)}.eml"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(content)
        os.replace(temporary, path)
        log.info("email_kept", file=path.name, recipients=len(envelope.rcpt_tos), size=len(content))
        return "250 Message accepted for delivery"


class OutboxServer:
    """The SMTP server, in a thread of its own (aiosmtpd's Controller); ``port`` 0 takes a free one."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.host = host
        self.port = port or free_port(host)
        self._controller = Controller(
            OutboxHandler(directory), hostname=host, port=self.port, data_size_limit=MAX_EMAIL_BYTES
        )

    @property
    def url(self) -> str:
        """The TIDINGS_SMTP_URL that reaches it."""
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> OutboxServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclasses.dataclass(frozen=True)
class KeptEmail:
    """One stored email, parsed."""

    name: str
    message: EmailMessage
    size: int

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def sender(self) -> str:
        return str(self.message.get("From", ""))

    @property
    def recipients(self) -> str:
        return str(self.message.get("To", ""))

    @property
    def date(self) -> str:
        return str(self.message.get("Date", ""))

    def part(self, subtype: str) -> str | None:
        """The text/``subtype`` body, or None."""
        body = self.message.get_body(preferencelist=(subtype,))
        if body is None or body.get_content_type() != f"text/{subtype}":
            return None
        content: str = body.get_content()  # type: ignore[attr-defined] # EmailMessage's, under the default policy
        return content.replace("\r\n", "\n")  # as it came over SMTP: CRLF

    def headers(self) -> list[tuple[str, str]]:
        return [(name, str(value)) for name, value in self.message.items()]


def read_email(directory: Path, name: str) -> KeptEmail | None:
    """The email stored as ``name`` in ``directory``; None if there is none (or the name is not one of ours)."""
    if not NAME.match(name):
        return None
    path = directory / name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage), "the default policy makes EmailMessage"
    return KeptEmail(name=name, message=message, size=len(raw))


def read_outbox(directory: Path, *, limit: int = 200) -> list[KeptEmail]:
    """The newest ``limit`` emails, newest first."""
    if not directory.is_dir():
        return []
    names = sorted((p.name for p in directory.iterdir() if NAME.match(p.name)), key=_order, reverse=True)
    kept = (read_email(directory, name) for name in names[:limit])
    return [email for email in kept if email is not None]


def _order(name: str) -> tuple[str, int]:
    stamp, _, number = name.removesuffix(".eml").partition("-")
    return stamp, int(number)
