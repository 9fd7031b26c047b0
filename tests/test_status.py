"""`tidings status` and `tidings health` against real RabbitMQ, SQLite and a worker process (docs/operations.md)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from dispatcher.cli.main import main
from dispatcher.core import clock
from dispatcher.core.settings import Settings
from dispatcher.ops.observations import longest_gap, observe_database
from dispatcher.ops.rabbitmq_api import api_credentials
from dispatcher.storage.db import init_database
from dispatcher.storage.migrate import migrate
from dispatcher.storage.models import PeriodicRun
from tests.support.consumers import held_unacknowledged
from tests.support.deployment import Deployment
from tests.support.publishing import publish
from tests.support.scheduler import run_schedules
from tests.support.services import free_port
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for


def run(capsys: pytest.CaptureFixture[str], settings: Settings, *argv: str) -> tuple[int, str]:
    code = main(list(argv), settings=settings)
    return code, capsys.readouterr().out


def queue_rows(out: str) -> dict[str, list[str]]:
    """The queues table of `tidings status`: queue name -> its other columns."""
    return {cells[0]: cells[1:] for cells in (line.split() for line in out.splitlines()) if cells and "." in cells[0]}


def closed_broker(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {
            "TIDINGS_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F",  # nothing listens there
            "TIDINGS_DATABASE_URL": f"sqlite:///{tmp_path / 'status.db'}",
            **env,
        }
    )


@pytest.mark.integration
def test_health_says_ok_once_per_service_it_reaches(
    capsys: pytest.CaptureFixture[str], deployment: Deployment, smtp_server: SmtpServer
) -> None:
    # given the deployment's database, RabbitMQ and SMTP server, all up
    # when
    code, out = run(capsys, deployment.settings, "health", "--timeout", "3")
    # then one line each, and exit 0
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["database", "broker", "smtp"]
    assert all(": ok " in line for line in lines), out
    assert "guest:***@" in lines[1]


def test_health_fails_with_one_clear_line_when_the_broker_and_smtp_are_down(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # given nothing listening where the broker and the SMTP server should be
    settings = closed_broker(tmp_path, TIDINGS_SMTP_URL=f"smtp://127.0.0.1:{free_port()}")
    # when
    code, out = run(capsys, settings, "health", "--timeout", "2")
    # then
    assert code == 1
    database, broker, smtp = out.splitlines()
    assert database.startswith("database: ok sqlite:///")
    assert broker.startswith("broker: FAILED amqp://guest:***@127.0.0.1:") and "Connection refused" in broker
    assert smtp.startswith("smtp: FAILED smtp://127.0.0.1:") and "Connection refused" in smtp


def test_status_exits_1_naming_a_broker_it_cannot_reach(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # given a migrated database and no broker
    settings = closed_broker(tmp_path)
    init_database(settings.database_url)
    migrate()
    # when
    code, out = run(capsys, settings, "status", "--timeout", "2")
    # then
    assert code == 1
    assert "RabbitMQ at amqp://guest:***@127.0.0.1:" in out and "cannot be read" in out and "Connection refused" in out
    assert "queues (unacked" in out and "(unknown: AMQPConnectionError" in out
    # and --json says the same
    code, out = run(capsys, settings, "status", "--json", "--timeout", "2")
    document = json.loads(out)
    assert code == 1 and document["queues"] is None and document["errors"]["broker"].startswith("AMQPConnectionError")
    assert document["errors"]["database"] is None and document["database"]["disabled_endpoints"] == 0


@pytest.mark.integration
@pytest.mark.slow
def test_status_names_dead_letters_and_says_all_well_once_they_are_purged(
    capsys: pytest.CaptureFixture[str], running: Deployment
) -> None:
    # given a worker on every queue, a periodic job that ran through it, and an event dead-lettered
    run_schedules(running, "release_held_deliveries.send()")
    wait_for(lambda: PeriodicRun.get_or_none(job="release_held_deliveries"), what="the periodic run's record")
    publish(running, b"{not json", routing_key="team.invite.sent")
    wait_for(lambda: len(running.dead_letters()) == 1, what="the dead letter")
    ingest_xq = running.settings.queue("ingest") + ".XQ"

    # when
    code, out = run(capsys, running.settings, "status")
    # then it exits 1 and names them, and how to see them
    assert code == 1, out
    assert f"  - 1 dead letters in {ingest_xq} (tidings dlq list --queue ingest)" in out
    assert "release_held_deliveries" in out and "never" in out  # the other jobs never ran: listed, not alarming
    assert out.count("  - ") == 1, out

    # when --json
    code, out = run(capsys, running.settings, "status", "--json")
    document = json.loads(out)
    # then the same, as data
    assert code == 1
    assert set(document) == {
        *("observed_at", "broker", "rabbitmq_api", "queues", "database", "errors", "milliseconds", "attention"),
        "channels_off",
    }
    assert document["channels_off"] == []
    queues = {q["short"]: q for q in document["queues"]}
    assert set(queues) == {"ingest", "ingest_retry", "in_app", "email", "discord", "webhook", "maintenance"}
    assert queues["ingest"]["dead"] == 1 and queues["ingest"]["consumers"] >= 1
    assert set(queues["email"]) == {
        *("name", "short", "ready", "consumers", "delayed", "dead", "unacknowledged", "delayed_unacknowledged")
    }
    [release] = [job for job in document["database"]["jobs"] if job["job"] == "release_held_deliveries"]
    assert release["outcome"] == "ok" and release["overdue"] is False and release["last_run"].endswith("Z")
    assert document["attention"] == [f"1 dead letters in {ingest_xq} (tidings dlq list --queue ingest)"]

    # when the dead letters are purged
    assert main(["dlq", "purge", "--yes"], settings=running.settings) == 0
    capsys.readouterr()
    code, out = run(capsys, running.settings, "status")
    # then all is well
    assert code == 0, out
    assert out.rstrip().endswith("all well")


def test_a_periodic_job_is_overdue_once_its_longest_gap_and_a_grace_have_passed(sqlite_db: str) -> None:
    # given the minutely job's last run 4 minutes ago, the daily clean-up's 20 hours ago, and a failed digest run
    now = clock.now()
    for job, ago, outcome in (("release_held_deliveries", 4 * 60, "ok"), ("clean_up", 20 * 3600, "ok")):
        at = now - dt.timedelta(seconds=ago)
        PeriodicRun.create(job=job, started_at=at, finished_at=at, outcome=outcome)
    PeriodicRun.create(job="send_digests", started_at=now, finished_at=now, outcome="failed", error="OperationalError")
    # when
    jobs = {job.job: job for job in observe_database(now).jobs}
    # then
    assert jobs["release_held_deliveries"].overdue and not jobs["clean_up"].overdue
    assert jobs["rankings_tick"].last_run is None and not jobs["rankings_tick"].overdue
    assert longest_gap("* * * * *") == dt.timedelta(minutes=1)
    assert longest_gap("*/15 * * * *") == dt.timedelta(minutes=15)
    assert longest_gap("17 3 * * *") == dt.timedelta(days=1)


@pytest.mark.integration
def test_status_counts_a_message_a_consumer_holds_as_unacknowledged(
    capsys: pytest.CaptureFixture[str], deployment: Deployment, rabbitmq_api: str
) -> None:
    # given the management API's URL, and a consumer holding one message of the email queue unacknowledged
    deployment.configure(TIDINGS_RABBITMQ_API_URL=rabbitmq_api)
    deployment.use_database()
    migrate()
    email = deployment.settings.queue("email")
    with held_unacknowledged(deployment.settings.broker_url, email):
        # when status is read (until the plugin's statistics, refreshed every 5 s, count it)
        def email_queue() -> dict[str, object] | None:
            document = json.loads(run(capsys, deployment.settings, "status", "--json")[1])
            [queue] = [q for q in document["queues"] if q["name"] == email]
            return {**queue, "errors": document["errors"]} if queue["unacknowledged"] == 1 else None

        queue = wait_for(email_queue, timeout=20, interval=0.5, what="the API to count the held message")
        _, out = run(capsys, deployment.settings, "status")

    # then --json says 1 unacknowledged, 0 ready, 1 consumer
    assert queue["ready"] == 0 and queue["consumers"] == 1 and queue["delayed_unacknowledged"] is None
    assert queue["errors"] == {"broker": None, "database": None, "rabbitmq_api": None}
    # and so does the screen; the queues never declared show "-"
    assert queue_rows(out)[email] == ["0", "1", "1", "-", "-", "-"], out
    assert queue_rows(out)[deployment.settings.queue("ingest")] == ["-"] * 6
    assert f"management API {rabbitmq_api} (" in out and "unacknowledged: unknown" not in out


@pytest.mark.integration
def test_status_says_unacknowledged_is_unknown_when_the_management_api_is_unset_or_unreachable(
    capsys: pytest.CaptureFixture[str], deployment: Deployment
) -> None:
    # given the email queue declared, with a consumer holding a message, and no management API
    deployment.use_database()
    migrate()
    email = deployment.settings.queue("email")
    closed = f"http://guest:hunter2@127.0.0.1:{free_port()}"  # nothing listens there
    with held_unacknowledged(deployment.settings.broker_url, email):
        # when TIDINGS_RABBITMQ_API_URL is unset
        _, unset_out = run(capsys, deployment.settings, "status")
        unset = json.loads(run(capsys, deployment.settings, "status", "--json")[1])
        # and when it points at a closed port
        deployment.configure(TIDINGS_RABBITMQ_API_URL=closed)
        _, closed_out = run(capsys, deployment.settings, "status", "--timeout", "2")
        refused = json.loads(run(capsys, deployment.settings, "status", "--json", "--timeout", "2")[1])

    # then the rest is read as usual, and the unacknowledged are "?", not a guessed 0
    for out in (unset_out, closed_out):
        assert queue_rows(out)[email] == ["0", "?", "1", "-", "-", "-"], out
    assert "unacknowledged: unknown (set TIDINGS_RABBITMQ_API_URL / enable the management plugin)" in unset_out
    assert "unacknowledged: unknown (RabbitMQ's management API cannot be read: RabbitMQApiError: " in closed_out
    assert "Connection refused" in closed_out and "check TIDINGS_RABBITMQ_API_URL" in closed_out
    # and --json says null and why
    for document in (unset, refused):
        [queue] = [q for q in document["queues"] if q["name"] == email]
        assert queue["unacknowledged"] is None and queue["ready"] == 0 and queue["consumers"] == 1
        assert document["errors"]["broker"] is None and document["errors"]["database"] is None
    assert unset["rabbitmq_api"] is None
    assert unset["errors"]["rabbitmq_api"] == "not read: TIDINGS_RABBITMQ_API_URL is not set"
    assert refused["rabbitmq_api"] == closed.replace("hunter2", "***")
    assert "Connection refused" in refused["errors"]["rabbitmq_api"]
    # and neither names the API as needing attention, nor shows its password
    for out in (unset_out, closed_out, json.dumps(refused)):
        assert "hunter2" not in out
    assert not any("management" in line or "API" in line for line in refused["attention"])


def test_the_management_api_is_asked_with_its_urls_credentials_else_the_broker_urls() -> None:
    # given / when / then
    broker = "amqp://tidings:s%40cret@rabbit.internal:5672/prod"
    with_own = Settings(broker_url=broker, rabbitmq_api_url="https://monitor:m0n@rabbit.internal:15671")
    assert api_credentials(with_own) == ("monitor", "m0n")
    assert api_credentials(Settings(broker_url=broker, rabbitmq_api_url="http://rabbit.internal:15672")) == (
        "tidings",
        "s@cret",
    )
    assert api_credentials(Settings(broker_url="amqp://rabbit.internal", rabbitmq_api_url="http://x:15672")) == (
        "guest",
        "guest",
    )
