"""The ``tidings`` command, run in-process against real SQLite, RabbitMQ and worker processes."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher.cli.main import main
from dispatcher.core import clock
from dispatcher.core.settings import PROJECT_ROOT, Settings
from dispatcher.storage.db import init_database
from dispatcher.storage.migrate import SCHEMA_VERSION
from dispatcher.storage.models import InboxItem, Preference, User
from tests.support.cli import run
from tests.support.deployment import Deployment
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"TIDINGS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"})


def test_migrate_creates_the_schema_then_reports_it_up_to_date(capsys, settings: Settings) -> None:
    assert run(capsys, settings, "migrate")[1] == f"schema at version {SCHEMA_VERSION} (was 0)\n"
    assert run(capsys, settings, "migrate")[1] == f"schema at version {SCHEMA_VERSION} (up to date)\n"


def test_users_prefs_and_topics_commands_apply_and_show_what_they_did(capsys, settings: Settings) -> None:
    # when
    assert (
        run(capsys, settings, "users", "upsert", "ana", "--email", "ana@example.com", "--timezone", "Europe/Paris")[1]
        == "applied\n"
    )
    assert run(capsys, settings, "prefs", "set", "ana", "*", "email", "off")[1] == "applied\n"
    assert run(capsys, settings, "topics", "subscribe", "team:1", "ana")[1] == "applied\n"
    # then
    users = json.loads(run(capsys, settings, "users", "list", "--json")[1])
    assert users == [
        {
            "id": "ana",
            "email": "ana@example.com",
            "name": None,
            "timezone": "Europe/Paris",
            "locale": None,
            "discord_webhook": None,
            "digest_time": "08:00",
            "quiet_start": None,
            "quiet_end": None,
        }
    ]
    prefs = json.loads(run(capsys, settings, "prefs", "show", "ana", "--json")[1])
    resolved = {row["type"]: row["channels"] for row in prefs["resolved"]}
    enabled = {channel: route["enabled"] for channel, route in resolved["team.invite.sent"].items()}
    assert enabled == {"in_app": True, "email": False, "discord": False}  # email switched off for every type...
    assert resolved["payment.verified"]["email"] == {  # ...but not for a critical one
        "enabled": True,
        "mode": "immediate",
        "locked": True,
        "quiet_until": None,
    }
    assert prefs["stored"] == [{"type": "*", "channel": "email", "enabled": False, "mode": None}]  # no mode chosen
    assert json.loads(run(capsys, settings, "topics", "list", "--json")[1]) == [{"topic": "team:1", "user": "ana"}]


def test_prefs_show_prints_what_routing_decides_now_digest_quiet_hours_and_locks(capsys, settings: Settings) -> None:
    # given ana, in Paris, with quiet hours from 22:00 to 07:00, match results in her email digest, Discord on
    run(capsys, settings, "users", "upsert", "ana", "--email", "ana@example.com", "--timezone", "Europe/Paris")
    run(capsys, settings, "prefs", "set", "ana", "*", "discord", "on")
    init_database(settings.database_url)
    User.update(quiet_start="22:00", quiet_end="07:00").where(User.id == "ana").execute()
    Preference.create(
        user_id="ana", type="match.completed", channel="email", enabled=True, mode="digest", changed_at=clock.now()
    )

    # when: it is 23:30 in Paris (21:30 UTC)
    with clock.use_clock(lambda: dt.datetime(2026, 5, 9, 21, 30)):
        shown = json.loads(run(capsys, settings, "prefs", "show", "ana", "--json")[1])
        table = run(capsys, settings, "prefs", "show", "ana")[1]

    # then
    resolved = {row["type"]: row["channels"] for row in shown["resolved"]}
    assert resolved["match.completed"]["email"]["mode"] == "digest"
    assert resolved["team.invite.sent"]["discord"]["quiet_until"] == "2026-05-10T05:00:00Z"  # 07:00 in Paris
    assert resolved["team.invite.sent"]["in_app"]["quiet_until"] is None  # in-app ignores quiet hours
    assert resolved["system.announcement"]["email"] == {  # critical: locked, and never held
        "enabled": True,
        "mode": "immediate",
        "locked": True,
        "quiet_until": None,
    }
    routes = table.split("stored settings")[0].splitlines()
    rows = {line.split()[0]: line for line in routes if line.startswith(("match.completed ", "team."))}
    assert rows["match.completed"].split()[1:3] == ["on", "digest"]
    assert "on, held by quiet hours until 2026-05-10T05:00:00Z" in rows["team.invite.sent"]
    assert "on, locked" in table


def test_bad_input_gets_a_clear_error_and_a_failing_status(capsys, settings: Settings) -> None:
    code, _, err = run(capsys, settings, "users", "upsert", "ana", "--timezone", "Mars/Olympus")
    assert (code, err) == (1, "tidings: error: timezone 'Mars/Olympus' is not an IANA time zone name\n")
    code, _, err = run(capsys, settings, "deliveries", "no-such-event")
    assert (code, err) == (1, "tidings: error: no event with id 'no-such-event'\n")
    code, _, err = run(capsys, settings, "publish", "team.invite.sent", "--data", '{"recipients": ["ana"]}')
    assert code == 1 and "requires: team_name, inviter_name" in err
    with pytest.raises(SystemExit) as usage:
        main(["prefs", "set", "ana", "*", "pigeon", "on"], settings=settings)
    assert usage.value.code == 2


@pytest.mark.integration
def test_publish_reports_an_event_no_queue_would_take(capsys, rabbitmq: str, tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"TIDINGS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "TIDINGS_EXCHANGE": f"unbound_{os.getpid()}"}
    )
    code, _, err = run(
        capsys,
        settings,
        "publish",
        "system.announcement",
        "--data",
        '{"recipients": ["ana"], "title": "Hi", "message": "Hello"}',
    )
    assert code == 1 and "no queue is bound for routing key 'system.announcement'" in err


@pytest.mark.integration
def test_a_published_event_shows_in_the_inbox_and_its_deliveries(capsys, running: Deployment) -> None:
    # given
    settings = running.settings
    # when
    code, out, _ = run(
        capsys,
        settings,
        "publish",
        "system.announcement",
        "--id",
        "ann-1",
        "--data",
        '{"recipients": ["ana"], "title": "Maintenance", "message": "Back at 10:00"}',
    )
    assert code == 0 and out.startswith("published system.announcement id=ann-1")
    running.use_database()
    wait_for(lambda: InboxItem.select().count() == 1, what="the inbox row")
    # then
    [item] = json.loads(run(capsys, settings, "inbox", "list", "ana", "--json")[1])
    assert (item["title"], item["read_at"]) == ("Maintenance", None)
    assert run(capsys, settings, "inbox", "mark-read", "ana", str(item["id"]))[1] == "marked 1 read\n"
    assert json.loads(run(capsys, settings, "inbox", "list", "ana", "--unread", "--json")[1]) == []
    wait_for(lambda: '"skipped"' in run(capsys, settings, "deliveries", "ann-1", "--json")[1], what="email")
    report = json.loads(run(capsys, settings, "deliveries", "ann-1", "--json")[1])
    assert report["event"] == {"id": "ann-1", "source": "/tidings/cli", "type": "system.announcement"}
    assert [(d["user"], d["channel"], d["status"]) for d in report["deliveries"]] == [
        ("ana", "email", "skipped"),
        ("ana", "in_app", "sent"),
    ]


PROCESSES = 2  # the Procfile's worker line: --processes 2


@pytest.mark.integration
@pytest.mark.slow
def test_run_restarts_a_worker_that_died_and_stops_everything_on_sigterm(
    deployment: Deployment, smtp_server: SmtpServer
) -> None:
    # given `tidings run` supervising the worker
    log_path = deployment.tmp_path / "run.log"
    with open(log_path, "wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "dispatcher.cli", "run", "--only", "worker"],
            cwd=PROJECT_ROOT,
            env=deployment.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def started_pids() -> list[int]:
            text = log_path.read_text()
            return [int(line.split("pid=")[1].split()[0]) for line in text.splitlines() if "process_started" in line]

        def ready() -> int:
            return log_path.read_text().count("Worker process is ready")

        wait_for(lambda: ready() == PROCESSES, timeout=30, what="the worker group")
        [first] = started_pids()
        # when the worker group is killed
        os.killpg(first, signal.SIGKILL)
        # then it is started again
        wait_for(lambda: len(started_pids()) == 2, timeout=30, what="the restart")
        wait_for(lambda: ready() == 2 * PROCESSES, timeout=30, what="the restarted group")
        # and SIGTERM stops the supervisor and its children
        second = started_pids()[1]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=40) == 0
        with pytest.raises(ProcessLookupError):
            os.killpg(second, 0)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


def test_the_documented_json_schema_is_the_one_the_catalog_generates(capsys, settings: Settings) -> None:
    code, out, _ = run(capsys, settings, "schema")
    documented = json.loads((PROJECT_ROOT / "docs" / "cloudevent.schema.json").read_text())
    assert code == 0 and json.loads(out) == documented, "run `tidings schema > docs/cloudevent.schema.json`"


def test_webhook_endpoints_are_added_listed_rotated_and_disabled_without_showing_secrets(
    capsys, settings: Settings
) -> None:
    # when
    code, out, _ = run(
        capsys,
        settings,
        "webhooks",
        "add",
        "scores",
        "https://scores.example/api/hooks/TOKEN",
        "--types",
        "match.*",
        "ranking.changed",
        "--owner",
        "ana",
    )
    secret = out.split("secret: ")[1].split()[0]
    # then
    assert code == 0 and out.startswith("applied\n") and secret.startswith("whsec_")
    [listed] = json.loads(run(capsys, settings, "webhooks", "list", "--json")[1])
    assert listed == {
        "id": "scores",
        "url": "https://scores.example/api/hooks/***",
        "types": ["match.*", "ranking.changed"],
        "enabled": True,
        "disabled_reason": None,
        "owner": "ana",
        "failing_since": None,
        "rotating_secret": False,
    }
    # when
    out = run(capsys, settings, "webhooks", "rotate-secret", "scores")[1]
    rotated = out.split("secret: ")[1].split()[0]
    assert rotated != secret and "the old secret also signs for 24 h" in out
    assert json.loads(run(capsys, settings, "webhooks", "list", "--json")[1])[0]["rotating_secret"] is True
    run(capsys, settings, "webhooks", "disable", "scores")
    [listed] = json.loads(run(capsys, settings, "webhooks", "list", "--json")[1])
    assert (listed["enabled"], listed["disabled_reason"]) == (False, "disabled by tidings.webhook.upsert")
    assert secret not in run(capsys, settings, "webhooks", "list")[1]
    code, _, err = run(capsys, settings, "webhooks", "disable", "nope")
    assert (code, err) == (1, "tidings: error: no webhook endpoint 'nope'\n")


def test_schedule_lists_shows_and_cancels_scheduled_deliveries(capsys, settings: Settings) -> None:
    # given a notification scheduled for later, applied as the worker would
    from dispatcher.cli.console import Context
    from dispatcher.pipeline.ingest import ingest_event
    from tests.support.events import parsed_event

    ctx = Context(settings)
    ctx.database()
    later = parsed_event(
        "match.scheduled",
        {
            "recipients": ["ana", "bo"],
            "tournament_name": "Cup",
            "opponent_name": "Owls",
            "starts_at": "2030-01-01T18:00:00Z",
            "deliver_at": "2030-01-01T17:00:00Z",
            "cancel_key": "match:42:reminder",
        },
        id="rem-1",
        source="/matches",
    )
    ingest_event(later, ctx.catalog, ["in_app"])
    # when / then
    listed = json.loads(run(capsys, settings, "schedule", "list", "--json")[1])
    assert [(r["user"], r["status"], r["due_at"]) for r in listed] == [
        ("ana", "pending", "2030-01-01T17:00:00Z"),
        ("bo", "pending", "2030-01-01T17:00:00Z"),
    ]
    assert run(capsys, settings, "schedule", "cancel", "rem-1", "--user", "bo")[1] == "cancelled: 1\n"
    shown = json.loads(run(capsys, settings, "schedule", "show", "rem-1", "--json")[1])
    assert [(r["user"], r["status"]) for r in shown] == [("ana", "pending"), ("bo", "cancelled")]
    assert run(capsys, settings, "schedule", "cancel", "--key", "match:42:reminder")[1] == "cancelled: 2\n"
