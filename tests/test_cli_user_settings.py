"""What `users` and `prefs` set and show: quiet hours, digest time and digest mode, as the commands take them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from dispatcher.cli.main import main
from dispatcher.core import clock
from dispatcher.core.settings import Settings
from tests.support.cli import run


def out(capsys: pytest.CaptureFixture[str], settings: Settings, *argv: str) -> str:
    code, printed, err = run(capsys, settings, *argv)
    assert (code, err) == (0, ""), argv
    return printed


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'cli.db'}")


def test_users_upsert_sets_quiet_hours_and_the_digest_time_and_users_list_shows_them(capsys, settings) -> None:
    # when
    argv = ["--timezone", "Europe/Paris", "--quiet-start", "22:00", "--quiet-end", "07:00", "--digest-time", "09:30"]
    assert out(capsys, settings, "users", "upsert", "ana", *argv) == "applied\n"
    # then
    [ana] = json.loads(out(capsys, settings, "users", "list", "--json"))
    assert (ana["quiet_start"], ana["quiet_end"], ana["digest_time"]) == ("22:00", "07:00", "09:30")
    table = out(capsys, settings, "users", "list").splitlines()
    assert table[0].split() == ["ID", "EMAIL", "NAME", "TIMEZONE", "LOCALE", "DIGEST_TIME", "QUIET_HOURS"]
    assert table[1].split() == ["ana", "Europe/Paris", "09:30", "22:00-07:00"]
    # when '' clears them: quiet hours end, the digest time is the default again
    out(capsys, settings, "users", "upsert", "ana", "--quiet-start", "", "--quiet-end", "", "--digest-time", "")
    [ana] = json.loads(out(capsys, settings, "users", "list", "--json"))
    assert (ana["quiet_start"], ana["quiet_end"], ana["digest_time"]) == (None, None, "08:00")


def test_quiet_hours_need_a_start_and_an_end_and_times_written_hh_mm(capsys, settings) -> None:
    code, _, err = run(capsys, settings, "users", "upsert", "ana", "--quiet-start", "22:00")
    assert (code, err) == (
        1,
        "tidings: error: --quiet-start and --quiet-end go together: both HH:MM, or both '' to end quiet hours\n",
    )
    code, _, err = run(capsys, settings, "users", "upsert", "ana", "--digest-time", "8am")
    assert (code, err) == (
        1,
        'tidings: error: digest_time must be a local time written HH:MM, such as "08:00", or null\n',
    )


def test_prefs_set_chooses_the_digest_mode_and_keeps_what_it_does_not_name(capsys, settings) -> None:
    # given
    out(capsys, settings, "users", "upsert", "ana", "--email", "ana@example.com")
    # when
    assert out(capsys, settings, "prefs", "set", "ana", "match.completed", "email", "--mode", "digest") == "applied\n"
    out(capsys, settings, "prefs", "set", "ana", "match.completed", "email", "off")
    out(capsys, settings, "prefs", "set", "ana", "match.completed", "email", "on")
    # then the mode stayed through off and on again
    shown = json.loads(out(capsys, settings, "prefs", "show", "ana", "--json"))
    assert shown["stored"] == [{"type": "match.completed", "channel": "email", "enabled": True, "mode": "digest"}]
    resolved = {row["type"]: row["channels"] for row in shown["resolved"]}
    assert resolved["match.completed"]["email"]["mode"] == "digest"
    # and both at once
    out(capsys, settings, "prefs", "set", "ana", "*", "discord", "on", "--mode", "immediate")
    stored = json.loads(out(capsys, settings, "prefs", "show", "ana", "--json"))["stored"]
    assert {"type": "*", "channel": "discord", "enabled": True, "mode": "immediate"} in stored


def test_prefs_set_needs_a_state_or_a_mode_and_refuses_a_digest_where_there_is_none(capsys, settings) -> None:
    out(capsys, settings, "users", "upsert", "ana")
    code, _, err = run(capsys, settings, "prefs", "set", "ana", "*", "email")
    assert (code, err) == (1, "tidings: error: say on or off, --mode immediate|digest, or both\n")
    code, _, err = run(capsys, settings, "prefs", "set", "ana", "*", "in_app", "--mode", "digest")
    assert code == 1 and 'mode must be "immediate", or "digest" for the email channel' in err
    with pytest.raises(SystemExit) as usage:
        main(["prefs", "set", "ana", "*", "email", "--mode", "weekly"], settings=settings)
    assert usage.value.code == 2


def test_prefs_show_prints_the_users_quiet_hours_digest_time_and_stored_modes(capsys, settings) -> None:
    # given
    argv = ["--timezone", "Europe/Paris", "--quiet-start", "22:00", "--quiet-end", "07:00", "--digest-time", "09:30"]
    out(capsys, settings, "users", "upsert", "ana", *argv)
    out(capsys, settings, "prefs", "set", "ana", "*", "email", "--mode", "digest")
    # when
    with clock.use_clock(lambda: dt.datetime(2026, 5, 9, 12, 0)):
        table = out(capsys, settings, "prefs", "show", "ana")
    # then
    lines = table.splitlines()
    assert lines[0] == "ana: timezone Europe/Paris, digest at 09:30, quiet hours 22:00-07:00 (email, discord)"
    assert lines[1] == "what ana gets now (2026-05-09T12:00:00Z):"
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:] if line.startswith(("match.completed ", "*"))}
    assert rows["match.completed"][:2] == ["on", "digest"]  # email on by default, as a digest
    assert rows["*"] == ["email", "unset", "digest"]  # the stored row: only the mode was set


def test_prefs_show_json_gives_booleans_lists_and_the_users_settings(capsys, settings) -> None:
    # given a user without quiet hours, and a recipient who has no user row
    out(capsys, settings, "users", "upsert", "ana")
    out(capsys, settings, "prefs", "set", "bo", "*", "email", "off", "--create")
    # when
    ana = json.loads(out(capsys, settings, "prefs", "show", "ana", "--json"))
    bo = json.loads(out(capsys, settings, "prefs", "show", "bo", "--json"))
    # then
    assert ana["settings"] == {"timezone": "UTC", "digest_time": "08:00", "quiet_start": None, "quiet_end": None}
    assert bo["settings"] is None  # the defaults apply
    for row in ana["resolved"]:
        assert isinstance(row["critical"], bool)
        assert isinstance(row["channels"], dict)
        for route in row["channels"].values():
            assert isinstance(route["enabled"], bool) and isinstance(route["locked"], bool)
            assert route["mode"] in ("immediate", "digest", None)
    assert {row["type"]: row["critical"] for row in ana["resolved"]}["payment.verified"] is True
    assert bo["stored"] == [{"type": "*", "channel": "email", "enabled": False, "mode": None}]
    assert "no user row" in out(capsys, settings, "prefs", "show", "bo").splitlines()[0]
