"""Prometheus metrics: a worker group's port and the web process's /metrics after real traffic, and the
Grafana dashboard's queries against what is exported (docs/metrics.md)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.amqp.publisher import build_event
from dispatcher.core import metrics as core_metrics
from dispatcher.core.settings import PROJECT_ROOT
from dispatcher.ops.metrics import STATE_GAUGES, StateCollector, exposition
from dispatcher.storage.models import InboxItem
from tests.support.consumers import held_unacknowledged
from tests.support.deployment import Deployment
from tests.support.events import invite
from tests.support.publishing import publish, publish_as_tidings, publish_users_as_tidings
from tests.support.services import free_port
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for

DASHBOARD = PROJECT_ROOT / "docs" / "grafana" / "tidings.json"
#: dramatiq's Prometheus middleware (dramatiq/middleware/prometheus.py), served on each worker group's port.
DRAMATIQ_METRICS = (
    "dramatiq_messages_total",
    "dramatiq_message_errors_total",
    "dramatiq_message_retries_total",
    "dramatiq_message_rejects_total",
    "dramatiq_messages_inprogress",
    "dramatiq_delayed_messages_inprogress",
    "dramatiq_message_duration_milliseconds",
)
TIDINGS_METRICS = (
    core_metrics.EVENTS,
    core_metrics.DELIVERIES,
    core_metrics.DELIVERY_LATENCY,
    core_metrics.SSE_STREAMS,
    *STATE_GAUGES,
)
EVENTS = 5


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample at ``url``, by (name, labels)."""
    return samples_of(httpx.get(url, timeout=10).text)


def samples_of(text: str) -> Samples:
    """Every sample of an exposition, by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there are none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` with exactly ``labels``; None when it is not exported."""
    return samples.get((name, frozenset(labels.items())))


def settles(url: str, check: Callable[[Samples], bool]) -> Callable[[], bool]:
    return lambda: check(scrape(url))


@pytest.mark.integration
@pytest.mark.slow
def test_a_scrape_after_real_traffic_sees_the_counters_and_the_histogram_move(
    deployment: Deployment, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    # given a worker group of two processes serving its metrics as the Procfile's lines ask
    port, directory = free_port(), tmp_path / "metrics"  # a directory of its own: every *.db in it is read
    deployment.env.update(dramatiq_prom_port=str(port), dramatiq_prom_host="127.0.0.1", dramatiq_prom_db=str(directory))
    deployment.worker(processes=2, threads=4).start()
    deployment.use_database()
    group = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: _answers(group), what="the group's metrics port")
    publish_users_as_tidings(deployment, ["ana", "bo"])
    # when events are accepted, one is published twice, and one is rejected
    events = [build_event("team.invite.sent", invite(["ana", "bo"])) for _ in range(EVENTS)]
    publish_as_tidings(deployment, *events, events[0])
    publish(deployment, b"not json", routing_key="team.invite.sent")
    wait_for(lambda: InboxItem.select().count() == EVENTS * 2, what="every inbox row")
    wait_for(lambda: len(smtp_server.messages) == EVENTS * 2, what="every email")

    # then the group's port sums both processes: ingest outcomes by type, deliveries, the latency histogram
    def counted(samples: Samples) -> bool:
        return (
            value(samples, "tidings_events_total", type="team.invite.sent", outcome="accepted") == EVENTS
            and value(samples, "tidings_deliveries_total", channel="email", outcome="sent") == EVENTS * 2
            and value(samples, "tidings_deliveries_total", channel="in_app", outcome="sent") == EVENTS * 2
        )

    wait_for(settles(group, counted), what="the counters on the group's port")
    samples = scrape(group)
    assert value(samples, "tidings_events_total", type="team.invite.sent", outcome="duplicate") == 1
    assert value(samples, "tidings_events_total", type="tidings.user.upsert", outcome="applied") == 2
    assert value(samples, "tidings_events_total", type="other", outcome="rejected") == 1
    assert value(samples, "tidings_delivery_latency_seconds_count", channel="in_app") == EVENTS * 2
    assert value(samples, "tidings_delivery_latency_seconds_bucket", channel="email", le="+Inf") == EVENTS * 2
    assert 0 < value(samples, "tidings_delivery_latency_seconds_sum", channel="email") < EVENTS * 2 * 30
    # and dramatiq's own metrics, of both processes
    assert value(samples, "dramatiq_messages_total", actor_name="ingest") >= EVENTS + 4
    assert value(samples, "dramatiq_message_rejects_total", actor_name="ingest") == 1
    assert value(samples, "dramatiq_message_duration_milliseconds_count", actor_name="deliver_email") >= 1
    # and no label carries a user or an address
    assert not any("ana" in v or "@" in v for _, labels in samples for _, v in labels)

    # when the web process is scraped: the state read at scrape time
    with deployment.web().start() as web:
        samples = scrape(f"{web.url}/metrics")
        # then queue depths and consumers, the dead letter, the sources' cost
        assert value(samples, "tidings_queue_consumers", queue="ingest") >= 1
        assert value(samples, "tidings_queue_messages", queue="ingest", state="dead") == 1
        assert value(samples, "tidings_queue_messages", queue="email", state="ready") == 0
        assert value(samples, "tidings_observe_up", source="broker") == 1
        assert value(samples, "tidings_observe_up", source="database") == 1
        assert value(samples, "tidings_observe_milliseconds", source="database") > 0
        assert value(samples, "tidings_disabled_endpoints") == 0
        names = {name for name, _ in samples}
        assert "process_cpu_seconds_total" in names
        # and /metrics stays out of the OpenAPI document
        assert "/metrics" not in httpx.get(f"{web.url}/openapi.json", timeout=10).json()["paths"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    # given the dashboard's queries
    queries = dashboard_queries()
    assert len(queries) >= 8
    # when the metric names are read out of them (a name is followed by { or [ or ), never by a parenthesis)
    used = set()
    for query in queries:
        used |= {m.group(1) for m in re.finditer(r"\b((?:tidings|dramatiq)_[a-z_]+)\b", query)}
    # then each is one Tidings or dramatiq exports (histograms by their _bucket / _count / _sum series)
    exported = set()
    for name in (*TIDINGS_METRICS, *DRAMATIQ_METRICS):
        exported |= {name, f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    assert used and used <= exported, sorted(used - exported)
    # and the dashboard shows throughput, latency p50/p99, failures, queue depths, dead letters, disabled targets
    text = " ".join(queries)
    for needed in ("histogram_quantile(0.5", "histogram_quantile(0.99", 'outcome="failed"', "tidings_queue_messages"):
        assert needed in text
    assert 'state="dead"' in text and "tidings_disabled_targets" in text


def test_the_names_tidings_defines_are_the_names_it_exports() -> None:
    # given the metrics made (as /metrics makes them before any work is counted)
    core_metrics.declare()
    from prometheus_client import REGISTRY, generate_latest

    # when / then
    text = generate_latest(REGISTRY).decode()
    for name in (core_metrics.EVENTS, core_metrics.DELIVERIES, core_metrics.DELIVERY_LATENCY, core_metrics.SSE_STREAMS):
        assert f"# TYPE {name} " in text


@pytest.mark.integration
def test_the_web_process_exports_a_message_a_consumer_holds_as_unacknowledged(
    deployment: Deployment, rabbitmq_api: str
) -> None:
    # given a consumer holding one message of the email queue unacknowledged
    with held_unacknowledged(deployment.settings.broker_url, deployment.settings.queue("email")):
        # when the web process, with the management API's URL, is scraped (until the plugin's statistics,
        # refreshed every 5 s, count it)
        with deployment.web(TIDINGS_RABBITMQ_API_URL=rabbitmq_api).start() as web:
            url = f"{web.url}/metrics"

            def held() -> Samples | None:
                samples = scrape(url)
                unacked = sample(samples, "tidings_queue_messages", queue="email", state="unacknowledged")
                return samples if unacked else None

            samples = wait_for(held, timeout=20, interval=0.5, what="the unacknowledged gauge to say 1")

    # then the gauge says 1, beside the queue's ready and consumers, and the API is a source that answered
    assert sample(samples, "tidings_queue_messages", queue="email", state="unacknowledged") == 1
    assert sample(samples, "tidings_queue_messages", queue="email", state="ready") == 0
    assert sample(samples, "tidings_queue_consumers", queue="email") == 1
    assert sample(samples, "tidings_observe_up", source="rabbitmq_api") == 1
    assert sample(samples, "tidings_queue_messages", queue="ingest", state="unacknowledged") is None  # undeclared


@pytest.mark.integration
def test_metrics_leave_the_unacknowledged_out_when_the_management_api_is_unset_or_unreachable(
    deployment: Deployment,
) -> None:
    # given the email queue with a consumer holding a message
    deployment.use_database()
    with held_unacknowledged(deployment.settings.broker_url, deployment.settings.queue("email")):
        # when the state is exported without TIDINGS_RABBITMQ_API_URL, and with it pointing at a closed port
        unset = samples_of(exposition(StateCollector(deployment.settings, timeout=2)).decode())
        deployment.configure(TIDINGS_RABBITMQ_API_URL=f"http://127.0.0.1:{free_port()}")
        closed = samples_of(exposition(StateCollector(deployment.settings, timeout=2)).decode())

    # then the ready count and the consumers are there, the unacknowledged are left out rather than 0
    for samples in (unset, closed):
        assert sample(samples, "tidings_queue_messages", queue="email", state="ready") == 0
        assert sample(samples, "tidings_queue_consumers", queue="email") == 1
        assert sample(samples, "tidings_queue_messages", queue="email", state="unacknowledged") is None
        assert sample(samples, "tidings_observe_up", source="broker") == 1
    # and an unreachable API is a source that is down; an unset one is no source at all
    assert sample(closed, "tidings_observe_up", source="rabbitmq_api") == 0
    assert sample(unset, "tidings_observe_up", source="rabbitmq_api") is None
