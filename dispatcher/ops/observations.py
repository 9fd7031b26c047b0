"""What an operator looks at: queues, deliveries waiting or failing, disabled targets, periodic jobs.

One gathering, two readers: `tidings status` prints it (and exits 1 when :meth:`Observations.attention` says
something), and the web process's /metrics turns it into gauges at scrape time (ops/metrics.py). The broker,
the database and (when TIDINGS_RABBITMQ_API_URL is set) RabbitMQ's management API are read side by side, each
within ``timeout`` seconds: a source that does not answer in time is reported as unreachable, never waited for.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import peewee
import pendulum
import pika
import pika.exceptions
from periodiq import cron

from channels import switched_off
from dispatcher.core import clock
from dispatcher.core.settings import Settings, redact_url
from dispatcher.ops.dead_letters import QUEUES
from dispatcher.ops.health import describe
from dispatcher.ops.rabbitmq_api import unacknowledged
from dispatcher.runtime.periodic import SCHEDULE
from dispatcher.storage.db import database, is_sqlite
from dispatcher.storage.models import Delivery, DeliveryStatus, DisabledTarget, PeriodicRun, WebhookEndpoint

#: Seconds each source (broker, database) may take.
DEFAULT_TIMEOUT = 3.0
#: "Failed lately": failed deliveries updated this recently count in ChannelState.failed.
FAILED_WINDOW = dt.timedelta(hours=24)
#: A periodic job is overdue when its last run is older than its longest gap between runs plus this.
OVERDUE_GRACE = dt.timedelta(minutes=2)
SOON = dt.timedelta(hours=1)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class QueueState:
    """One of Tidings' queues Q: ready in Q, consumers of Q, ready in Q.DQ (delayed) and in Q.XQ (dead),
    unacknowledged in Q (in progress) and in Q.DQ (delayed messages a worker holds until they are due).

    None: the queue is not declared (no worker has started on it); for the unacknowledged, also: unknown.
    AMQP does not count them: they come from RabbitMQ's management API (TIDINGS_RABBITMQ_API_URL), when set
    and answering, and lag by its statistics interval (5 s by default).
    """

    name: str  # e.g. tidings.email
    short: str  # email: what `tidings dlq --queue` takes
    ready: int | None
    consumers: int | None
    delayed: int | None
    dead: int | None
    unacknowledged: int | None = None
    delayed_unacknowledged: int | None = None


@dataclasses.dataclass(frozen=True)
class ChannelState:
    """Deliveries of one channel: pending (to send now, or being sent), held in the database (a schedule,
    quiet hours, a long retry), failing (pending again after a failed attempt), failed in FAILED_WINDOW,
    and due later than now (all of them, and within the hour)."""

    channel: str
    pending: int = 0
    held: int = 0
    failing: int = 0
    failed: int = 0
    scheduled: int = 0
    due_within_hour: int = 0


@dataclasses.dataclass(frozen=True)
class JobState:
    """A periodic job's last recorded run, and whether it is overdue."""

    job: str
    schedule: str
    last_run: dt.datetime | None
    outcome: str | None
    error: str | None
    overdue: bool


@dataclasses.dataclass(frozen=True)
class DatabaseState:
    channels: list[ChannelState]
    disabled_targets: dict[str, int]  # channel -> targets that said they are gone (Discord 404/401)
    disabled_endpoints: int  # webhook endpoints disabled (410, or days of failures)
    jobs: list[JobState]


@dataclasses.dataclass(frozen=True)
class Observations:
    """Everything gathered, each source with its error (None: it answered) and the milliseconds it took."""

    observed_at: dt.datetime
    broker: str  # the broker URL, password masked
    rabbitmq_api: str | None  # the management API's URL, password masked; None: TIDINGS_RABBITMQ_API_URL unset
    queues: list[QueueState] | None
    database: DatabaseState | None
    errors: dict[str, str | None]  # "broker" / "database" / "rabbitmq_api" -> why it is missing, or None
    milliseconds: dict[str, float]
    #: The registered channels TIDINGS_CHANNELS switches off: their deliveries are recorded as skipped.
    channels_off: list[str] = dataclasses.field(default_factory=list)

    def attention(self) -> list[str]:
        """What needs an operator, one sentence each: an unreachable source, a queue nobody consumes, dead
        letters, a periodic job overdue or failing."""
        found = []
        if self.errors["broker"]:
            found.append(f"RabbitMQ at {self.broker} cannot be read: {self.errors['broker']}")
        if self.errors["database"]:
            found.append(f"the database cannot be read: {self.errors['database']}")
        queues = self.queues or []
        if queues and all(queue.consumers is None for queue in queues):
            found.append(f"no Tidings queue is declared ({queues[0].name}, …): no worker has ever started on them")
            queues = []
        for queue in queues:
            if queue.consumers is None:
                found.append(f"{queue.name} is not declared: no worker has started on it")
            elif queue.consumers == 0:
                found.append(f"{queue.name} has no consumer: start the Procfile group that reads it")
            if queue.dead:
                found.append(f"{queue.dead} dead letters in {queue.name}.XQ (tidings dlq list --queue {queue.short})")
        if self.database is not None:
            jobs = self.database.jobs
            if jobs and all(job.last_run is None for job in jobs):
                found.append("no periodic job has ever run: start the scheduler (periodiq schedules)")
            for job in jobs:
                if job.overdue:
                    found.append(f"periodic job {job.job} is overdue (last run {_when(job.last_run)})")
                if job.outcome == "failed":
                    found.append(f"periodic job {job.job} failed its last run: {job.error}")
        return found

    def to_json(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["attention"] = self.attention()
        return cast(dict[str, Any], _jsonable(document))


def observe(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> Observations:
    """Read the broker, the database and the management API side by side, each within ``timeout`` seconds."""
    now = clock.now()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=3, thread_name_prefix="tidings-observe")
    try:
        broker = pool.submit(_timed, lambda: observe_queues(settings, timeout=timeout))
        db = pool.submit(_timed, lambda: observe_database(now, timeout=timeout))
        api = pool.submit(_timed, lambda: observe_unacknowledged(settings, timeout=timeout))
        broker_result = _result(broker, timeout)
        db_result = _result(db, timeout)
        api_result = _result(api, timeout)
    finally:
        pool.shutdown(wait=False)  # a source past its timeout finishes (its own timeouts bound it) unwaited
    queues, counts = broker_result[0], api_result[0]
    if queues is not None and counts is not None:
        queues = [_with_unacknowledged(queue, counts) for queue in queues]
    if not settings.rabbitmq_api_url:
        api_result = (None, "not read: TIDINGS_RABBITMQ_API_URL is not set", 0.0)
    return Observations(
        observed_at=now,
        broker=redact_url(settings.broker_url),
        rabbitmq_api=redact_url(settings.rabbitmq_api_url) if settings.rabbitmq_api_url else None,
        queues=queues,
        database=db_result[0],
        errors={"broker": broker_result[1], "database": db_result[1], "rabbitmq_api": api_result[1]},
        milliseconds={
            "broker": round(broker_result[2], 1),
            "database": round(db_result[2], 1),
            "rabbitmq_api": round(api_result[2], 1),
        },
        channels_off=switched_off(settings),
    )


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    return fn(), (time.perf_counter() - start) * 1000


def _result(future: concurrent.futures.Future[tuple[T, float]], timeout: float) -> tuple[T | None, str | None, float]:
    start = time.perf_counter()
    try:
        value, ms = future.result(timeout=timeout + 0.5)  # its own timeouts come first; this is the backstop
    except concurrent.futures.TimeoutError:
        return None, f"no answer within {timeout:g} s", (time.perf_counter() - start) * 1000
    except Exception as e:  # noqa: BLE001 - any failure of a source is reported, not raised
        return None, describe(e), (time.perf_counter() - start) * 1000
    return value, None, ms


# --- the broker ------------------------------------------------------------------------------------------------


def observe_queues(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> list[QueueState]:
    """Each Tidings queue's counts, by passive declarations over one connection."""
    parameters = pika.URLParameters(settings.broker_url)
    parameters.socket_timeout = parameters.blocked_connection_timeout = timeout
    parameters.stack_timeout = timeout
    parameters.connection_attempts = 1
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()

        def declared(name: str) -> tuple[int, int] | None:
            nonlocal channel
            try:
                method = channel.queue_declare(name, passive=True).method
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code != 404:
                    raise
                channel = connection.channel()  # a 404 closes the channel
                return None
            return method.message_count, method.consumer_count

        states = []
        for short in QUEUES:
            name = settings.queue(short)
            main, delayed, dead = (declared(n) for n in (name, f"{name}.DQ", f"{name}.XQ"))
            states.append(
                QueueState(
                    name=name,
                    short=short,
                    ready=main[0] if main else None,
                    consumers=main[1] if main else None,
                    delayed=delayed[0] if delayed else None,
                    dead=dead[0] if dead else None,
                )
            )
        return states
    finally:
        if connection.is_open:
            connection.close()


def observe_unacknowledged(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, int | None] | None:
    """Messages unacknowledged in each Tidings queue and its .DQ, from the management API; None: not set."""
    if not settings.rabbitmq_api_url:
        return None
    names = [settings.queue(short) + suffix for short in QUEUES for suffix in ("", ".DQ")]
    return unacknowledged(settings, names, timeout=timeout)


def _with_unacknowledged(queue: QueueState, counts: dict[str, int | None]) -> QueueState:
    if queue.consumers is None:
        return queue  # not declared: nothing to count
    return dataclasses.replace(
        queue, unacknowledged=counts.get(queue.name), delayed_unacknowledged=counts.get(f"{queue.name}.DQ")
    )


# --- the database ----------------------------------------------------------------------------------------------


def observe_database(now: dt.datetime, *, timeout: float = DEFAULT_TIMEOUT) -> DatabaseState:
    """Delivery counts per channel, disabled targets and endpoints, the periodic jobs' last runs."""
    with database.connection_context(), database.atomic():
        if not is_sqlite():
            database.execute_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
        return DatabaseState(
            channels=_channels(now),
            disabled_targets=_count_by(
                DisabledTarget.channel, DisabledTarget.select(DisabledTarget.channel, peewee.fn.COUNT(1))
            ),
            disabled_endpoints=WebhookEndpoint.select().where(WebhookEndpoint.enabled == False).count(),  # noqa: E712
            jobs=_jobs(now),
        )


def _count_by(field: peewee.Field, query: peewee.ModelSelect[Any]) -> dict[str, int]:
    """``query`` (a select of ``field`` and a count) grouped by ``field``, as a dict."""
    rows = cast(Iterable[tuple[str, int]], query.group_by(field).tuples())
    return {key: count for key, count in rows}


def _channels(now: dt.datetime) -> list[ChannelState]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    waiting = (
        Delivery.select(
            Delivery.channel,
            Delivery.held,
            Delivery.attempts > 0,
            Delivery.next_attempt_at > now,
            Delivery.next_attempt_at <= now + SOON,
            peewee.fn.COUNT(1),
        )
        .where(Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]))
        .group_by(
            Delivery.channel,
            Delivery.held,
            Delivery.attempts > 0,
            Delivery.next_attempt_at > now,
            Delivery.next_attempt_at <= now + SOON,
        )
        .tuples()
    )
    for channel, held, attempted, later, soon, count in cast(Iterable[tuple[str, Any, Any, Any, Any, int]], waiting):
        row = counts[channel]
        row["held" if held else "pending"] += count
        row["failing"] += count if attempted else 0
        row["scheduled"] += count if later else 0
        row["due_within_hour"] += count if later and soon else 0
    failed = Delivery.select(Delivery.channel, peewee.fn.COUNT(1)).where(
        Delivery.status == DeliveryStatus.FAILED, Delivery.updated_at >= now - FAILED_WINDOW
    )
    for channel, count in _count_by(Delivery.channel, failed).items():
        counts[channel]["failed"] += count
    return [ChannelState(channel=name, **values) for name, values in sorted(counts.items())]


def _jobs(now: dt.datetime) -> list[JobState]:
    runs = {run.job: run for run in PeriodicRun.select()}
    states = []
    for job, spec in SCHEDULE.items():
        run = runs.get(job)
        last = run.finished_at if run else None
        overdue = last is not None and now - last > longest_gap(spec) + OVERDUE_GRACE
        states.append(
            JobState(
                job=job,
                schedule=spec,
                last_run=last,
                outcome=run.outcome if run else None,
                error=run.error if run else None,
                overdue=overdue,
            )
        )
    return states


def longest_gap(spec: str) -> dt.timedelta:
    """The longest time between two runs of a cron spec (sampled over its next few runs from a fixed Monday)."""
    schedule = cron(spec)
    runs = [schedule.next_valid_date(pendulum.datetime(2026, 1, 5, tz="UTC"))]
    for _ in range(8):
        runs.append(schedule.next_valid_date(runs[-1]))
    return max(dt.timedelta(seconds=(b - a).total_seconds()) for a, b in zip(runs, runs[1:], strict=False))


def _when(moment: dt.datetime | None) -> str:
    return "never" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")
    return value
