"""Tidings against the Celery code it replaces, and against the raw limits, side by side in one run.

    .venv/bin/python -m bench.compare [--events N] [--runs R] [--database sqlite|postgresql]
                                      [--rate R] [--processes P] [--skip celery,floors]

Each run, one after the other on the same RabbitMQ, the same kind of SMTP server (bench/lean_smtp.py)
and the same kind of database:

1. the floors: raw pika draining N*3 messages, raw smtplib sending N*3 emails (8 threads), and a
   no-op dramatiq actor draining N messages with the Procfile worker line's processes and threads;
2. Tidings: the Procfile's ``worker`` and ``sender`` lines as an operator starts them (a fresh
   namespace, exchange and database), 3 users upserted, then N payout.received events for the 3 users
   published in a burst with raw pika (or ``--rate`` per second); it waits for N*3 inbox rows and N*3
   emails at the SMTP server;
3. the Celery baseline (bench/celery_baseline/, bench/baselines.run_celery): the same job.

Printed: recipients/s (inbox rows), emails/s, p50/p99 publish -> inbox row and publish -> SMTP server,
the floors, and every ratio, per run and as medians. bench/README.md says how to read them.
Needs the ``bench`` extra (``pip install -e '.[test,bench]'``); only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pika

from bench.baselines import (
    BIN,
    POSTGRES_URL,
    RABBITMQ_URL,
    BaselineError,
    Process,
    create_pg_database,
    delete_from_broker,
    drop_pg_database,
    figures,
    noop_dramatiq,
    pace,
    queue_counts,
    raw_pika_consume,
    raw_smtplib,
    run_celery,
    wait_for_deliveries,
    wait_until,
)
from bench.lean_smtp import LeanSmtpServer
from channels import REGISTRY
from dispatcher.amqp.publisher import Publisher, build_event
from dispatcher.storage.models import Delivery, Event, InboxItem, User

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "compare.json"
EVENT_TYPE = "payout.received"
SOURCE = "/bench/tidings"
PROM_PORT = re.compile(r"dramatiq_prom_port=\d+")
PROM_DB = re.compile(r"dramatiq_prom_db=\S+")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def procfile_lines(processes: int | None) -> dict[str, str]:
    """The Procfile's worker and sender lines (the metrics ports made free ones, ``--processes`` of the
    worker line replaced when given)."""
    lines = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name in ("worker", "sender"):
            command = PROM_PORT.sub(lambda _: f"dramatiq_prom_port={free_port()}", command.strip())
            if name == "worker" and processes:
                command = re.sub(r"--processes \d+", f"--processes {processes}", command)
            lines[name] = command
    return lines


def worker_shape(command: str) -> tuple[int, int]:
    """(--processes, --threads) of a dramatiq command line."""
    words = shlex.split(command)
    return int(words[words.index("--processes") + 1]), int(words[words.index("--threads") + 1])


def _timestamp(value: Any) -> float:
    """A naive UTC datetime column (SQLite hands back text) as a Unix time."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return float(value.replace(tzinfo=dt.UTC).timestamp())


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the fields after "(comm)": state is [0], pgrp [2]


def cpu_seconds(*, group: int | None = None, command: str | None = None) -> float:
    """CPU time (user + system) used so far by the processes of process group ``group``, or by those whose
    command line starts with ``command`` (RabbitMQ's beam.smp, PostgreSQL's postgres)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(entry.name)
        if fields is None:
            continue
        if group is not None and int(fields[2]) != group:
            continue
        if command is not None:
            try:
                argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
            except OSError:
                continue
            if not (argv0 == command or argv0.endswith("/" + command) or argv0.startswith(command + ":")):
                continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def service_cpu() -> dict[str, float]:
    """CPU seconds used so far by RabbitMQ and by PostgreSQL (all their processes on this machine)."""
    return {"rabbitmq": cpu_seconds(command="beam.smp"), "postgres": cpu_seconds(command="postgres")}


def run_tidings(
    events: int, *, database: str, tmp: Path, smtp: LeanSmtpServer, rate: float, processes: int | None, timeout: float
) -> dict[str, Any]:
    """The job through Tidings' Procfile lines; the same figures as run_celery."""
    namespace = f"bench{uuid.uuid4().hex[:10]}"
    exchange = f"{namespace}_events"
    expected = events * 3
    users = [f"{namespace}-user{i}" for i in range(3)]
    url = create_pg_database(namespace) if database == "postgresql" else f"sqlite:///{tmp / (namespace + '.db')}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "TIDINGS_BROKER_URL": RABBITMQ_URL,
        "TIDINGS_NAMESPACE": namespace,
        "TIDINGS_EXCHANGE": exchange,
        "TIDINGS_DATABASE_URL": url,
        "TIDINGS_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
        "TIDINGS_MAIL_FROM": "Bench Arena <notifications@bench.test>",
        "TIDINGS_LOG_FORMAT": "json",  # as in production (docs/operations.md); the level stays info
    }
    lines = procfile_lines(processes)
    smtp.reset()
    workers: list[Process] = []
    try:
        for name, command in lines.items():
            command = command.replace("${TIDINGS_NAMESPACE:-tidings}", namespace)
            command = PROM_DB.sub(f"dramatiq_prom_db={tmp / (namespace + '-' + name)}", command)
            workers.append(
                Process(f"tidings {name}", ["bash", "-c", command], env=env, log=tmp / f"{namespace}.{name}.log")
            )
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        try:
            queues = (f"{namespace}.ingest", f"{namespace}.email")
            wait_until(
                lambda: all((c := queue_counts(connection, q)) and c[1] >= 1 for q in queues),
                timeout=90,
                what="the worker and the sender to consume",
                processes=workers,
            )
            from dispatcher.storage.db import init_database

            init_database(url)
            with Publisher(RABBITMQ_URL, exchange) as publisher:
                for i, user in enumerate(users):
                    data = {"id": user, "email": f"user{i}@bench.test", "name": f"Bench User {i}"}
                    publisher.publish(build_event("tidings.user.upsert", data, source=SOURCE))
            wait_until(
                lambda: User.select().where(User.id.in_(users)).count() == 3,
                timeout=30,
                what="the 3 users to be upserted",
                processes=workers,
            )
            channel = connection.channel()
            properties = pika.BasicProperties(content_type="application/cloudevents+json", delivery_mode=2)
            cpu_before = {name: cpu_seconds(group=w.popen.pid) for name, w in zip(lines, workers, strict=True)}
            services_before = service_cpu()
            published: dict[str, float] = {}
            started = time.monotonic()
            for i in range(events):
                pace(i, started, rate)
                event = build_event(EVENT_TYPE, {"recipients": users, "amount": i, "currency": "EUR"}, source=SOURCE)
                event["id"] = f"bench-{i}"
                published[event["id"]] = time.time()
                channel.basic_publish(exchange, EVENT_TYPE, json.dumps(event).encode(), properties)
            connection.process_data_events(time_limit=0)
            publish_seconds = time.time() - published["bench-0"]
        finally:
            connection.close()

        wait_for_deliveries(lambda: InboxItem.select().count(), smtp, expected, timeout, workers)
        cpu = {
            f"{name}_cpu_ms_per_event": (cpu_seconds(group=w.popen.pid) - cpu_before[name]) * 1000 / events
            for name, w in zip(lines, workers, strict=True)
        }
        for name, spent in service_cpu().items():
            cpu[f"{name}_cpu_ms_per_event"] = (spent - services_before[name]) * 1000 / events
        rows = list(InboxItem.select(Event.event_id, InboxItem.created_at).join(Delivery).join(Event).tuples())
        arrivals = smtp.arrivals()
        if len(rows) != expected or len(arrivals) != expected:
            repeated = sorted(subject for subject, n in Counter(subject for _, subject in arrivals).items() if n > 3)
            raise BaselineError(
                f"Tidings: expected {expected} inbox rows and emails, got {len(rows)} and {len(arrivals)}"
                f" (subjects received more than 3 times, once per user: {repeated[:5]})"
            )
    finally:
        for worker in workers:
            worker.stop()
        from dispatcher.storage.db import database as db

        if db.obj is not None and not db.is_closed():
            db.close()
        names = [f"{namespace}.{q}" for q in ("ingest", "ingest_retry", *REGISTRY, "maintenance")]
        delete_from_broker(
            queues=[n + suffix for n in names for suffix in ("", ".DQ", ".XQ")],
            exchanges=[exchange, f"{namespace}.inbox"],
        )
        if database == "postgresql":
            drop_pg_database(namespace)
    inbox = [(event_id, _timestamp(created)) for event_id, created in rows]
    return {**figures(events, published, inbox, arrivals, publish_seconds), **cpu}


def one_run(args: argparse.Namespace, tmp: Path, smtp: LeanSmtpServer) -> dict[str, Any]:
    run: dict[str, Any] = {}
    n = args.events
    worker_processes, worker_threads = worker_shape(procfile_lines(args.processes)["worker"])
    if "floors" not in args.skip:
        run["pika"] = raw_pika_consume(n * 3)
        run["smtplib"] = raw_smtplib(n * 3, smtp)
        run["noop_dramatiq"] = noop_dramatiq(n, processes=worker_processes, threads=worker_threads)
    options = {"database": args.database, "tmp": tmp, "smtp": smtp, "rate": args.rate, "timeout": args.timeout}
    run["tidings"] = run_tidings(n, processes=args.processes, **options)
    if "celery" not in args.skip:
        run["celery"] = run_celery(n, **options)
    tidings = run["tidings"]
    ratios = {}
    if "celery" in run:
        ratios["inbox_vs_celery"] = tidings["inbox_per_s"] / run["celery"]["inbox_per_s"]
        ratios["email_vs_celery"] = tidings["emails_per_s"] / run["celery"]["emails_per_s"]
    if "smtplib" in run:
        ratios["email_vs_smtplib"] = tidings["emails_per_s"] / run["smtplib"]["emails_per_s"]
        ratios["events_vs_noop_dramatiq"] = (tidings["inbox_per_s"] / 3) / run["noop_dramatiq"]["msgs_per_s"]
        ratios["inbox_vs_pika"] = tidings["inbox_per_s"] / run["pika"]["msgs_per_s"]
    run["ratios"] = ratios
    return run


COLUMNS = [
    ("tidings.inbox_per_s", "Tidings rcpt/s", "{:.0f}"),
    ("tidings.emails_per_s", "emails/s", "{:.0f}"),
    ("tidings.inbox_p50_ms", "in-app p50", "{:.0f}"),
    ("tidings.inbox_p99_ms", "p99 ms", "{:.0f}"),
    ("tidings.email_p50_ms", "email p50", "{:.0f}"),
    ("tidings.email_p99_ms", "p99 ms", "{:.0f}"),
    ("tidings.worker_cpu_ms_per_event", "worker CPU ms/ev", "{:.1f}"),
    ("tidings.sender_cpu_ms_per_event", "sender CPU ms/ev", "{:.1f}"),
    ("tidings.rabbitmq_cpu_ms_per_event", "RabbitMQ ms/ev", "{:.2f}"),
    ("tidings.postgres_cpu_ms_per_event", "PostgreSQL ms/ev", "{:.2f}"),
    ("celery.inbox_per_s", "Celery rcpt/s", "{:.0f}"),
    ("celery.emails_per_s", "emails/s", "{:.0f}"),
    ("celery.inbox_p99_ms", "in-app p99", "{:.0f}"),
    ("celery.email_p99_ms", "email p99", "{:.0f}"),
    ("pika.msgs_per_s", "pika msg/s", "{:.0f}"),
    ("smtplib.emails_per_s", "smtplib/s", "{:.0f}"),
    ("noop_dramatiq.msgs_per_s", "no-op dramatiq/s", "{:.0f}"),
    ("ratios.inbox_vs_celery", "in-app x Celery", "{:.2f}"),
    ("ratios.email_vs_smtplib", "email x smtplib", "{:.2f}"),
    ("ratios.email_vs_celery", "email x Celery", "{:.2f}"),
    ("ratios.events_vs_noop_dramatiq", "ev x no-op", "{:.2f}"),
]


def lookup(run: dict[str, Any], path: str) -> float | None:
    part, _, key = path.partition(".")
    value = run.get(part, {}).get(key)
    return float(value) if value is not None else None


def print_table(runs: list[dict[str, Any]]) -> dict[str, float]:
    shown = [(path, title, fmt) for path, title, fmt in COLUMNS if lookup(runs[0], path) is not None]
    medians = {path: statistics.median(lookup(r, path) for r in runs) for path, _, _ in shown}  # type: ignore[type-var]
    for path, title, fmt in shown:
        values = "  ".join(fmt.format(lookup(r, path)) for r in runs)
        print(f"{title:>18}  {fmt.format(medians[path]):>8}   (runs: {values})")
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rate", type=float, default=0.0, help="events per second (default: a burst)")
    parser.add_argument("--processes", type=int, help="the Procfile worker line's --processes instead of its own")
    parser.add_argument("--skip", default="", help="comma-separated: celery, floors")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    args.skip = {s for s in args.skip.split(",") if s}
    runs = []
    with LeanSmtpServer() as smtp, tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        for i in range(args.runs):
            try:
                runs.append(one_run(args, Path(tmp), smtp))
            except BaselineError as e:
                print(f"bench: FAILED: {e}", file=sys.stderr)
                return 1
            print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
    print(
        f"\n{args.events} events x 3 users, {args.database}, "
        f"{'burst' if not args.rate else f'{args.rate:g} events/s'}, median of {len(runs)}"
    )
    medians = print_table(runs)
    machine = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": POSTGRES_URL.rsplit("@", 1)[-1],
        "command": " ".join(sys.argv),
    }
    print(json.dumps(machine))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine, "runs": runs, "medians": medians}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
