"""`tidings rankings show | override | overrides` and `tidings series show`, on SQLite and the real RabbitMQ."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from dispatcher.cli.main import main
from dispatcher.core import clock
from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import Settings
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.rankings.ledger import recompute
from dispatcher.rankings.notices import INGEST_HOOKS
from tests.support.cli import run
from tests.support.events import parsed_event
from tests.support.services import free_port

T0 = dt.datetime(2026, 5, 9, 10, 0)
_ids = itertools.count()


@pytest.fixture
def now() -> Iterator[Callable[[float], None]]:
    """The clock stands at T0 + 12 h; ``now(hours)`` moves it to T0 + hours."""
    current = [T0 + dt.timedelta(hours=12)]

    def move(hours: float) -> None:
        current[0] = T0 + dt.timedelta(hours=hours)

    with clock.use_clock(lambda: current[0]):
        yield move


@pytest.fixture
def settings(sqlite_db: str) -> Settings:
    """The test's SQLite database and a broker nobody listens on: these commands publish nothing."""
    broker = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    return Settings.from_env({"TIDINGS_DATABASE_URL": sqlite_db, "TIDINGS_BROKER_URL": broker})


@pytest.fixture
def bus_settings(sqlite_db: str, announced: tuple[str, Callable[[], list[dict]]]) -> Settings:
    """The test's SQLite database, publishing to the test's own exchange on the real RabbitMQ."""
    return Settings.from_env({"TIDINGS_DATABASE_URL": sqlite_db, "TIDINGS_EXCHANGE": announced[0]})


def result(catalog: Catalog, *lines: dict[str, Any], winner: str | None, hours: float, **extra: Any) -> None:
    """Ingest a match.completed of tournament t1 that completed at T0 + hours, as the worker does."""
    data = {"topic": "matches", "tournament_name": "Spring Cup", "winner_name": winner or "nobody"}
    data |= {"tournament_id": "t1", "winner": winner, "participants": list(lines), **extra}
    completed_at = (T0 + dt.timedelta(hours=hours)).replace(tzinfo=dt.UTC)
    event = parsed_event("match.completed", data, id=f"match-{next(_ids)}", source="/matches", time=completed_at)
    with capture_logs():  # what the worker logs is no part of the command's output
        ingest_event(event, catalog, [], hooks=INGEST_HOOKS)


def recomputed() -> None:
    """Recompute the standings, as the periodic job does."""
    with capture_logs():
        recompute()


def line(team: str, placement: int, kills: int = 0, *, score: float | None = None, **extra: Any) -> dict[str, Any]:
    score = 100 - placement if score is None else score
    return {"team_id": team, "score": score, "placement": placement, "kills": kills, **extra}


def three_teams(catalog: Catalog) -> None:
    """Owls (a) ahead of b ahead of c, overall and in tournament t1, in one recompute (version 1)."""
    result(catalog, line("a", 1, 2, team_name="Owls"), line("b", 2, 1), line("c", 3), winner="a", hours=0)
    result(catalog, line("b", 1), line("a", 2), line("c", 3), winner="b", hours=1)
    recomputed()


def out(capsys: pytest.CaptureFixture[str], settings: Settings, *argv: str) -> str:
    """``tidings ARGV…``'s output; it must succeed."""
    code, stdout, stderr = run(capsys, settings, *argv)
    assert code == 0, stderr
    return stdout


# --- rankings show -------------------------------------------------------------------


def test_rankings_show_gives_the_overall_or_a_tournament_scope_by_name_or_by_option(
    capsys: pytest.CaptureFixture[str], settings: Settings, catalog: Catalog, now: Callable[[float], None]
) -> None:
    # given
    three_teams(catalog)

    # when
    overall = out(capsys, settings, "rankings", "show", "overall")
    tournament = out(capsys, settings, "rankings", "show", "tournament:t1")

    # then
    assert overall == out(capsys, settings, "rankings", "show")
    assert overall.splitlines() == [
        "overall, version 1, computed 2026-05-09T22:00:00Z",
        "RANK  TEAM      POINTS  WINS  LOSSES",
        "1     Owls (a)  3       1     1",
        "2     b         3       1     1",
        "3     c         0       0     2",
    ]
    assert tournament == out(capsys, settings, "rankings", "show", "--tournament", "t1")
    assert tournament.splitlines() == [
        "tournament:t1, version 1, computed 2026-05-09T22:00:00Z",
        "RANK  TEAM      POINTS  KILLS  BEST_PLACEMENT",
        "1     Owls (a)  23      2      1",
        "2     b         22      1      1",
        "3     c         14      0      3",
    ]
    shown = json.loads(out(capsys, settings, "rankings", "show", "tournament:t1", "--json"))
    assert (shown["scope"], shown["version"], [row["team_id"] for row in shown["standings"]]) == (
        "tournament:t1",
        1,
        ["a", "b", "c"],
    )


def test_rankings_show_with_a_version_shows_that_snapshot_and_says_which_is_the_latest(
    capsys: pytest.CaptureFixture[str], settings: Settings, catalog: Catalog, now: Callable[[float], None]
) -> None:
    # given: c wins the third match, at version 2
    three_teams(catalog)
    now(14)
    result(catalog, line("c", 1, 10), line("a", 2), line("b", 3), winner="c", hours=2)
    recomputed()

    # when
    first = out(capsys, settings, "rankings", "show", "tournament:t1", "--version", "1")
    latest = out(capsys, settings, "rankings", "show", "tournament:t1", "--version", "2")

    # then
    assert first.splitlines() == [
        "tournament:t1, version 1 (the latest is version 2), computed 2026-05-09T22:00:00Z",
        "RANK  TEAM      POINTS  KILLS  BEST_PLACEMENT",
        "1     Owls (a)  23      2      1",
        "2     b         22      1      1",
        "3     c         14      0      3",
    ]
    assert latest == out(capsys, settings, "rankings", "show", "tournament:t1")
    assert latest.splitlines()[:3] == [
        "tournament:t1, version 2, computed 2026-05-10T00:00:00Z",
        "RANK  TEAM      POINTS  KILLS  BEST_PLACEMENT",
        "1     c         36      10     1",
    ]
    assert json.loads(out(capsys, settings, "rankings", "show", "overall", "--version", "1", "--json"))["version"] == 1


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["bogus"], """no scope 'bogus': a scope is "overall" or "tournament:<id>\""""),
        (["tournament:"], """no scope 'tournament:': a scope is "overall" or "tournament:<id>\""""),
        (["tournament:t9"], "no tournament 't9': no match result names it"),
        (["--tournament", "t9", "--json"], "no tournament 't9': no match result names it"),
        (["tournament:t1", "--version", "2"], "no version 2 of tournament:t1's standings: its versions are 1 to 1"),
        (["--version", "0"], "no version 0 of overall's standings: its versions are 1 to 1"),
        (["--version", str(2**70)], f"no version {2**70} of overall's standings: its versions are 1 to 1"),
        (["overall", "--tournament", "t1"], "give SCOPE or --tournament, not both"),
    ],
)
def test_rankings_show_of_a_malformed_scope_or_an_unknown_version_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], settings: Settings, catalog: Catalog, argv: list[str], error: str
) -> None:
    # given
    three_teams(catalog)
    # when
    code, stdout, stderr = run(capsys, settings, "rankings", "show", *argv)
    # then
    assert (code, stdout, stderr) == (1, "", f"tidings: error: {error}\n")


# --- series show ------------------------------------------------------------------------


def series_game(catalog: Catalog, winner: str, loser: str, *, hours: float, match_id: str, **extra: Any) -> None:
    """A game of best-of-3 series s1 between Owls (a) and Foxes (b): 13 to 7."""
    names = {"a": "Owls", "b": "Foxes"}
    lines = [
        line(team, placement, score=score, team_name=names[team])
        for team, placement, score in ((winner, 1, 13), (loser, 2, 7))
    ]
    result(catalog, *lines, winner=winner, hours=hours, match_id=match_id, series_id="s1", best_of=3, **extra)


def test_series_show_of_a_decided_series_gives_the_winner_the_teams_and_each_game_or_why_it_is_not_counted(
    capsys: pytest.CaptureFixture[str], settings: Settings, catalog: Catalog
) -> None:
    # given: Owls win 2-1; a fourth game, played after, cannot count
    series_game(catalog, "a", "b", hours=0, match_id="m1")
    series_game(catalog, "b", "a", hours=1, match_id="m2")
    series_game(catalog, "a", "b", hours=2, match_id="m3")
    series_game(catalog, "b", "a", hours=3, match_id="m4")

    # when
    shown = out(capsys, settings, "series", "show", "s1")

    # then
    assert shown.splitlines() == [
        "series s1 of tournament t1, best of 3",
        "decided: Owls (a) won it 2-1 by majority, 2026-05-09T12:00:00Z",
        "TEAM       WINS",
        "Owls (a)   2",
        "Foxes (b)  1",
        "MATCH  COMPLETED_AT          WINNER     SCORE      COUNTED",
        "m1     2026-05-09T10:00:00Z  Owls (a)   a 13, b 7  yes",
        "m2     2026-05-09T11:00:00Z  Foxes (b)  b 13, a 7  yes",
        "m3     2026-05-09T12:00:00Z  Owls (a)   a 13, b 7  yes",
        "m4     2026-05-09T13:00:00Z  Foxes (b)  b 13, a 7  no: the series was already decided: Owls won it 2-1",
    ]
    summary = json.loads(out(capsys, settings, "series", "show", "s1", "--json"))
    assert (summary["status"], summary["winner"], summary["decided_by"]) == ("decided", "a", "majority")
    assert [(g["match_id"], g["counted"]) for g in summary["games"]] == [
        ("m1", True),
        ("m2", True),
        ("m3", True),
        ("m4", False),
    ]


def test_series_show_of_a_series_in_progress_says_what_decides_it_and_a_forfeit_says_who_forfeited(
    capsys: pytest.CaptureFixture[str], settings: Settings, catalog: Catalog
) -> None:
    # given
    series_game(catalog, "b", "a", hours=0, match_id="m1")

    # when / then
    assert out(capsys, settings, "series", "show", "s1").splitlines()[:2] == [
        "series s1 of tournament t1, best of 3",
        "in progress: the first to 2 win(s) wins it",
    ]

    # when: Owls forfeit the next game, and with it the series
    series_game(catalog, "b", "a", hours=1, match_id="m2", forfeit="a")

    # then
    shown = out(capsys, settings, "series", "show", "s1").splitlines()
    assert shown[1] == "decided: Foxes (b) won it 2-0 by forfeit, 2026-05-09T11:00:00Z"
    assert shown[-1] == "m2     2026-05-09T11:00:00Z  Foxes (b)  b 13, a 7; a forfeits the series  yes"


def test_series_show_of_a_series_no_game_names_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    assert run(capsys, settings, "series", "show", "s9") == (
        1,
        "",
        "tidings: error: no series 's9': no match result names it\n",
    )


# --- overrides ----------------------------------------------------------------------------


def override(*argv: str) -> list[str]:
    return ["rankings", "override", "tournament:t1", *argv]


def test_an_override_applies_marks_the_line_announces_each_move_once_and_is_audited(
    capsys: pytest.CaptureFixture[str],
    bus_settings: Settings,
    catalog: Catalog,
    announced: tuple[str, Callable[[], list[dict]]],
    now: Callable[[float], None],
) -> None:
    # given
    three_teams(catalog)
    _, read_announced = announced
    now(13)

    # when: the referee gives c the first place
    applied = out(capsys, bus_settings, *override("c", "1", "--reason", "penalty overturned", "--actor", "referee"))

    # then
    assert applied.splitlines() == [
        "applied: c has rank 1 in tournament:t1, set by referee",
        "RANK  TEAM  POINTS  KILLS  BEST_PLACEMENT  OVERRIDE",
        "1     c     14      0      3               set by referee (computed #3)",
        "3 rank change(s), each a ranking.changed event:",
        "TEAM  OLD_RANK  NEW_RANK",
        "c     3         1",
        "a     1         2",
        "b     2         3",
    ]
    assert out(capsys, bus_settings, "rankings", "show", "tournament:t1").splitlines()[1:] == [
        "RANK  TEAM      POINTS  KILLS  BEST_PLACEMENT  OVERRIDE",
        "1     c         14      0      3               set by referee (computed #3)",
        "2     Owls (a)  23      2      1",
        "3     b         22      1      1",
    ]
    events = read_announced()
    assert sorted((e["data"]["team_id"], e["data"]["old_rank"], e["data"]["new_rank"]) for e in events) == [
        ("a", 1, 2),
        ("b", 2, 3),
        ("c", 3, 1),
    ]
    assert len({e["id"] for e in events}) == 3
    assert {(e["type"], e["data"]["scope"]) for e in events} == {("ranking.changed", "tournament:t1")}
    assert out(capsys, bus_settings, "rankings", "overrides", "tournament:t1").splitlines() == [
        "AT                    TEAM  ACTION  OLD_RANK  NEW_RANK  ACTOR    REASON              VIA",
        "2026-05-09T23:00:00Z  c     set     3         1         referee  penalty overturned  /tidings/cli",
    ]

    # when: the same override again
    again = out(capsys, bus_settings, *override("c", "1", "--reason", "penalty overturned", "--actor", "referee"))

    # then: nothing changes, nothing is announced, the trail still has one entry
    assert again.splitlines() == [
        "unchanged: c already has rank 1 in tournament:t1 by an override",
        "RANK  TEAM  POINTS  KILLS  BEST_PLACEMENT  OVERRIDE",
        "1     c     14      0      3               set by referee (computed #3)",
    ]
    assert read_announced() == []
    trail = json.loads(out(capsys, bus_settings, "rankings", "overrides", "tournament:t1", "--json"))
    assert trail == {
        "scope": "tournament:t1",
        "entries": [
            {
                "scope": "tournament:t1",
                "team_id": "c",
                "action": "set",
                "old_rank": 3,
                "new_rank": 1,
                "reason": "penalty overturned",
                "actor": "referee",
                "via": "/tidings/cli",
                "at": "2026-05-09T23:00:00Z",
            }
        ],
    }


def test_revoking_an_override_unmarks_the_line_announces_the_moves_and_audits_a_revoke(
    capsys: pytest.CaptureFixture[str],
    bus_settings: Settings,
    catalog: Catalog,
    announced: tuple[str, Callable[[], list[dict]]],
    now: Callable[[float], None],
) -> None:
    # given: c was given the first place
    three_teams(catalog)
    _, read_announced = announced
    now(13)
    out(capsys, bus_settings, *override("c", "1", "--reason", "penalty overturned", "--actor", "referee"))
    read_announced()
    now(14)

    # when
    revoked = out(capsys, bus_settings, *override("c", "--revoke", "--reason", "appeal lost", "--actor", "jury"))

    # then
    assert revoked.splitlines()[:3] == [
        "applied: the override of c in tournament:t1 is revoked: back to its computed rank 3",
        "RANK  TEAM  POINTS  KILLS  BEST_PLACEMENT",
        "3     c     14      0      3",
    ]
    assert "OVERRIDE" not in out(capsys, bus_settings, "rankings", "show", "tournament:t1")
    events = read_announced()
    assert sorted((e["data"]["team_id"], e["data"]["old_rank"], e["data"]["new_rank"]) for e in events) == [
        ("a", 2, 1),
        ("b", 3, 2),
        ("c", 1, 3),
    ]
    assert len({e["id"] for e in events}) == 3
    assert out(capsys, bus_settings, "rankings", "overrides", "tournament:t1").splitlines()[1:] == [
        "2026-05-09T23:00:00Z  c     set     3         1         referee  penalty overturned  /tidings/cli",
        "2026-05-10T00:00:00Z  c     revoke  1         3         jury     appeal lost         /tidings/cli",
    ]

    # when: revoking it again
    again = out(capsys, bus_settings, *override("c", "--revoke", "--reason", "appeal lost", "--actor", "jury"))

    # then
    assert again.splitlines()[0] == "unchanged: c has no override in tournament:t1 to revoke"
    assert read_announced() == []
    assert (
        len(json.loads(out(capsys, bus_settings, "rankings", "overrides", "tournament:t1", "--json"))["entries"]) == 2
    )


@pytest.mark.parametrize(
    "argv",
    [
        override("c", "1", "--actor", "referee"),
        override("c", "1", "--reason", "penalty overturned"),
        override("c", "--reason", "penalty overturned", "--actor", "referee"),
        override("c", "1", "--revoke", "--reason", "penalty overturned", "--actor", "referee"),
        override("c", "first", "--reason", "penalty overturned", "--actor", "referee"),
    ],
    ids=["no reason", "no actor", "neither rank nor revoke", "both rank and revoke", "a rank not a number"],
)
def test_an_override_without_its_reason_actor_or_rank_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], settings: Settings, argv: list[str]
) -> None:
    # when
    with pytest.raises(SystemExit) as exited:
        main(argv, settings=settings)
    # then
    assert exited.value.code == 2
    assert "tidings rankings override: error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (override("c", "4"), "tidings.standings.override: rank 4 is past the last: tournament:t1 has 3 teams"),
        (override("c", "0"), "tidings.standings.override: rank must be an integer of 1 or more, or null to revoke"),
        (override("z", "1"), "tidings.standings.override: team_id 'z' has no result in tournament:t1"),
        (
            ["rankings", "override", "overall", "c", "1"],
            'tidings.standings.override: scope must be "tournament:<id>": a final placement belongs to a tournament '
            "(the overall rankings are computed from every match)",
        ),
    ],
    ids=["past the last", "zero", "unknown team", "the overall scope"],
)
def test_an_override_the_command_refuses_is_a_clear_error_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], settings: Settings, catalog: Catalog, argv: list[str], error: str
) -> None:
    # given
    three_teams(catalog)
    # when
    code, stdout, stderr = run(capsys, settings, *argv, "--reason", "penalty overturned", "--actor", "referee")
    # then
    assert (code, stdout, stderr) == (1, "", f"tidings: error: {error}\n")
    assert out(capsys, settings, "rankings", "overrides", "tournament:t1") == "(none)\n"
    assert "OVERRIDE" not in out(capsys, settings, "rankings", "show", "tournament:t1")


def test_rankings_overrides_of_the_overall_scope_or_an_unknown_tournament_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], settings: Settings, catalog: Catalog
) -> None:
    # given
    three_teams(catalog)
    # when / then
    assert run(capsys, settings, "rankings", "overrides", "overall") == (
        1,
        "",
        'tidings: error: the overall rankings have no overrides: a final placement belongs to "tournament:<id>"\n',
    )
    assert run(capsys, settings, "rankings", "overrides", "tournament:t9") == (
        1,
        "",
        "tidings: error: no tournament 't9': no match result names it\n",
    )
