"""dramatiq middleware: database connections, log context, start-up work."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import peewee
import structlog
from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from playhouse.pool import PooledDatabase

from dispatcher.core import clock
from dispatcher.core.errors import TidingsError
from dispatcher.storage.db import database
from dispatcher.storage.models import PeriodicRun


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


class PeriodicRunMiddleware(Middleware):
    """Records the last run of each periodic actor (PeriodicRun), so that `tidings status` can tell one that
    is overdue. Add it after DatabaseMiddleware: its after-hook then runs while the connection is open."""

    def __init__(self) -> None:
        self._started: dict[str, object] = {}
        self._lock = threading.Lock()

    def _periodic(self, broker: Broker, message: MessageProxy) -> bool:
        actor = broker.actors.get(message.actor_name)
        return actor is not None and "periodic" in actor.options

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        if self._periodic(broker, message):
            with self._lock:
                self._started[message.message_id] = clock.now()

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: object = None, exception: BaseException | None = None
    ) -> None:
        with self._lock:
            started = self._started.pop(message.message_id, None)
        if started is None:
            return
        now = clock.now()
        fields = {
            PeriodicRun.started_at: started,
            PeriodicRun.finished_at: now,
            PeriodicRun.outcome: "ok" if exception is None else "failed",
            PeriodicRun.error: None if exception is None else f"{type(exception).__name__}: {exception}"[:500],
        }
        try:
            PeriodicRun.insert({PeriodicRun.job: message.actor_name, **fields}).on_conflict(
                conflict_target=[PeriodicRun.job], update=fields
            ).execute()
        except peewee.PeeweeException as e:  # the job's own work is done; only its record is lost
            structlog.get_logger("tidings.schedules").warning("periodic_run_not_recorded", error=type(e).__name__)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        with self._lock:  # skipped (periodiq: too late): not a run
            self._started.pop(message.message_id, None)


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
