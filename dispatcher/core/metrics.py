"""Tidings' own Prometheus counters, histogram and gauge, counted where the work happens (docs/metrics.md).

The metrics are made on first use, not at import. In a dramatiq worker group, prometheus-client must be
imported after dramatiq's Prometheus middleware has pointed PROMETHEUS_MULTIPROC_DIR at the group's
directory (its after_process_boot): imported earlier, each process would keep its values in memory, where
the group's exposition server cannot see them. In the web process they live in the default registry.

Labels are bounded: an event type (a catalog type, a control command, else "other"), a channel, an
outcome. Never a user, an address or a URL.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

#: Seconds from an event's time to its delivery: sub-second at rest, minutes during an outage, hours for a
#: retry schedule (signed webhooks).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0, 86400.0)

EVENTS = "tidings_events_total"
DELIVERIES = "tidings_deliveries_total"
DELIVERY_LATENCY = "tidings_delivery_latency_seconds"
SSE_STREAMS = "tidings_sse_streams_open"


@dataclasses.dataclass(frozen=True)
class _Metrics:
    events: Counter
    deliveries: Counter
    latency: Histogram
    streams: Gauge


_made: _Metrics | None = None
_lock = threading.Lock()


def _metrics() -> _Metrics:
    global _made
    if _made is None:
        with _lock:
            if _made is None:
                from prometheus_client import Counter, Gauge, Histogram

                _made = _Metrics(
                    events=Counter(
                        EVENTS.removesuffix("_total"),
                        "Events ingested, by type and outcome "
                        "(accepted, duplicate, applied, stale, unchanged, rejected).",
                        ["type", "outcome"],
                    ),
                    deliveries=Counter(
                        DELIVERIES.removesuffix("_total"),
                        "Delivery attempts, by channel and outcome (sent, skipped, retry, failed).",
                        ["channel", "outcome"],
                    ),
                    latency=Histogram(
                        DELIVERY_LATENCY,
                        "Seconds from an event's time (or when it was due) to its delivery, by channel.",
                        ["channel"],
                        buckets=LATENCY_BUCKETS,
                    ),
                    streams=Gauge(SSE_STREAMS, "Live inbox streams (SSE) open.", multiprocess_mode="livesum"),
                )
    return _made


def declare() -> None:
    """Make the metrics now (a scrape lists them before anything was counted)."""
    _metrics()


def count_event(kind: str, outcome: str) -> None:
    """One event ingested; ``kind`` must be bounded (a catalog type, a command, or "other")."""
    _metrics().events.labels(type=kind, outcome=outcome).inc()


def count_delivery(channel: str, outcome: str, *, latency: float | None = None) -> None:
    """One delivery attempt's outcome; ``latency`` (seconds) for a sent one."""
    made = _metrics()
    made.deliveries.labels(channel=channel, outcome=outcome).inc()
    if latency is not None:
        made.latency.labels(channel=channel).observe(max(0.0, latency))


def stream_opened() -> None:
    _metrics().streams.inc()


def stream_closed() -> None:
    _metrics().streams.dec()
