"""A lean SMTP sink for benchmarks: accepts every message and records only (arrival time, Subject).

The same server is used for Tidings, the Celery baseline and raw smtplib, so all three meet the
same (cheap) receiving side. Unlike ``tests/support/smtp.py`` it does not parse messages.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import Any

from aiosmtpd.controller import Controller

#: The first Subject header of a message (headers end at the first blank line, which comes after it).
SUBJECT = re.compile(rb"^Subject: ?(.*?)\r?$", re.MULTILINE | re.IGNORECASE)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (aiosmtpd's Controller cannot be given port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[tuple[float, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.time()
        match = SUBJECT.search(envelope.content)
        subject = match.group(1).decode("utf-8", "replace") if match else ""
        with self.lock:
            self.arrivals.append((now, subject))
        return "250 OK"


class LeanSmtpServer:
    """aiosmtpd on a free loopback port; ``start()``, then read ``count()`` / ``arrivals()``."""

    def __init__(self) -> None:
        self._handler = _Handler()
        self.port = free_port()
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> LeanSmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def count(self) -> int:
        """How many messages have been accepted since the start or the last ``reset()``."""
        with self._handler.lock:
            return len(self._handler.arrivals)

    def arrivals(self) -> list[tuple[float, str]]:
        """(time.time() at DATA, Subject) of each accepted message, in arrival order."""
        with self._handler.lock:
            return list(self._handler.arrivals)

    def reset(self) -> None:
        with self._handler.lock:
            self._handler.arrivals.clear()

    def __enter__(self) -> LeanSmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
