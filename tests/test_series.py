"""Series (best of 1, 3, 5, 7): summaries from their games, flagged games, series.completed announcements."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from dispatcher.amqp.publisher import build_event
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import CloudEvent, parse_event
from dispatcher.core.rendering import get_renderer
from dispatcher.core.settings import Settings
from dispatcher.pipeline.ingest import IngestResult, ingest_event
from dispatcher.rankings.ledger import ledger, recompute, series_summary, standings
from dispatcher.rankings.notices import INGEST_HOOKS, SERIES_TYPE, recent_notices, series_events
from dispatcher.rankings.series import DECIDED, DRAWN, IN_PROGRESS, SeriesGame, majority, summarize
from dispatcher.rankings.standings import Placing
from dispatcher.storage.models import Event, MatchResult
from tests.support.events import parsed_event

T0 = dt.datetime(2026, 5, 9, 10, 0)
_ids = itertools.count(1)


def game(
    winner: str | None,
    *,
    hours: float | None = None,
    best_of: int = 3,
    teams: tuple[str, ...] = ("a", "b"),
    match_id: str | None = None,
    forfeit: str | None = None,
    tournament: str = "t1",
) -> SeriesGame:
    """A game of a series between ``teams``; ``hours`` after T0 (default: one hour per game made)."""
    number = next(_ids)
    return SeriesGame(
        result_id=number,
        tournament_id=tournament,
        match_id=match_id or f"m{number}",
        winner=winner,
        participants=tuple(Placing(team, 13 if team == winner else 7, 1, 0, team.upper()) for team in teams),
        best_of=best_of,
        completed_at=T0 + dt.timedelta(hours=number if hours is None else hours),
        forfeit=forfeit,
    )


# --- the summary: a table of series outcomes ------------------------------------------


def outcome(games: list[SeriesGame]) -> tuple[str, str | None, str | None, dict[str, int], list[bool]]:
    summary = summarize("s1", games)
    return summary.status, summary.winner, summary.decided_by, summary.wins, [line.counted for line in summary.games]


@pytest.mark.parametrize(
    ("games", "expected"),
    [
        pytest.param(
            lambda: [game("a", best_of=1)], (DECIDED, "a", "majority", {"a": 1, "b": 0}, [True]), id="best of 1"
        ),
        pytest.param(
            lambda: [game("a"), game("a")], (DECIDED, "a", "majority", {"a": 2, "b": 0}, [True, True]), id="a sweep 2-0"
        ),
        pytest.param(
            lambda: [game("a"), game("b"), game("b")],
            (DECIDED, "b", "majority", {"a": 1, "b": 2}, [True, True, True]),
            id="a decider 2-1",
        ),
        pytest.param(
            lambda: (
                [game("a", best_of=5), game("b", best_of=5), game("a", best_of=5), game("b", best_of=5)]
                + [game("b", best_of=5)]
            ),
            (DECIDED, "b", "majority", {"a": 2, "b": 3}, [True] * 5),
            id="best of 5 to the fifth game",
        ),
        pytest.param(
            lambda: [game("a", best_of=7) for _ in range(4)],
            (DECIDED, "a", "majority", {"a": 4, "b": 0}, [True] * 4),
            id="best of 7 swept",
        ),
        pytest.param(
            lambda: [game("a")], (IN_PROGRESS, None, None, {"a": 1, "b": 0}, [True]), id="incomplete: no winner yet"
        ),
        pytest.param(
            lambda: [game("b"), game("a", forfeit="b")],
            (DECIDED, "a", "forfeit", {"a": 1, "b": 1}, [True, True]),
            id="a forfeit decides it at once",
        ),
        pytest.param(
            lambda: [game("a"), game("a"), game("b")],
            (DECIDED, "a", "majority", {"a": 2, "b": 0}, [True, True, False]),
            id="a game after the series is decided is flagged",
        ),
        pytest.param(
            lambda: [game(None, best_of=1)], (DRAWN, None, None, {"a": 0, "b": 0}, [True]), id="a drawn best of 1"
        ),
        pytest.param(
            lambda: [game("a"), game("b", best_of=5)],
            (IN_PROGRESS, None, None, {"a": 1, "b": 0}, [True, False]),
            id="a game with another best_of is flagged",
        ),
        pytest.param(
            lambda: [game("a"), game("c", teams=("a", "c"))],
            (IN_PROGRESS, None, None, {"a": 1, "b": 0}, [True, False]),
            id="a game with other teams is flagged",
        ),
        pytest.param(
            lambda: [game("a", match_id="m"), game("a", match_id="m")],
            (IN_PROGRESS, None, None, {"a": 1, "b": 0}, [True, False]),
            id="the same match reported twice counts once",
        ),
    ],
)
def test_a_series_is_decided_by_the_majority_or_a_forfeit_and_flags_what_it_does_not_count(
    games: Any, expected: tuple[Any, ...]
) -> None:
    assert outcome(games()) == expected


@pytest.mark.parametrize(("best_of", "wins"), [(1, 1), (3, 2), (5, 3), (7, 4)])
def test_the_majority_of_a_series_is_more_than_half_its_games(best_of: int, wins: int) -> None:
    assert majority(best_of) == wins


def test_games_are_taken_in_completion_order_whatever_order_they_arrived_in() -> None:
    # given: the third game (b) arrives first, then the first two (a, a)
    third = game("b", hours=3)
    first, second = game("a", hours=1), game("a", hours=2)

    # when
    summary = summarize("s1", [third, first, second])

    # then: a won 2-0 with the first two; the third came after and is flagged
    assert (summary.winner, summary.score("a"), summary.score("b")) == ("a", "2-0", "0-2")
    assert [(line.game.match_id, line.counted) for line in summary.games] == [
        (first.match_id, True),
        (second.match_id, True),
        (third.match_id, False),
    ]
    assert summary.games[2].note == "the series was already decided: A won it 2-0"
    assert summary.decided_at == first.completed_at + dt.timedelta(hours=1)


def test_the_summary_lists_each_game_with_its_winner_score_and_note() -> None:
    # given
    games = [game("a", best_of=1), game("b", best_of=1)]

    # when
    shown = summarize("s1", games).to_dict()

    # then
    assert {k: shown[k] for k in ("series_id", "tournament_id", "best_of", "status", "winner", "decided_by")} == {
        "series_id": "s1",
        "tournament_id": "t1",
        "best_of": 1,
        "status": "decided",
        "winner": "a",
        "decided_by": "majority",
    }
    assert shown["teams"] == [
        {"team_id": "a", "team_name": "A", "wins": 1},
        {"team_id": "b", "team_name": "B", "wins": 0},
    ]
    assert [(g["winner"], g["score"], g["counted"], g["note"]) for g in shown["games"]] == [
        ("a", {"a": 13, "b": 7}, True, None),
        ("b", {"a": 7, "b": 13}, False, "the series was already decided: A won it 1-0"),
    ]


# --- the ledger and the announcements --------------------------------------------------


def series_match(
    winner: str,
    *,
    series: str = "s1",
    best_of: int = 3,
    hours: float,
    forfeit: str | None = None,
    event_id: str | None = None,
) -> CloudEvent:
    data: dict[str, Any] = {
        "topic": "matches",
        "tournament_id": "t1",
        "tournament_name": "Spring Cup",
        "match_id": f"{series}-g{hours:g}",
        "winner": winner,
        "winner_name": winner.upper(),
        "series_id": series,
        "best_of": best_of,
        "participants": [
            {"team_id": team, "team_name": f"Team {team.upper()}", "score": 13 if team == winner else 5}
            | {"placement": 1 if team == winner else 2, "kills": 0}
            for team in ("a", "b")
        ],
    }
    if forfeit is not None:
        data["forfeit"] = forfeit
    return parsed_event(
        "match.completed",
        data,
        id=event_id or f"series-{next(_ids)}",
        source="/matches",
        time=(T0 + dt.timedelta(hours=hours)).replace(tzinfo=dt.UTC),
    )


def feed(catalog: Catalog, event: CloudEvent) -> IngestResult:
    return ingest_event(event, catalog, ["in_app"], hooks=INGEST_HOOKS)


def test_a_series_game_is_recorded_with_its_series_and_read_back_as_a_summary(db: str, catalog: Catalog) -> None:
    # given / when
    feed(catalog, series_match("a", hours=1))

    # then
    row = MatchResult.get()
    assert (row.series_id, row.best_of, row.forfeit) == ("s1", 3, None)
    summary = series_summary("s1")
    assert summary is not None and summary.status == IN_PROGRESS
    assert summary.teams == (("a", "Team A"), ("b", "Team B"))
    assert series_summary("nope") is None


def test_the_game_that_decides_a_series_announces_series_completed_to_each_team(db: str, catalog: Catalog) -> None:
    # given
    first = feed(catalog, series_match("a", hours=1))

    # when
    deciding = feed(catalog, series_match("b", hours=2)), feed(catalog, series_match("b", hours=3))

    # then: nothing until the third game; then one event per team, to its topic
    assert first.announce == [] and deciding[0].announce == []
    events = deciding[1].announce
    assert [e["type"] for e in events] == [SERIES_TYPE, SERIES_TYPE]
    by_topic = {e["data"]["topic"]: e["data"] for e in events}
    assert by_topic["team:b"] | {"topic": None} == {
        "topic": None,
        "series_id": "s1",
        "tournament_id": "t1",
        "tournament_name": "Spring Cup",
        "best_of": 3,
        "team_id": "b",
        "team_name": "Team B",
        "opponent_name": "Team A",
        "won": True,
        "winner": "b",
        "winner_name": "Team B",
        "score": "2-1",
        "decided_by": "majority",
    }
    assert (by_topic["team:a"]["won"], by_topic["team:a"]["score"]) == (False, "1-2")
    assert all(e["source"] == "/tidings/rankings" for e in events)


def test_series_completed_is_a_valid_event_that_reads_well_for_each_side(db: str, catalog: Catalog) -> None:
    # given
    feed(catalog, series_match("a", hours=1))
    events = feed(catalog, series_match("a", hours=2, forfeit="b")).announce

    # when
    rendered = {}
    for raw in events:
        event = parse_event(raw, catalog)
        context = {"data": event.data, "url": None, "user": {"name": None}, "product": {"name": "Arena", "url": None}}
        parts = get_renderer(Settings().templates_dir).render(event.type, context, frozenset({"subject"}))
        rendered[event.data["team_id"]] = parts.subject

    # then
    assert rendered == {
        "a": "Team A won the series 2-0 against Team B by forfeit",
        "b": "Team B lost the series 0-2 against Team A by forfeit",
    }


def test_a_game_after_the_series_is_decided_is_kept_flagged_and_counts_in_no_standings(
    db: str, catalog: Catalog
) -> None:
    # given: a wins 2-0, then a third game (b wins) is reported
    feed(catalog, series_match("a", hours=1))
    feed(catalog, series_match("a", hours=2))

    # when
    late = feed(catalog, series_match("b", hours=3))
    recompute()

    # then: recorded, flagged, announcing nothing, and out of both scopes
    assert late.outcome == "accepted" and late.announce == []
    summary = series_summary("s1")
    assert summary is not None
    assert [line.counted for line in summary.games] == [True, True, False]
    assert MatchResult.select().count() == 3 and len(ledger()) == 2
    overall = {row["team_id"]: (row["wins"], row["losses"]) for row in standings("overall")}
    assert overall == {"a": (2, 0), "b": (0, 2)}
    assert {row["team_id"]: row["matches"] for row in standings("tournament:t1")} == {"a": 2, "b": 2}


def test_a_series_decided_again_by_a_late_earlier_game_is_announced_with_its_new_winner(
    db: str, catalog: Catalog
) -> None:
    # given: a best of 1 that b "won" at 12:00, then the real game, at 11:00, which a won
    b_wins = feed(catalog, series_match("b", best_of=1, hours=2)).announce
    a_wins = feed(catalog, series_match("a", best_of=1, hours=1)).announce

    # then: two announcements with different ids (the second is the correction)
    assert {e["data"]["winner"] for e in b_wins} == {"b"} and {e["data"]["winner"] for e in a_wins} == {"a"}
    assert not {e["id"] for e in b_wins} & {e["id"] for e in a_wins}
    summary = series_summary("s1")
    assert summary is not None and summary.winner == "a"


def test_the_daily_notices_announce_again_the_series_decided_in_the_window_with_the_same_ids(
    db: str, catalog: Catalog
) -> None:
    # given: a decided series whose announcement may have been lost
    announced = feed(catalog, series_match("a", best_of=1, hours=1)).announce

    # when
    again = [e for e in recent_notices(dt.datetime(2000, 1, 1)) if e["type"] == SERIES_TYPE]

    # then
    assert sorted(e["id"] for e in again) == sorted(e["id"] for e in announced)
    assert [e for e in recent_notices(dt.datetime(2999, 1, 1)) if e["type"] == SERIES_TYPE] == []


def test_an_undecided_series_announces_nothing() -> None:
    assert series_events(summarize("s1", [game("a")]), now=T0) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"best_of": 2}, "data.best_of must be one of 1, 3, 5, 7"),
        ({"best_of": True}, "data.best_of must be one of 1, 3, 5, 7"),
        ({"best_of": None}, "data.series_id needs data.best_of"),
        ({"series_id": None}, "data.best_of and data.forfeit belong to a series game: data.series_id is missing"),
        ({"series_id": ""}, "data.series_id must be a string of 1 to 255 characters"),
        ({"forfeit": "z"}, "data.forfeit 'z' is not the team_id of one of data.participants"),
        ({"forfeit": "a"}, "data.forfeit needs data.winner: the team the series is forfeited to"),
    ],
)
def test_malformed_series_data_is_rejected_with_a_clear_reason(
    db: str, catalog: Catalog, change: dict[str, Any], reason: str
) -> None:
    # given: a winning the game, with the change
    event = series_match("a", hours=1)
    data = {k: v for k, v in (event.data | change).items() if v is not None}

    # when / then: at admission, or when the ledger records it (ingest rolls back)
    with pytest.raises(InvalidEvent, match=reason.replace("(", r"\(").replace(")", r"\)")):
        feed(catalog, parse_event(build_event("match.completed", data, source="/matches", time=event.time), catalog))
    assert Event.select().count() == 0 and MatchResult.select().count() == 0


def test_a_game_naming_another_tournament_is_flagged_in_both_tournaments_standings(db: str, catalog: Catalog) -> None:
    # given: a series of t1, and a game of it that names t2
    feed(catalog, series_match("a", hours=1))
    stray = series_match("b", hours=2)
    feed(
        catalog, parse_event(build_event("match.completed", stray.data | {"tournament_id": "t2"}, source="/m"), catalog)
    )

    # when: the whole ledger, or only t2, is recomputed
    everything, only_t2 = ledger(), ledger("t2")

    # then: the stray game counts in neither
    assert [m.tournament_id for m in everything] == ["t1"] and only_t2 == []
