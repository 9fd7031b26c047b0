"""Reachability probes for `tidings health`: the database, the broker, the SMTP server, each within a timeout."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Callable

import pika
import pika.exceptions

from channels.email import SmtpTarget, connect
from dispatcher.core.settings import Settings, redact_url
from dispatcher.storage.db import open_database

DEFAULT_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True)
class Probe:
    """One check: what was reached (its URL, password masked), and the error when it was not."""

    name: str
    target: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def line(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'FAILED'} {self.target}" + (f": {self.error}" if self.error else "")


def _database(settings: Settings, timeout: float) -> None:
    db = open_database(settings.database_url)
    try:
        db.connect()
        db.execute_sql("SELECT 1")
    finally:
        db.close()


def _broker(settings: Settings, timeout: float) -> None:
    parameters = pika.URLParameters(settings.broker_url)
    parameters.socket_timeout = parameters.blocked_connection_timeout = timeout
    parameters.stack_timeout = timeout
    parameters.connection_attempts = 1
    pika.BlockingConnection(parameters).close()


def _smtp(settings: Settings, timeout: float) -> None:
    """Connect, EHLO, STARTTLS and log in as the sender does (channels.email.connect), then QUIT."""
    connection = connect(SmtpTarget.from_url(settings.smtp_url), timeout, settings.smtp_ca_file)
    try:
        connection.quit()
    finally:
        connection.close()


PROBES: dict[str, tuple[Callable[[Settings, float], None], Callable[[Settings], str]]] = {
    "database": (_database, lambda s: redact_url(s.database_url)),
    "broker": (_broker, lambda s: redact_url(s.broker_url)),
    "smtp": (_smtp, lambda s: redact_url(s.smtp_url)),
}


def probe_all(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> list[Probe]:
    """Every probe, side by side; one that has not answered after ``timeout`` seconds has failed."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(PROBES), thread_name_prefix="tidings-health")
    deadline = time.monotonic() + timeout
    try:
        futures = {name: pool.submit(check, settings, timeout) for name, (check, _) in PROBES.items()}
        return [
            _outcome(name, future, PROBES[name][1](settings), deadline, timeout) for name, future in futures.items()
        ]
    finally:
        pool.shutdown(wait=False)  # a probe past its deadline ends by its own socket timeout, unwaited


def _outcome(name: str, future: concurrent.futures.Future[None], target: str, deadline: float, timeout: float) -> Probe:
    try:
        future.result(timeout=max(0.0, deadline - time.monotonic()))
    except concurrent.futures.TimeoutError:
        return Probe(name, target, f"no answer within {timeout:g} s")
    except Exception as e:  # noqa: BLE001 - every failure is a failed probe, said in one line
        return Probe(name, target, describe(e))
    return Probe(name, target)


def describe(error: BaseException) -> str:
    """An exception on one line: its type and message, or the causes pika keeps in its args (its
    AMQPConnectionError says nothing by itself)."""
    detail = str(error).strip() or ", ".join(repr(arg) for arg in error.args if not isinstance(arg, str | int))
    return " ".join(f"{type(error).__name__}: {detail}".split())[:300] if detail else type(error).__name__
