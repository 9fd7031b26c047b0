"""dramatiq middleware: database connections, log context, start-up work."""

from __future__ import annotations

import sys
from collections.abc import Callable

import structlog
from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from playhouse.pool import PooledDatabase

from dispatcher.core.errors import TidingsError
from dispatcher.storage.db import database


class DatabaseMiddleware(Middleware):
    """A database connection for every message, handed back to the pool after it.

    peewee keeps one connection per thread. A pooled (PostgreSQL) connection
    goes back to the pool after each message, so idle threads hold none; a
    SQLite connection stays open with its thread (opening one costs more than
    the work of a small message).
    """

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        database.connect(reuse_if_open=True)

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: object = None, exception: BaseException | None = None
    ) -> None:
        if isinstance(database.obj, PooledDatabase) and not database.is_closed():
            database.close()

    after_skip_message = after_process_message


class LogContextMiddleware(Middleware):
    """Start every message with an empty structlog context bound to its id."""

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(message_id=message.message_id)

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: object = None, exception: BaseException | None = None
    ) -> None:
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
