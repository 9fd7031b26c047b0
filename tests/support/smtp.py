"""A real SMTP server for tests (aiosmtpd), with scriptable replies."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections import deque
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from .services import free_port


class RecordingHandler:
    """Keeps every accepted message; replies from ``scripted`` first, if any."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []  # each accepted message's bytes, exactly as the client sent them
        self.envelopes: list[tuple[str, list[str]]] = []
        self.peers: list[Any] = []  # the client address of each accepted message
        self.scripted: deque[str] = deque()  # replies for DATA, e.g. "451 4.3.0 try later"
        self.scripted_rcpt: deque[str] = deque()  # replies for RCPT TO, e.g. "550 5.1.1 <a@b.c>: unknown"
        self.delay = 0.0  # seconds to wait before answering DATA: a slow server
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        with self.lock:
            if self.scripted_rcpt:
                return self.scripted_rcpt.popleft()
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.scripted:
                return self.scripted.popleft()
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.messages.append(message)  # type: ignore[arg-type]
            self.raw.append(envelope.original_content)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.peers.append(session.peer)
        return "250 OK"


class SmtpServer:
    """aiosmtpd on a free loopback port (port=0 does not work with Controller)."""

    def __init__(self, port: int | None = None, **controller_options: Any) -> None:
        self.handler = RecordingHandler()
        self.port = port or free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **controller_options)

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    def reply_next(self, *replies: str) -> None:
        """Answer the next DATA commands with these replies instead of accepting."""
        with self.handler.lock:
            self.handler.scripted.extend(replies)

    @property
    def raw_messages(self) -> list[bytes]:
        """The accepted messages' bytes as received: what a receiving mail system would parse."""
        with self.handler.lock:
            return list(self.handler.raw)

    def reply_to_rcpt_next(self, *replies: str) -> None:
        """Answer the next RCPT TO commands with these replies instead of accepting the recipient."""
        with self.handler.lock:
            self.handler.scripted_rcpt.extend(replies)

    def messages_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]

    @property
    def peers(self) -> list[Any]:
        with self.handler.lock:
            return list(self.handler.peers)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
