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
        self.envelopes: list[tuple[str, list[str]]] = []
        self.peers: list[Any] = []  # the client address of each accepted message
        self.scripted: deque[str] = deque()  # replies for DATA, e.g. "451 4.3.0 try later"
        self.delay = 0.0  # seconds to wait before answering DATA: a slow server
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.scripted:
                return self.scripted.popleft()
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.messages.append(message)  # type: ignore[arg-type]
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
