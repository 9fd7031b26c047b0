"""Baselines for bench/compare.py: the same job without Tidings, and the floors under it.

- ``run_celery``: the Celery 5 code a user would otherwise write (bench/celery_baseline/), run by
  two stock ``celery worker`` processes (ingest queue, email queue) on RabbitMQ, SQLite or PostgreSQL.
- ``raw_pika_consume``: how fast one pika consumer drains a queue (the broker's floor).
- ``raw_smtplib``: how fast threads with reused smtplib connections can send to the SMTP server.
- ``noop_dramatiq``: how fast the stock ``dramatiq`` worker runs a no-op actor.

Every function cleans up what it created (queues, exchanges, processes, databases), on errors too.
Only 127.0.0.1 is contacted. Smoke test: ``.venv/bin/python -m bench.baselines [--events N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import psycopg2

from bench.celery_baseline.db import setup_database
from bench.lean_smtp import LeanSmtpServer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RABBITMQ_URL = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
#: A maintenance database of the PostgreSQL server: run_celery creates and drops its own next to it.
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
EVENT_TYPE = "payout.received"
SOURCE = "/bench/celery"
SUBJECT_AMOUNT = re.compile(r"payout of (\d+) ")


class BaselineError(Exception):
    """A baseline could not complete (timeout, a worker died, wrong counts)."""


# --- helpers -----------------------------------------------------------------------------------


def percentiles_ms(values: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``values`` (seconds), in milliseconds."""
    if len(values) < 2:
        return (values[0] * 1000, values[0] * 1000) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


def pace(i: int, start: float, rate: float) -> None:
    """With a rate (per second), wait until item ``i`` is due; without one, go on."""
    if rate > 0:
        time.sleep(max(0.0, start + i / rate - time.monotonic()))


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    progress: Callable[[], str] = lambda: "",
    processes: list[Process] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``condition``; BaselineError on timeout or when one of ``processes`` exits."""
    deadline = time.monotonic() + timeout
    while not condition():
        for process in processes or []:
            if process.popen.poll() is not None:
                raise BaselineError(
                    f"{process.name} exited with {process.popen.returncode} while waiting for {what}\n{process.tail()}"
                )
        if time.monotonic() > deadline:
            raise BaselineError(f"timed out after {timeout:.0f} s waiting for {what} ({progress()})")
        time.sleep(interval)


class Process:
    """A command in its own process group, its output in ``log``; ``stop()`` ends that group only."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the group (a warm shutdown), then SIGKILL to what is left of it after ``grace``."""
        pgid = self.popen.pid  # start_new_session: the group's id is the leader's pid
        if self.popen.poll() is None:
            os.killpg(pgid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(pgid, signal.SIGKILL)  # children of the leader (prefork pool) that outlived it
        except ProcessLookupError:
            pass
        self.popen.wait(5)


@contextmanager
def amqp_channel() -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def queue_counts(connection: pika.BlockingConnection, queue: str) -> tuple[int, int] | None:
    """(ready messages, consumers) of ``queue``, or None if it does not exist (yet)."""
    channel = connection.channel()
    try:
        ok = channel.queue_declare(queue, passive=True).method
    except pika.exceptions.ChannelClosedByBroker:
        return None  # 404: the broker closed this channel
    channel.close()
    return ok.message_count, ok.consumer_count


def delete_from_broker(*, queues: Sequence[str] = (), exchanges: Sequence[str] = ()) -> None:
    """Delete these queues and exchanges; missing ones are fine (each in a channel of its own)."""
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                channel = connection.channel()
                try:
                    if kind == "queue":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                    channel.close()
                except pika.exceptions.ChannelClosedByBroker:
                    pass
    finally:
        connection.close()


# --- PostgreSQL: a disposable database per run --------------------------------------------------


def _maintenance() -> Any:
    connection = psycopg2.connect(POSTGRES_URL)
    connection.autocommit = True
    return connection


def create_pg_database(name: str) -> str:
    """Create database ``name`` on the server of POSTGRES_URL; its URL."""
    connection = _maintenance()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(name: str) -> None:
    connection = _maintenance()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one read-only query on the baseline's database."""
    if url.startswith("sqlite:"):
        connection: Any = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=15)
    else:
        connection = psycopg2.connect(url)
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        rows = cursor.fetchall()
        connection.rollback()
        return rows
    finally:
        connection.close()


# --- 1. the Celery baseline ---------------------------------------------------------------------


def celery_message(task: str, args: list[Any]) -> tuple[pika.BasicProperties, bytes]:
    """A Celery task message, protocol 2 with the JSON serializer, as ``app.send_task`` builds it.

    Same headers and body as celery/app/amqp.py ``AMQP.as_task_v2`` (Celery 5.7) and the properties
    kombu publishes with (content type and encoding, persistent, priority 0).
    """
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(tuple(args)),
        "kwargsrepr": "{}",
        "origin": f"bench@{os.uname().nodename}",
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        priority=0,
        correlation_id=task_id,
        reply_to="",
        headers=headers,
    )
    body = [args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    return properties, json.dumps(body).encode()


def wait_for_deliveries(
    inbox_rows: Callable[[], int], smtp: LeanSmtpServer, expected: int, timeout: float, processes: list[Process]
) -> None:
    """Poll until there are ``expected`` inbox rows and ``expected`` emails at the SMTP server."""
    wait_until(
        lambda: inbox_rows() >= expected and smtp.count() >= expected,
        timeout=timeout,
        what=f"{expected} inbox rows and {expected} emails",
        progress=lambda: f"inbox {inbox_rows()}/{expected}, SMTP {smtp.count()}/{expected}",
        processes=processes,
        interval=0.1,
    )


def bench_event(i: int, users: list[str]) -> dict[str, Any]:
    """Event ``i`` of a run: a CloudEvent of type payout.received for ``users``, of amount ``i``."""
    return {
        "specversion": "1.0",
        "id": f"bench-{i}",
        "source": SOURCE,
        "type": EVENT_TYPE,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "datacontenttype": "application/json",
        "data": {"recipients": users, "amount": i, "currency": "EUR"},
    }


def run_celery(
    events: int,
    *,
    database: str,
    tmp: Path,
    smtp: LeanSmtpServer,
    rate: float = 0.0,
    concurrency: int = 4,
    prefetch: int = 4,
    timeout: float = 180,
) -> dict[str, Any]:
    """Deliver ``events`` payout.received events to 3 users each through the Celery baseline.

    A fresh database (``database`` "sqlite": a file in ``tmp``; "postgresql": a new database on
    POSTGRES_URL's server, dropped afterwards), a fresh queue prefix, and two stock Celery workers
    (``--pool prefork --concurrency <concurrency>``, one on the ingest queue, one on the email
    queue). Once both consume, the events are published with raw pika as Celery messages, as fast
    as possible (``rate`` 0) or ``rate`` per second; then it polls until the database holds N*3
    inbox rows and ``smtp`` (reset first) N*3 messages.

    Returns events, recipients, inbox_per_s and emails_per_s (N*3 over first publish -> last inbox
    row's created_at / last SMTP arrival), inbox_p50_ms/p99_ms and email_p50_ms/p99_ms (per row or
    message: its time minus its event's publish time; emails are matched by the amount in the
    subject), publish_seconds and the worker settings.
    """
    if database not in ("sqlite", "postgresql"):
        raise ValueError(f"database must be 'sqlite' or 'postgresql', not {database!r}")
    prefix = f"bench_celery_{uuid.uuid4().hex[:10]}"
    ingest_queue, email_queue = f"{prefix}.ingest", f"{prefix}.email"
    expected = events * 3
    users = [f"{prefix}-user{i}" for i in range(3)]
    workers: list[Process] = []
    pg_name = prefix if database == "postgresql" else None
    smtp.reset()
    try:
        if pg_name:
            url = create_pg_database(pg_name)
        else:
            url = f"sqlite:///{tmp / (prefix + '.db')}"
        setup_database(
            url, [{"id": u, "email": f"user{i}@bench.test", "name": f"Bench User {i}"} for i, u in enumerate(users)]
        )

        env = {
            **os.environ,
            "BENCH_BROKER_URL": RABBITMQ_URL,
            "BENCH_PREFIX": prefix,
            "BENCH_DATABASE_URL": url,
            "BENCH_SMTP_PORT": str(smtp.port),
            "BENCH_PREFETCH": str(prefetch),
        }
        for role, queue in (("ingest", ingest_queue), ("email", email_queue)):
            argv = [str(BIN / "celery"), "-A", "bench.celery_baseline.app", "worker", "-Q", queue]
            argv += ["-n", f"{role}.{prefix}@%h", "--pool", "prefork", "--concurrency", str(concurrency)]
            argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"]
            workers.append(Process(f"celery {role} worker", argv, env=env, log=tmp / f"{prefix}.{role}.log"))

        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        try:

            def consuming() -> bool:
                return all(
                    (counts := queue_counts(connection, q)) and counts[1] >= 1 for q in (ingest_queue, email_queue)
                )

            wait_until(consuming, timeout=60, what="both Celery workers to consume", processes=workers)

            channel = connection.channel()
            published: dict[str, float] = {}
            started = time.monotonic()
            for i in range(events):
                pace(i, started, rate)
                properties, body = celery_message("bench.ingest", [bench_event(i, users)])
                published[f"bench-{i}"] = time.time()
                channel.basic_publish(ingest_queue, ingest_queue, body, properties)
            connection.process_data_events(time_limit=0)  # flush the socket
            publish_seconds = time.time() - published["bench-0"]
        finally:
            connection.close()

        wait_for_deliveries(lambda: _query(url, "SELECT COUNT(*) FROM inbox")[0][0], smtp, expected, timeout, workers)
        rows = _query(url, "SELECT event_id, created_at FROM inbox")
        arrivals = smtp.arrivals()
        if len(rows) != expected or len(arrivals) != expected:
            raise BaselineError(
                f"Celery: expected {expected} inbox rows and emails, got {len(rows)} and {len(arrivals)}"
            )
    finally:
        for worker in workers:
            worker.stop()
        delete_from_broker(
            queues=[ingest_queue, email_queue],
            exchanges=[ingest_queue, email_queue, f"{prefix}.control", f"{prefix}.celeryev"],
        )
        if pg_name:
            drop_pg_database(pg_name)

    return {
        "database": database,
        "concurrency": concurrency,
        "prefetch_multiplier": prefetch,
        "rate": rate,
        **figures(events, published, rows, arrivals, publish_seconds),
    }


def figures(
    events: int,
    published: dict[str, float],
    inbox: list[tuple[str, float]],
    arrivals: list[tuple[float, str]],
    publish_seconds: float,
) -> dict[str, Any]:
    """A run's figures from when each event was published (by id), the inbox rows (event id, Unix time) and
    the SMTP arrivals (Unix time, Subject; an email is matched to its event by the amount in its subject)."""
    first = published["bench-0"]
    email_latencies = []
    for arrived, subject in arrivals:
        match = SUBJECT_AMOUNT.search(subject)
        if not match:
            raise BaselineError(f"an email whose subject names no amount: {subject!r}")
        email_latencies.append(arrived - published[f"bench-{match.group(1)}"])
    inbox_p50, inbox_p99 = percentiles_ms([created - published[event_id] for event_id, created in inbox])
    email_p50, email_p99 = percentiles_ms(email_latencies)
    return {
        "events": events,
        "recipients": events * 3,
        "inbox_per_s": events * 3 / (max(created for _, created in inbox) - first),
        "emails_per_s": events * 3 / (max(arrived for arrived, _ in arrivals) - first),
        "inbox_p50_ms": inbox_p50,
        "inbox_p99_ms": inbox_p99,
        "email_p50_ms": email_p50,
        "email_p99_ms": email_p99,
        "publish_seconds": publish_seconds,
    }


# --- 2. raw pika: one consumer draining a queue -------------------------------------------------


def raw_pika_consume(count: int) -> dict[str, Any]:
    """Publish ``count`` small persistent messages to a fresh queue, then time one consumer
    (manual acks, prefetch 100) draining it: {"messages", "seconds", "msgs_per_s"}."""
    queue = f"bench_pika_{uuid.uuid4().hex[:10]}"
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        channel.confirm_delivery()  # all are in the queue before the clock starts
        properties = pika.BasicProperties(content_type="application/json", delivery_mode=2)
        for i in range(count):
            channel.basic_publish("", queue, json.dumps({"i": i}).encode(), properties)

        channel.basic_qos(prefetch_count=100)
        consumed = [0]
        last = [0.0]

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            json.loads(body)
            ch.basic_ack(method.delivery_tag)
            consumed[0] += 1
            last[0] = time.time()

        start = time.time()
        channel.basic_consume(queue, on_message)
        deadline = time.monotonic() + max(60.0, count / 1000)
        while consumed[0] < count:
            if time.monotonic() > deadline:
                raise BaselineError(f"raw pika: consumed {consumed[0]}/{count}")
            connection.process_data_events(time_limit=0.1)
        seconds = last[0] - start
        return {"messages": count, "seconds": seconds, "msgs_per_s": count / seconds}
    finally:
        if connection.is_open:
            connection.close()
        delete_from_broker(queues=[queue])


# --- 3. raw smtplib: threads with a reused connection each ---------------------------------------

#: Text and HTML parts of roughly a Tidings email's size (the message is ~3 KB with its headers).
RAW_TEXT = "Hi Bench User,\n\n" + "A prize payout has been sent to you; it can take a few days to arrive. " * 8 + "\n"
RAW_HTML = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Payout</title></head>'
    '<body style="margin:0;padding:0;background-color:#f3f4f6;font-family:Arial,sans-serif;">'
    + '<p style="margin:0 0 16px 0;">A prize payout has been sent to you; it can take a few days to arrive.</p>' * 14
    + "</body></html>"
)


def raw_message(i: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Bench Arena <notifications@bench.test>"
    message["To"] = f"Bench User <user{i % 3}@bench.test>"
    message["Subject"] = f"You received a payout of {i} EUR"
    message["Message-ID"] = f"<raw.{i}@bench.test>"
    message.set_content(RAW_TEXT)
    message.add_alternative(RAW_HTML, subtype="html")
    return message


def raw_smtplib(count: int, smtp: LeanSmtpServer, threads: int = 8) -> dict[str, Any]:
    """Send ``count`` ~3 KB text+HTML emails from ``threads`` threads, one reused smtplib connection
    each, as fast as possible: {"emails", "bytes_per_email", "seconds", "emails_per_s"} (first send ->
    last arrival at ``smtp``, which is reset first)."""
    import smtplib

    smtp.reset()
    shares = [list(range(t, count, threads)) for t in range(threads)]
    messages = {i: raw_message(i) for i in range(count)}
    errors: list[BaseException] = []
    go = threading.Barrier(threads + 1)

    def send(indexes: list[int]) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", smtp.port, timeout=30) as connection:
                go.wait()
                for i in indexes:
                    connection.send_message(messages[i])
        except BaseException as e:  # noqa: BLE001 - reported by the caller's thread
            errors.append(e)
            go.abort()

    pool = [
        threading.Thread(target=send, args=(share,), name=f"smtp-{t}", daemon=True) for t, share in enumerate(shares)
    ]
    for thread in pool:
        thread.start()
    try:
        go.wait(timeout=30)
    except threading.BrokenBarrierError:
        pass
    start = time.time()
    for thread in pool:
        thread.join(120)
    if errors:
        raise BaselineError(f"raw smtplib: {type(errors[0]).__name__}: {errors[0]}")
    wait_until(lambda: smtp.count() >= count, timeout=30, what=f"{count} emails at the SMTP server")
    seconds = smtp.arrivals()[-1][0] - start
    return {
        "emails": count,
        "bytes_per_email": len(messages[0].as_bytes()),
        "seconds": seconds,
        "emails_per_s": count / seconds,
    }


# --- 4. a no-op dramatiq actor ------------------------------------------------------------------


def noop_dramatiq(count: int, *, processes: int = 1, threads: int = 8, timeout: float = 120) -> dict[str, Any]:
    """Enqueue ``count`` messages for the no-op actor of bench/noop_actor.py, then run the stock
    ``dramatiq bench.noop_actor --processes P --threads T`` worker until it has run them all.

    Each run of the actor appends its time.time() to a file, so msgs_per_s is (count - 1) over the
    first to the last message run: the worker's start-up is not counted. Returns {"messages",
    "seconds", "msgs_per_s", "processes", "threads"}.
    """
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    queue = f"bench_noop_{uuid.uuid4().hex[:10]}"
    worker: Process | None = None
    with tempfile.TemporaryDirectory(prefix="bench-noop-") as tmp:
        out = Path(tmp) / "times"
        out.touch()
        try:
            broker = RabbitmqBroker(url=RABBITMQ_URL)  # not dramatiq's global broker
            try:
                for i in range(count):
                    broker.enqueue(
                        dramatiq.Message(queue_name=queue, actor_name="noop", args=(i,), kwargs={}, options={})
                    )
            finally:
                broker.close()

            env = {
                **os.environ,
                "BENCH_BROKER_URL": RABBITMQ_URL,
                "BENCH_NOOP_QUEUE": queue,
                "BENCH_NOOP_OUT": str(out),
            }
            argv = [str(BIN / "dramatiq"), "bench.noop_actor", "--processes", str(processes), "--threads", str(threads)]
            worker = Process("dramatiq no-op worker", argv, env=env, log=Path(tmp) / "worker.log")

            def lines() -> int:
                return out.read_bytes().count(b"\n")

            wait_until(
                lambda: lines() >= count,
                timeout=timeout,
                what=f"{count} no-op messages",
                progress=lambda: f"{lines()}/{count} run",
                processes=[worker],
            )
            times = [float(line) for line in out.read_text().split()]
        finally:
            if worker is not None:
                worker.stop()
            delete_from_broker(queues=[queue, f"{queue}.DQ", f"{queue}.XQ"])
    seconds = max(times) - min(times)
    return {
        "messages": count,
        "seconds": seconds,
        "msgs_per_s": (count - 1) / seconds,
        "processes": processes,
        "threads": threads,
    }


# --- smoke test ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="Run each baseline once, with small numbers.")
    parser.add_argument("--events", type=int, default=200, help="events for run_celery (x3 recipients)")
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--only-celery", action="store_true", help="skip the raw pika/smtplib/dramatiq floors")
    args = parser.parse_args()
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    with LeanSmtpServer() as smtp, tempfile.TemporaryDirectory(prefix="bench-baselines-") as tmp:
        for database in databases:
            result = run_celery(
                args.events, database=database, tmp=Path(tmp), smtp=smtp, rate=args.rate, concurrency=args.concurrency
            )
            print(f"run_celery[{database}]", json.dumps(result))
        if not args.only_celery:
            print("raw_pika_consume", json.dumps(raw_pika_consume(args.events * 3)))
            print("raw_smtplib", json.dumps(raw_smtplib(args.events * 3, smtp)))
            print("noop_dramatiq", json.dumps(noop_dramatiq(args.events * 3)))


if __name__ == "__main__":
    main()
