"""dramatiq middleware: database connections, log context, start-up work."""

from __future__ import annotations

import sys
from collections.abc import Callable

import structlog
from dramatiq import Broker, Middleware
from dramatiq.message import Message

from .db import database
from .errors import TidingsError


class DatabaseMiddleware(Middleware):
    """One database connection per message, returned when the message is done.

    peewee keeps a connection per thread until closed; closing after each
    message hands pooled PostgreSQL connections back and never leaves a
    SQLite handle open across a fork.
    """

    def before_process_message(self, broker: Broker, message: Message) -> None:
        database.connect(reuse_if_open=True)

    def after_process_message(self, broker: Broker, message: Message, *, result=None, exception=None) -> None:
        if not database.is_closed():
            database.close()

    after_skip_message = after_process_message


class LogContextMiddleware(Middleware):
    """Start every message with an empty structlog context bound to its id."""

    def before_process_message(self, broker: Broker, message: Message) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(message_id=message.message_id)

    def after_process_message(self, broker: Broker, message: Message, *, result=None, exception=None) -> None:
        structlog.contextvars.clear_contextvars()

    after_skip_message = after_process_message


class BootMiddleware(Middleware):
    """Runs ``on_boot`` once a worker process has loaded; a failure stops it with one line."""

    def __init__(self, on_boot: Callable[[], None]) -> None:
        self.on_boot = on_boot

    def after_process_boot(self, broker: Broker) -> None:
        try:
            self.on_boot()
        except Exception as e:  # noqa: BLE001 - anything here means the worker cannot serve
            reason = str(e) if isinstance(e, TidingsError) else f"{type(e).__name__}: {e}"
            print(f"tidings: cannot start: {reason}", file=sys.stderr, flush=True)
            raise SystemExit(3) from None
