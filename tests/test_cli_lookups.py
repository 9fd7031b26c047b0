"""A user, event, endpoint, key or tournament that Tidings does not know is an error (exit 1), not "nothing done"."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dispatcher.cli.console import Context
from dispatcher.core import clock
from dispatcher.core.settings import Settings
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.models import Delivery, InboxItem
from tests.support.cli import run
from tests.support.events import invite, parsed_event

NOBODY = "tidings: error: no user 'nobody': no tidings.user.upsert, nothing sent to them"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'cli.db'}")


@pytest.fixture
def ctx(settings: Settings) -> Context:
    context = Context(settings)
    context.database()
    return context


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["prefs", "set", "nobody", "*", "email", "off"], "; --create goes ahead anyway"),
        (["prefs", "show", "nobody"], ""),
        (["inbox", "list", "nobody"], ""),
        (["inbox", "mark-read", "nobody", "1"], ""),
        (["inbox", "mark-read", "nobody", "--all"], ""),
        (["topics", "subscribe", "team:1", "nobody"], "; --create goes ahead anyway"),
    ],
    ids=" ".join,
)
def test_a_command_about_an_unknown_user_is_an_error(capsys, settings: Settings, argv: list[str], hint: str) -> None:
    code, out, err = run(capsys, settings, *argv)
    assert (code, out, err) == (1, "", f"{NOBODY}{hint}\n")


def test_create_sets_preferences_and_subscriptions_for_a_user_not_known_yet(capsys, settings: Settings) -> None:
    assert run(capsys, settings, "prefs", "set", "nobody", "*", "email", "off", "--create")[:2] == (0, "applied\n")
    assert run(capsys, settings, "topics", "subscribe", "team:1", "newcomer", "--create")[:2] == (0, "applied\n")
    # and then they are known
    assert run(capsys, settings, "prefs", "show", "nobody")[0] == 0
    assert run(capsys, settings, "topics", "subscribe", "team:2", "newcomer")[:2] == (0, "applied\n")


def test_a_recipient_without_a_user_row_is_known_by_what_was_sent_to_them(capsys, settings, ctx: Context) -> None:
    # given an invite routed to ana, who was never upserted
    ingest_event(parsed_event("team.invite.sent", invite(["ana"])), ctx.catalog, ["in_app"])
    # then
    code, out, _ = run(capsys, settings, "inbox", "list", "ana")
    assert (code, out) == (0, "(none)\n")  # known, with nothing delivered yet
    assert run(capsys, settings, "prefs", "show", "ana")[0] == 0


def test_marking_read_a_notification_the_user_does_not_have_is_an_error(capsys, settings, ctx: Context) -> None:
    # given one notification of ana's
    ingest_event(parsed_event("team.invite.sent", invite(["ana"])), ctx.catalog, ["in_app"])
    delivery = Delivery.get(Delivery.user_id == "ana")
    item = InboxItem.create(delivery=delivery, user_id="ana", type="team.invite.sent", title="Hi", body="", data={})
    # when / then
    code, out, err = run(capsys, settings, "inbox", "mark-read", "ana", str(item.id), "999", "998")
    assert (code, out, err) == (1, "", "tidings: error: 'ana' has no notification 998, 999; nothing marked\n")
    assert InboxItem.get_by_id(item.id).read_at is None
    assert run(capsys, settings, "inbox", "mark-read", "ana", str(item.id))[1] == "marked 1 read\n"


def test_unsubscribing_a_user_who_is_not_subscribed_is_an_error(capsys, settings: Settings) -> None:
    run(capsys, settings, "topics", "subscribe", "team:1", "ana", "--create")
    code, _, err = run(capsys, settings, "topics", "unsubscribe", "team:2", "ana")
    assert (code, err) == (1, "tidings: error: 'ana' is not subscribed to 'team:2' (`tidings topics list` shows who)\n")
    assert run(capsys, settings, "topics", "unsubscribe", "team:1", "ana")[:2] == (0, "applied\n")
    assert run(capsys, settings, "topics", "unsubscribe", "team:1", "ana")[0] == 0  # again: harmless


def test_webhooks_replay_of_an_unknown_event_or_endpoint_is_an_error(capsys, settings, ctx: Context) -> None:
    code, out, err = run(capsys, settings, "webhooks", "replay", "does-not-exist")
    assert (code, out, err) == (1, "", "tidings: error: no event with id 'does-not-exist'\n")
    code, _, err = run(capsys, settings, "webhooks", "replay", "--since", "2026-01-01T00:00:00Z", "--endpoint", "nope")
    assert (code, err) == (1, "tidings: error: no webhook endpoint 'nope'\n")
    # an event that exists but went to no endpoint
    ingest_event(parsed_event("team.invite.sent", invite(["ana"]), id="inv-1"), ctx.catalog, ["in_app"])
    code, _, err = run(capsys, settings, "webhooks", "replay", "inv-1")
    assert (code, err) == (1, "tidings: error: event 'inv-1' has no webhook deliveries: no endpoint took its type\n")
    code, _, err = run(capsys, settings, "webhooks", "replay", "inv-1", "--since", "2026-01-01T00:00:00Z")
    assert code == 1 and "(not both)" in err
    # while nothing failed since a time is a plain answer
    code, out, _ = run(capsys, settings, "webhooks", "replay", "--since", "2026-01-01T00:00:00Z")
    assert (code, out) == (0, "replaying 0 webhook deliveries (the scheduler sends them within a minute)\n")


def test_cancelling_an_unknown_key_or_someone_who_is_not_a_recipient_is_an_error(capsys, settings, ctx) -> None:
    # given a reminder for ana and bo
    with clock.use_clock(lambda: dt.datetime(2029, 12, 1)):
        data = {
            "recipients": ["ana", "bo"],
            "tournament_name": "Cup",
            "opponent_name": "Owls",
            "starts_at": "2030-01-01T18:00:00Z",
            "deliver_at": "2030-01-01T17:00:00Z",
            "cancel_key": "match:42:reminder",
        }
        ingest_event(parsed_event("match.scheduled", data, id="rem-1"), ctx.catalog, ["in_app"])
    # when / then
    code, out, err = run(capsys, settings, "schedule", "cancel", "--key", "match:41:reminder")
    assert (code, out, err) == (1, "", "tidings: error: no event has cancel_key 'match:41:reminder'\n")
    code, _, err = run(capsys, settings, "schedule", "cancel", "rem-1", "--user", "bo", "cy", "al")
    assert (code, err) == (1, "tidings: error: not a recipient of 'rem-1': al, cy\n")
    code, _, err = run(capsys, settings, "schedule", "cancel", "--key", "match:42:reminder", "--user", "cy")
    assert (code, err) == (1, "tidings: error: not a recipient of 'match:42:reminder': cy\n")
    assert run(capsys, settings, "schedule", "cancel", "rem-1", "--user", "bo")[1] == "cancelled: 1\n"
    code, _, err = run(capsys, settings, "schedule", "show", "rem-2")
    assert (code, err) == (1, "tidings: error: no event with id 'rem-2'\n")


def test_rankings_of_an_unknown_tournament_are_an_error(capsys, settings: Settings) -> None:
    code, out, err = run(capsys, settings, "rankings", "show", "--tournament", "nope")
    assert (code, out, err) == (1, "", "tidings: error: no tournament 'nope': no match result names it\n")
    code, out, _ = run(capsys, settings, "rankings", "show")  # no standings yet is a state, not an unknown id
    assert code == 0 and out.startswith("no standings for overall yet")
