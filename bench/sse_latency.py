"""Live-update latency: a CloudEvent published with raw pika until its SSE ``notification`` event is read.

    .venv/bin/python bench/sse_latency.py [--events N] [--rate R] [--database-url URL]

A stock worker (the Procfile's worker line) and the web process (its web line) on a fresh deployment; one
client reads one user's stream (tests/support/sse.py) while N "match.started" events (in-app only) are
published to that user at R per second, each on its own with publisher confirms, as a producer does. Each
event carries its sequence number, so its latency is the time from basic_publish to the event's arrival.
The path: ingest, the in_app delivery and its commit, the inbox feed's announcement, the web process's read.
Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.deployment import Deployment  # noqa: E402
from tests.support.events import cloud_event  # noqa: E402
from tests.support.publishing import connect_producer  # noqa: E402
from tests.support.services import RABBITMQ_URL, free_port  # noqa: E402
from tests.support.sse import EventSource  # noqa: E402

USER = "bench-user"
WARM_UP = 5


def event(seq: int) -> dict[str, object]:
    return cloud_event(
        "match.started", {"recipients": [USER], "tournament_name": "Bench Cup", "opponent_name": "Owls", "seq": seq}
    )


def measure(events: int, rate: float, database_url: str | None) -> list[float]:
    """Seconds from publish to SSE arrival for each of ``events`` events (after a few to warm up)."""
    with tempfile.TemporaryDirectory() as tmp:
        deployment = Deployment(Path(tmp), RABBITMQ_URL, free_port())
        if database_url:
            deployment.configure(TIDINGS_DATABASE_URL=database_url)
        try:
            deployment.worker().start()
            with deployment.web().start() as web:
                source = EventSource(web, USER)
                source.next("count")
                with connect_producer(deployment) as producer:
                    published: dict[int, float] = {}
                    start = time.monotonic()
                    for seq in range(-WARM_UP, events):
                        time.sleep(max(0.0, start + (seq + WARM_UP) / rate - time.monotonic()))
                        published[seq] = time.monotonic()
                        producer.send(event(seq))
                    arrived: dict[int, float] = {}
                    while len(arrived) < len(published):
                        notification = source.next(timeout=10)
                        arrived[notification.json()["data"]["seq"]] = notification.received_at
                source.close()
        finally:
            deployment.teardown()
    return [arrived[seq] - published[seq] for seq in range(events)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    parser.add_argument("--database-url", help="default: a SQLite file of the run's own")
    arguments = parser.parse_args()
    latencies = measure(arguments.events, arguments.rate, arguments.database_url)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    print(
        f"publish -> SSE notification, {arguments.events} events at {arguments.rate:g}/s: "
        f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
