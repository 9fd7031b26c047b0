"""Progress of long commands: a bar on a terminal, plain lines off one, and the counts the callbacks are told."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher.cli.console import Context
from dispatcher.cli.main import main
from dispatcher.cli.progress import Reporter
from dispatcher.commands.endpoints import REPLAY_CHUNK, replay_deliveries
from dispatcher.core import clock
from dispatcher.core.settings import PROJECT_ROOT, Settings
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.rankings.ledger import recompute
from dispatcher.rankings.notices import INGEST_HOOKS
from dispatcher.storage.db import init_database
from dispatcher.storage.migrate import SCHEMA_VERSION, migrate
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, Rejection
from tests.support.deployment import Deployment
from tests.support.events import cloud_event, invite, parsed_event
from tests.support.publishing import publish
from tests.support.wait import wait_for

CONTROL = ("\r", "\x1b")


def no_control_characters(text: str) -> bool:
    return not any(c in text for c in CONTROL)


class Ticks:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- the reporter --------------------------------------------------------------------------------------------------


def test_off_a_terminal_the_reporter_writes_a_plain_line_at_most_once_per_interval() -> None:
    # given
    stream, ticks = io.StringIO(), Ticks()
    # when
    with Reporter("replaying", total=5, stream=stream, interval=10, clock=ticks) as progress:
        progress(1)
        ticks.now = 10
        progress(2)
        progress(3)  # within the interval: nothing
        ticks.now = 25
        progress(4, 6)  # the total may change
    # then
    assert stream.getvalue() == "replaying: 2 of 5\nreplaying: 4 of 6\n"
    assert progress.done == 4 and progress.total == 6


def test_the_reporter_tracks_an_iterable_counting_each_item_once_handled() -> None:
    stream = io.StringIO()
    seen = []
    with Reporter("counting", stream=stream, interval=0) as progress:
        for item in progress.track(["a", "b", "c"]):
            seen.append((item, progress.done))
    assert seen == [("a", 0), ("b", 1), ("c", 2)] and progress.done == 3
    assert stream.getvalue() == "counting: 1\ncounting: 2\ncounting: 3\n"  # no total known


def test_on_a_terminal_the_reporter_draws_a_bar() -> None:
    leader, follower = pty.openpty()
    try:
        with open(follower, "w", closefd=False) as terminal:
            with Reporter("migrating", total=3, stream=terminal) as progress:  # type: ignore[arg-type]
                progress(3)
        drawn = os.read(leader, 65536).decode(errors="replace")
    finally:
        os.close(leader)
        os.close(follower)
    assert "\x1b" in drawn and "migrating" in drawn


# --- what the commands tell the callback ---------------------------------------------------------------------------


def test_migrate_reports_each_step_it_applies(tmp_path: Path) -> None:
    init_database(f"sqlite:///{tmp_path / 'm.db'}")
    calls: list[tuple[int, int]] = []
    assert migrate(lambda done, total: calls.append((done, total))) == (0, SCHEMA_VERSION)
    assert calls == [(n, SCHEMA_VERSION) for n in range(1, SCHEMA_VERSION + 1)]
    calls.clear()
    migrate(lambda done, total: calls.append((done, total)))
    assert calls == []  # up to date: no step


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'cli.db'}")


@pytest.fixture
def ctx(settings: Settings) -> Context:
    context = Context(settings)
    context.database()
    return context


def failed_webhooks(ctx: Context, count: int) -> None:
    """``count`` failed webhook deliveries of one event, to endpoints hook-0, hook-1…"""
    ingest_event(parsed_event("team.invite.sent", invite(["ana"]), id="inv-1"), ctx.catalog, ["in_app"])
    event = Event.get(Event.event_id == "inv-1")
    now = clock.now()
    rows = [
        {"event": event.id, "user_id": f"hook-{n}", "channel": "webhook", "status": DeliveryStatus.FAILED}
        | {"attempts": 3, "updated_at": now, "created_at": now, "next_attempt_at": now}
        for n in range(count)
    ]
    for start in range(0, count, 100):
        Delivery.insert_many(rows[start : start + 100]).execute()


def test_replaying_webhooks_reports_each_chunk_it_makes_due(ctx: Context) -> None:
    # given more failed webhook deliveries than one statement takes
    total = 2 * REPLAY_CHUNK + 1
    failed_webhooks(ctx, total)
    calls: list[tuple[int, int]] = []
    # when
    replayed = replay_deliveries(
        ["webhook"], since=clock.now().replace(year=2000), progress=lambda done, of: calls.append((done, of))
    )
    # then
    assert replayed == total
    assert calls == [(REPLAY_CHUNK, total), (2 * REPLAY_CHUNK, total), (total, total)]
    assert Delivery.select().where(Delivery.status == DeliveryStatus.PENDING, Delivery.channel == "webhook").count()


def test_recomputing_the_rankings_reports_each_scope(ctx: Context) -> None:
    # given results of two tournaments: three scopes (overall and one per tournament)
    for number, tournament in enumerate(("t1", "t2", "t1")):
        data = {
            "topic": "matches",
            "tournament_id": tournament,
            "tournament_name": "Cup",
            "winner_name": "Owls",
            "winner": "a",
            "participants": [
                {"team_id": "a", "score": 2, "placement": 1, "kills": 0},
                {"team_id": "b", "score": 1, "placement": 2, "kills": 0},
            ],
            "completed_at": f"2026-05-0{number + 1}T12:00:00Z",
        }
        ingest_event(parsed_event("match.completed", data), ctx.catalog, ["in_app"], hooks=INGEST_HOOKS)
    calls: list[tuple[int, int]] = []
    # when
    recompute(progress=lambda done, total: calls.append((done, total)))
    # then
    assert calls == [(1, 3), (2, 3), (3, 3)]


# --- the commands' output off a terminal ---------------------------------------------------------------------------


def test_webhooks_replay_since_prints_its_summary_and_no_control_characters(capsys, settings, ctx) -> None:
    failed_webhooks(ctx, 3)
    assert main(["webhooks", "replay", "--since", "2000-01-01T00:00:00Z"], settings=settings) == 0
    out, err = capsys.readouterr()
    assert out == "replaying 3 webhook deliveries (the scheduler sends them within a minute)\n"
    assert err == ""


def test_rankings_recompute_prints_its_summary_and_no_control_characters(capsys, settings, ctx) -> None:
    assert main(["rankings", "recompute"], settings=settings) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "0 rank change(s)"
    assert no_control_characters(out) and no_control_characters(err)  # err: the log lines alone


def test_tidings_migrate_in_a_pipe_prints_the_summary_line_alone(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'pipe.db'}"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tidings"), "migrate"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, f"schema at version {SCHEMA_VERSION} (was 0)\n", "")


@pytest.mark.integration
def test_dlq_replay_all_prints_a_line_per_letter_and_the_summary_without_control_characters(
    capsys, running: Deployment
) -> None:
    # given two events the worker dead-lettered
    bad = [cloud_event("team.invite.sent", {"recipients": ["ana"]}) for _ in range(2)]
    publish(running, *bad)
    wait_for(lambda: Rejection.select().count() == 2, what="both rejections")
    # (the reason is recorded before the worker nacks the message: wait until both are in the dead-letter queue)
    wait_for(lambda: len(running.dead_letters()) == 2, what="both dead letters")
    # when
    code = main(["dlq", "replay", "--all"], settings=running.settings)
    out, err = capsys.readouterr()
    # then
    lines = out.splitlines()
    assert code == 0 and err == "" and no_control_characters(out)
    assert [line.split()[0] for line in lines[:2]] == ["replayed", "replayed"]
    assert lines[2].startswith("replayed 2 of 2 from ")
