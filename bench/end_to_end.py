"""End-to-end benchmark: raw pika baseline vs. a real Tidings worker, in the same run.

    .venv/bin/python bench/end_to_end.py [--events N] [--runs R] [--processes P] [--threads T]
                                         [--database-url URL] [--timeout S] [--quick]

Each run: (1) raw pika moves N*3 small messages through a fresh durable queue;
(2) a stock `dramatiq dispatcher.worker schedules` worker delivers N "team.invite.sent"
events to 3 users, i.e. N*3 in-app rows and N*3 emails to a local aiosmtpd server.
See bench/README.md for how to read the numbers. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import peewee  # noqa: E402
import pika  # noqa: E402

from dispatcher.amqp.publisher import Publisher, build_event  # noqa: E402
from dispatcher.storage.db import database  # noqa: E402
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, User  # noqa: E402
from tests.support.deployment import Deployment  # noqa: E402
from tests.support.services import RABBITMQ_URL  # noqa: E402
from tests.support.smtp import SmtpServer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "latest.json"
CHANNELS = ("in_app", "email")


class BenchError(Exception):
    """The benchmark could not complete: printed on one line, exit status 1."""


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}


# --- 1. baseline: raw pika -------------------------------------------------------------------


def pace(i: int, start: float, rate: float) -> None:
    """With a rate, wait until item ``i`` is due (``rate`` per second from ``start``); else go on."""
    if rate > 0:
        time.sleep(max(0.0, start + i / rate - time.monotonic()))


def run_pika(count: int, timeout: float, rate: float = 0.0) -> dict:
    """Publish ``count`` persistent messages (confirms off) and consume them with manual acks."""
    queue = f"bench_{uuid.uuid4().hex[:10]}_pika"
    params = pika.URLParameters(RABBITMQ_URL)
    latencies: list[float] = []
    last_consumed = [0.0]
    ready, errors = threading.Event(), []

    def consume() -> None:
        try:
            connection = pika.BlockingConnection(params)
            channel = connection.channel()
            channel.basic_qos(prefetch_count=100)

            def on_message(ch, method, properties, body) -> None:
                now = time.time()
                latencies.append(now - json.loads(body)["t"])
                last_consumed[0] = now
                ch.basic_ack(method.delivery_tag)

            channel.basic_consume(queue, on_message)
            ready.set()
            deadline = time.monotonic() + timeout
            while len(latencies) < count and time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.1)
            connection.close()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            ready.set()

    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        consumer = threading.Thread(target=consume, name="pika-consumer", daemon=True)
        consumer.start()
        ready.wait(timeout=10)
        properties = pika.BasicProperties(content_type="application/cloudevents+json", delivery_mode=2)
        first_publish, started = time.time(), time.monotonic()
        for i in range(count):
            pace(i, started, rate)
            body = json.dumps({"i": i, "t": time.time()}).encode()
            channel.basic_publish("", queue, body, properties)
        connection.process_data_events(time_limit=0)  # flush the socket
        consumer.join(timeout + 10)
        if errors:
            raise BenchError(f"pika baseline consumer failed: {type(errors[0]).__name__}: {errors[0]}")
        if len(latencies) < count:
            raise BenchError(f"pika baseline: consumed {len(latencies)}/{count} messages in {timeout:.0f} s")
        elapsed = last_consumed[0] - first_publish
        return {"messages": count, "seconds": elapsed, "msg_per_s": count / elapsed, **percentiles(latencies)}
    finally:
        if connection.is_open:
            connection.channel().queue_delete(queue)
            connection.close()


# --- 2. Tidings end to end -------------------------------------------------------------------


def sent_counts(source: str) -> dict[tuple[str, str], int]:
    """(channel, status) -> number of this run's deliveries."""
    query = (
        Delivery.select(Delivery.channel, Delivery.status, peewee.fn.COUNT(Delivery.id))
        .join(Event)
        .where(Event.source == source)
        .group_by(Delivery.channel, Delivery.status)
    )
    return {(channel, status): n for channel, status, n in query.tuples()}


def wait_until(condition, *, timeout: float, what: str, progress=lambda: "", worker=None) -> None:
    """Poll ``condition`` every 0.2 s; BenchError on timeout or if the worker dies."""
    deadline = time.monotonic() + timeout
    while not condition():
        if worker is not None and worker.proc.poll() is not None:
            raise BenchError(f"the worker exited with {worker.proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what} ({progress()})")
        time.sleep(0.2)


def run_tidings(args: argparse.Namespace, tmp: Path) -> dict:
    n, expected = args.events, args.events * 3
    smtp = SmtpServer().start()
    extra = {"TIDINGS_DATABASE_URL": args.database_url} if args.database_url else {}
    deployment = Deployment(tmp, RABBITMQ_URL, smtp.port, **extra)
    source = f"/bench/{deployment.namespace}"
    users = [f"{deployment.namespace}-user{i}" for i in range(3)]
    worker = deployment.worker(processes=args.processes, threads=args.threads)
    try:
        worker.start(timeout=60)
        deployment.use_database()
        with Publisher(RABBITMQ_URL, deployment.exchange) as publisher:
            for i, user in enumerate(users):
                data = {"id": user, "email": f"user{i}@bench.test", "name": f"Bench User {i}"}
                publisher.publish(build_event("tidings.user.upsert", data, source=source))
            wait_until(
                lambda: User.select().where(User.id.in_(users)).count() == 3,
                timeout=30,
                what="the 3 users to be upserted",
                worker=worker,
            )

            published: dict[str, float] = {}
            data = {"recipients": users, "team_name": "Bench Rovers", "inviter_name": "Ada"}
            started = time.monotonic()
            for i in range(n):
                pace(i, started, args.rate)
                event = build_event("team.invite.sent", data, source=source, id=f"bench-{i}")
                published[event["id"]] = time.time()
                publisher.publish(event)
            publish_seconds = time.time() - published["bench-0"]

        def done() -> bool:
            counts = sent_counts(source)
            failed = {k: v for k, v in counts.items() if k[1] in (DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)}
            if failed:
                raise BenchError(f"deliveries did not succeed: {failed}")
            return (
                all(counts.get((c, DeliveryStatus.SENT), 0) == expected for c in CHANNELS)
                and len(smtp.messages) >= expected
            )

        def progress() -> str:
            counts = sent_counts(source)
            sent = ", ".join(f"{c} sent {counts.get((c, DeliveryStatus.SENT), 0)}/{expected}" for c in CHANNELS)
            return f"{sent}, SMTP holds {len(smtp.messages)}/{expected}"

        wait_until(done, timeout=args.timeout, what=f"{expected * 2} deliveries", progress=progress, worker=worker)
        if len(smtp.messages) != expected:
            raise BenchError(f"the SMTP server holds {len(smtp.messages)} messages, expected {expected}")

        rows = (
            Delivery.select(Event.event_id, Delivery.channel, Delivery.sent_at)
            .join(Event)
            .where(Event.source == source)
            .tuples()
        )
        latencies: dict[str, list[float]] = {c: [] for c in CHANNELS}
        last_sent = 0.0
        for event_id, channel, sent_at in rows:
            if isinstance(sent_at, str):  # SQLite hands back text when peewee cannot tell
                sent_at = dt.datetime.fromisoformat(sent_at)
            sent = sent_at.replace(tzinfo=dt.UTC).timestamp()
            latencies[channel].append(sent - published[event_id])
            last_sent = max(last_sent, sent)
        elapsed = last_sent - published["bench-0"]
        return {
            "namespace": deployment.namespace,
            "events": n,
            "deliveries": expected * 2,
            "publish_seconds": publish_seconds,
            "publish_per_s": n / publish_seconds,
            "seconds": elapsed,
            "events_per_s": n / elapsed,
            "deliveries_per_s": expected * 2 / elapsed,
            **{channel: percentiles(values) for channel, values in latencies.items()},
        }
    except BaseException:
        tail = "".join(worker.log().splitlines(keepends=True)[-20:])
        print(f"--- last lines of the worker log ({worker.log_path}) ---\n{tail}---", file=sys.stderr)
        raise
    finally:
        cleanup(worker.stop, "stop the worker (SIGTERM)")
        cleanup(deployment.teardown, "delete the queues and the exchange")
        cleanup(smtp.stop, "stop the SMTP server")
        cleanup(lambda: database.close() if not database.is_closed() else None, "close the database")


def cleanup(step, what: str) -> None:
    try:
        step()
    except Exception as e:  # noqa: BLE001 - keep cleaning up; the original error matters more
        print(f"bench: warning: could not {what}: {type(e).__name__}: {e}", file=sys.stderr)


# --- 3 and 4. runs, medians, report ----------------------------------------------------------


def summarize(runs: list[dict]) -> dict:
    def median(path: str) -> float:
        values = []
        for run in runs:
            value = run
            for key in path.split("."):
                value = value[key]
            values.append(value)
        return statistics.median(values)

    keys = [
        "pika.msg_per_s",
        "pika.p50_ms",
        "pika.p99_ms",
        "tidings.publish_per_s",
        "tidings.events_per_s",
        "tidings.deliveries_per_s",
        *(f"tidings.{c}.{p}" for c in CHANNELS for p in ("p50_ms", "p99_ms")),
        "ratios.throughput",
        "ratios.in_app_p50",
        "ratios.email_p50",
    ]
    return {key: median(key) for key in keys}


def machine_info() -> dict:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    rabbitmq = connection._impl.server_properties.get("version", b"?")
    connection.close()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "rabbitmq": rabbitmq.decode() if isinstance(rabbitmq, bytes) else str(rabbitmq),
        "sqlite": sqlite3.sqlite_version,
    }


def redacted_command() -> str:
    argv = []
    for arg in sys.argv:
        parts = urllib.parse.urlsplit(arg)
        if parts.password:
            arg = arg.replace(f":{parts.password}@", ":***@")
        argv.append(arg)
    return shlex.join([os.path.relpath(sys.executable), *argv])


def print_table(runs: list[dict], medians: dict) -> None:
    header = (
        f"{'run':>6} {'pika msg/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'pub ev/s':>8} {'ev/s':>7} "
        f"{'deliv/s':>8} {'in_app p50':>10} {'p99':>7} {'email p50':>9} {'p99':>7} | {'thr x':>6} "
        f"{'in_app p50 x':>12} {'email p50 x':>11}"
    )
    print(header)
    print("-" * len(header))
    rows = [(str(i + 1), r["pika"], r["tidings"], r["ratios"]) for i, r in enumerate(runs)]
    m = medians
    rows.append(
        (
            "median",
            {"msg_per_s": m["pika.msg_per_s"], "p50_ms": m["pika.p50_ms"], "p99_ms": m["pika.p99_ms"]},
            {
                "publish_per_s": m["tidings.publish_per_s"],
                "events_per_s": m["tidings.events_per_s"],
                "deliveries_per_s": m["tidings.deliveries_per_s"],
                **{c: {p: m[f"tidings.{c}.{p}"] for p in ("p50_ms", "p99_ms")} for c in CHANNELS},
            },
            {
                "throughput": m["ratios.throughput"],
                "in_app_p50": m["ratios.in_app_p50"],
                "email_p50": m["ratios.email_p50"],
            },
        )
    )
    for name, p, t, r in rows:
        print(
            f"{name:>6} {p['msg_per_s']:>10.0f} {p['p50_ms']:>7.1f} {p['p99_ms']:>7.1f} | "
            f"{t['publish_per_s']:>8.0f} {t['events_per_s']:>7.1f} {t['deliveries_per_s']:>8.1f} "
            f"{t['in_app']['p50_ms']:>10.0f} {t['in_app']['p99_ms']:>7.0f} "
            f"{t['email']['p50_ms']:>9.0f} {t['email']['p99_ms']:>7.0f} | {r['throughput']:>6.3f} "
            f"{r['in_app_p50']:>12.1f} {r['email_p50']:>11.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500, help="events per run (each makes 6 deliveries)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir per run")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for all deliveries per run")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="events per second to publish (the baseline gets 3x as many messages per second); "
        "default 0: a burst, as fast as the publisher goes",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: --events 100 --runs 1")
    args = parser.parse_args()
    if args.quick:
        args.events, args.runs = 100, 1
    if args.events < 2 or args.runs < 1:
        parser.error("--events must be at least 2 and --runs at least 1")

    machine = machine_info()
    print(f"command: {redacted_command()}")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    database_label = (
        f"{urllib.parse.urlsplit(args.database_url).scheme} (--database-url)"
        if args.database_url
        else "sqlite (fresh temp file per run)"
    )
    pacing = f"paced at {args.rate:g} events/s" if args.rate > 0 else "published as a burst"
    print(
        f"setup: {args.events} events x 3 users x 2 channels per run, {pacing}, {args.runs} run(s), "
        f"{args.processes} process(es) x {args.threads} threads, database {database_label}\n"
    )

    runs = []
    for i in range(args.runs):
        pika_result = run_pika(args.events * 3, args.timeout, args.rate * 3)
        with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
            tidings = run_tidings(args, Path(tmp))
        ratios = {
            "throughput": tidings["deliveries_per_s"] / pika_result["msg_per_s"],
            "in_app_p50": tidings["in_app"]["p50_ms"] / pika_result["p50_ms"],
            "email_p50": tidings["email"]["p50_ms"] / pika_result["p50_ms"],
        }
        runs.append({"pika": pika_result, "tidings": tidings, "ratios": ratios})
        print(
            f"run {i + 1}/{args.runs}: pika {pika_result['msg_per_s']:.0f} msg/s, "
            f"tidings {tidings['deliveries_per_s']:.1f} deliveries/s",
            file=sys.stderr,
        )

    medians = summarize(runs)
    print_table(runs, medians)
    print(
        "\nthr x = Tidings deliveries/s / pika msg/s;  p50 x = Tidings p50 / pika p50 (per run; median row = "
        "median of each column)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": redacted_command(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "machine": machine,
        "parameters": {k: v for k, v in vars(args).items() if k != "database_url"} | {"database": database_label},
        "runs": runs,
        "medians": medians,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
