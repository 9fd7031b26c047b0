"""The web process's /metrics: Tidings' counters plus state gauges computed at scrape time (docs/metrics.md).

The state (queue depths, dead letters, deliveries held or scheduled, disabled targets, periodic jobs) comes
from ops/observations.py, the gathering `tidings status` prints. A scrape reads it at most once per
``max_age`` seconds, however many scrapers ask (one at a time; the others reuse the answer), and each source
within its timeout; tidings_observe_milliseconds says what the reading cost.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dispatcher.core import metrics
from dispatcher.core.settings import Settings
from dispatcher.ops.observations import DEFAULT_TIMEOUT, Observations, observe

#: Seconds a gathered state serves later scrapes.
MAX_AGE = 5.0

#: Every gauge this collector exports (the dashboard test checks its queries against these and the counters).
STATE_GAUGES = (
    "tidings_queue_messages",
    "tidings_queue_consumers",
    "tidings_deliveries_waiting",
    "tidings_disabled_targets",
    "tidings_disabled_endpoints",
    "tidings_periodic_job_last_run_timestamp_seconds",
    "tidings_periodic_job_overdue",
    "tidings_observe_up",
    "tidings_observe_milliseconds",
)


class StateCollector(Collector):
    """Gauges of what ``observe`` finds, read at scrape time."""

    def __init__(
        self,
        settings: Settings,
        *,
        max_age: float = MAX_AGE,
        timeout: float = DEFAULT_TIMEOUT,
        gather: Callable[[Settings], Observations] | None = None,
    ) -> None:
        self.settings = settings
        self.max_age = max_age
        self.gather = gather or (lambda s: observe(s, timeout=timeout))
        self._lock = threading.Lock()
        self._last: tuple[float, Observations] | None = None

    def observations(self) -> Observations:
        with self._lock:
            if self._last is None or time.monotonic() - self._last[0] > self.max_age:
                self._last = (time.monotonic(), self.gather(self.settings))
            return self._last[1]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        seen = self.observations()
        messages = GaugeMetricFamily(
            "tidings_queue_messages",
            "Messages in a Tidings queue: ready, unacknowledged (in progress), delayed (ready in its .DQ), "
            "delayed_unacknowledged (held by a worker until due) or dead (in its .XQ).",
            labels=["queue", "state"],
        )
        consumers = GaugeMetricFamily("tidings_queue_consumers", "Consumers of a Tidings queue.", labels=["queue"])
        for queue in seen.queues or []:
            for state, value in (
                ("ready", queue.ready),
                ("unacknowledged", queue.unacknowledged),
                ("delayed", queue.delayed),
                ("delayed_unacknowledged", queue.delayed_unacknowledged),
                ("dead", queue.dead),
            ):
                if value is not None:  # unknown (the management API unset or not answering): left out, never 0
                    messages.add_metric([queue.short, state], value)
            if queue.consumers is not None:
                consumers.add_metric([queue.short], queue.consumers)
        yield messages
        yield consumers
        waiting = GaugeMetricFamily(
            "tidings_deliveries_waiting",
            "Deliveries not final, by channel and state: pending, held (in the database), failing (pending after "
            "a failed attempt), scheduled (due later), failed_recently (failed in the last 24 h).",
            labels=["channel", "state"],
        )
        targets = GaugeMetricFamily(
            "tidings_disabled_targets", "Targets that said they are gone (never called again).", labels=["channel"]
        )
        endpoints = GaugeMetricFamily("tidings_disabled_endpoints", "Webhook endpoints disabled.")
        last_run = GaugeMetricFamily(
            "tidings_periodic_job_last_run_timestamp_seconds", "When a periodic job last finished.", labels=["job"]
        )
        overdue = GaugeMetricFamily(
            "tidings_periodic_job_overdue", "1 when a periodic job missed its schedule.", labels=["job"]
        )
        if seen.database is not None:
            for row in seen.database.channels:
                for state, value in (
                    ("pending", row.pending),
                    ("held", row.held),
                    ("failing", row.failing),
                    ("scheduled", row.scheduled),
                    ("failed_recently", row.failed),
                ):
                    waiting.add_metric([row.channel, state], value)
            for channel, count in seen.database.disabled_targets.items():
                targets.add_metric([channel], count)
            endpoints.add_metric([], seen.database.disabled_endpoints)
            for job in seen.database.jobs:
                if job.last_run is not None:
                    last_run.add_metric([job.job], job.last_run.replace(tzinfo=dt.UTC).timestamp())
                overdue.add_metric([job.job], 1 if job.overdue else 0)
        yield from (waiting, targets, endpoints, last_run, overdue)
        up = GaugeMetricFamily("tidings_observe_up", "1 when a source answered the last reading.", labels=["source"])
        cost = GaugeMetricFamily(
            "tidings_observe_milliseconds", "What reading a source cost, in milliseconds.", labels=["source"]
        )
        for source, error in seen.errors.items():
            if source == "rabbitmq_api" and seen.rabbitmq_api is None:
                continue  # not set: not a source that is down
            up.add_metric([source], 0 if error else 1)
            cost.add_metric([source], seen.milliseconds[source])
        yield up
        yield cost


class _Joined:
    """The process's registry (Tidings' counters, the process collector) and the state, as one registry."""

    def __init__(self, state: StateCollector) -> None:
        self.state = state

    def collect(self) -> Iterator[object]:
        metrics.declare()  # listed from the first scrape on, before any work counted
        yield from REGISTRY.collect()
        yield from self.state.collect()


def exposition(state: StateCollector) -> bytes:
    """The text format of everything /metrics serves."""
    return generate_latest(_Joined(state))  # type: ignore[arg-type]  # it only calls collect()
