"""Rankings: the match ledger, standings with every tie-breaker, snapshots, and rank-change notices."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from dispatcher.cli.main import main
from dispatcher.core import clock
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import CloudEvent, parse_event
from dispatcher.core.rendering import get_renderer
from dispatcher.core.settings import Settings
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.rankings.ledger import RankChange, changes_since, recompute, record_result, standings
from dispatcher.rankings.notices import INGEST_HOOKS, change_events, tournament_names
from dispatcher.rankings.standings import MatchRecord, Placing, battle_royale_standings, overall_standings
from dispatcher.storage.models import Delivery, Event, MatchResult, RankingSnapshot, Subscription
from tests.support.events import parsed_event

T0 = dt.datetime(2026, 5, 9, 10, 0)
_ids = itertools.count()


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


# --- pure standings: plain lists in, rows out ----------------------------------


def played(
    hours: float, *lines: tuple[str, int, int], winner: str | None = None, tournament: str = "t1"
) -> MatchRecord:
    """A match at T0 + hours; each line is (team_id, placement, kills)."""
    return MatchRecord(
        tournament, winner, tuple(Placing(team, 0, placement, kills) for team, placement, kills in lines), at(hours)
    )


def duel(hours: float, winner: str, loser: str) -> MatchRecord:
    return played(hours, (winner, 1, 0), (loser, 2, 0), winner=winner)


def table(rows: list[dict[str, Any]], *columns: str) -> list[tuple[Any, ...]]:
    return [tuple(row[c] for c in ("rank", "team_id", *columns)) for row in rows]


def test_overall_standings_count_points_wins_and_losses_per_match() -> None:
    # given: a beats b, b beats c, a beats c
    matches = [duel(0, "a", "b"), duel(1, "b", "c"), duel(2, "a", "c")]

    # when
    rows = overall_standings(matches, win_points=3)

    # then
    assert table(rows, "points", "wins", "losses", "matches") == [
        (1, "a", 6, 2, 0, 2),
        (2, "b", 3, 1, 1, 2),
        (3, "c", 0, 0, 2, 2),
    ]


def test_overall_wins_decide_between_equal_points() -> None:
    # given: no points for a win, so every team has 0 points
    matches = [duel(0, "b", "c"), duel(1, "a", "c"), duel(2, "a", "b")]

    # when
    rows = overall_standings(matches, win_points=0)

    # then
    assert table(rows, "points", "wins", "losses") == [(1, "a", 0, 2, 0), (2, "b", 0, 1, 1), (3, "c", 0, 0, 2)]


def test_overall_fewer_losses_decide_between_equal_points_and_wins() -> None:
    # given: b got to 3 points first, but lost twice since; a never lost
    matches = [duel(0, "b", "y"), duel(1, "a", "x"), duel(2, "z", "b"), duel(3, "z", "b")]

    # when
    rows = overall_standings(matches, win_points=3)

    # then: y and x tie on everything but who got to 0 points first
    assert table(rows, "points", "wins", "losses") == [
        (1, "z", 6, 2, 0),
        (2, "a", 3, 1, 0),
        (3, "b", 3, 1, 2),
        (4, "y", 0, 0, 1),
        (5, "x", 0, 0, 1),
    ]


def test_overall_who_reached_the_final_total_first_decides_a_full_tie() -> None:
    # given: alpha played first, but zeta reached 3 points (its final total) first
    matches = [duel(-1, "q", "alpha"), duel(0, "q", "zeta"), duel(1, "zeta", "x"), duel(2, "alpha", "y")]

    # when
    rows = overall_standings(matches, win_points=3)

    # then
    assert table(rows, "points", "wins", "losses", "reached_at") == [
        (1, "q", 6, 2, 0, "2026-05-09T10:00:00Z"),
        (2, "zeta", 3, 1, 1, "2026-05-09T11:00:00Z"),
        (3, "alpha", 3, 1, 1, "2026-05-09T12:00:00Z"),
        (4, "x", 0, 0, 1, "2026-05-09T11:00:00Z"),
        (5, "y", 0, 0, 1, "2026-05-09T12:00:00Z"),
    ]


def test_overall_team_ids_decide_when_everything_ties() -> None:
    # given: two wins completed at the same instant
    matches = [duel(0, "b", "y"), duel(0, "a", "x")]

    # when
    rows = overall_standings(matches, win_points=3)

    # then
    assert [row["team_id"] for row in rows] == ["a", "b", "x", "y"]
    assert [row["rank"] for row in rows] == [1, 2, 3, 4]


def test_battle_royale_standings_add_placement_points_and_kills() -> None:
    # given: (placement, kills) per match; default table 1:12 2:9 3:7 4:5 ..., 1 point per kill
    matches = [
        played(0, ("a", 1, 3), ("b", 2, 5), ("c", 3, 0), ("d", 9, 2)),  # a 15, b 14, c 7, d 2
        played(1, ("b", 1, 1), ("c", 2, 4), ("a", 4, 0), ("d", 3, 1)),  # b 13, c 13, a 5, d 8
    ]

    # when
    rows = battle_royale_standings(matches)

    # then: a and c both have 20 points; c has more kills
    assert table(rows, "points", "kills", "best_placement", "matches") == [
        (1, "b", 27, 6, 1, 2),
        (2, "c", 20, 4, 2, 2),
        (3, "a", 20, 3, 1, 2),
        (4, "d", 10, 3, 3, 2),
    ]


def test_battle_royale_best_placement_decides_between_equal_points_and_kills() -> None:
    # given: zulu 12 + 4, bravo 7 + 9, no kills, both totals reached in the second match
    matches = [played(0, ("zulu", 1, 0), ("bravo", 3, 0)), played(1, ("bravo", 2, 0), ("zulu", 5, 0))]

    # when
    rows = battle_royale_standings(matches)

    # then
    assert table(rows, "points", "kills", "best_placement") == [(1, "zulu", 16, 0, 1), (2, "bravo", 16, 0, 2)]


def test_battle_royale_who_reached_the_final_total_first_decides_a_full_tie() -> None:
    # given: yankee reached 13 at 10:00 and then scored nothing more at 12:00; xray reached 13 at 11:00
    matches = [
        played(0, ("yankee", 1, 1), ("whiskey", 9, 0)),
        played(1, ("xray", 1, 1), ("whiskey", 9, 0)),
        played(2, ("yankee", 10, 0), ("whiskey", 9, 0)),
    ]

    # when
    rows = battle_royale_standings(matches)

    # then: the completion of yankee's last match does not count, the time it reached its total does
    assert table(rows, "points", "kills", "best_placement", "reached_at") == [
        (1, "yankee", 13, 1, 1, "2026-05-09T10:00:00Z"),
        (2, "xray", 13, 1, 1, "2026-05-09T11:00:00Z"),
        (3, "whiskey", 0, 0, 9, "2026-05-09T10:00:00Z"),
    ]


def test_battle_royale_team_ids_decide_when_everything_ties() -> None:
    # given
    matches = [played(0, ("b", 1, 2)), played(0, ("a", 1, 2))]

    # when
    rows = battle_royale_standings(matches)

    # then
    assert table(rows, "points") == [(1, "a", 14), (2, "b", 14)]


def test_the_placement_table_and_points_per_kill_are_configurable() -> None:
    # given
    matches = [played(0, ("a", 1, 1), ("b", 2, 5))]

    # when
    default = battle_royale_standings(matches)
    custom = battle_royale_standings(matches, placement_points={1: 10}, points_per_kill=2)

    # then
    assert table(default, "points") == [(1, "b", 14), (2, "a", 13)]
    assert table(custom, "points") == [(1, "a", 12), (2, "b", 10)]


def test_fractional_points_add_up_without_float_noise() -> None:
    # given: 0.1 per kill; 0.1 + 0.2 is not 0.3 in floating point
    matches = [played(0, ("a", 20, 1)), played(1, ("a", 20, 2)), played(0, ("b", 20, 3))]

    # when
    rows = battle_royale_standings(matches, points_per_kill=0.1)

    # then: b got there first
    assert table(rows, "points") == [(1, "b", 0.3), (2, "a", 0.3)]


# --- the ledger -------------------------------------------------------------------


def completed(
    participants: Any,
    *,
    winner: str | None = None,
    tournament: str | None = "t1",
    hours: float = 0,
    event_id: str | None = None,
    **extra: Any,
) -> CloudEvent:
    data: dict[str, Any] = {
        "topic": "matches",
        "tournament_name": "Spring Cup",
        "winner_name": winner or "nobody",
        "winner": winner,
        "participants": participants,
        **extra,
    }
    if tournament is not None:
        data["tournament_id"] = tournament
    return parsed_event(
        "match.completed",
        data,
        id=event_id or f"match-{next(_ids)}",
        source="/matches",
        time=at(hours).replace(tzinfo=dt.UTC),
    )


def line(team: str, placement: int, kills: int = 0, **extra: Any) -> dict[str, Any]:
    return {"team_id": team, "score": 100 - placement, "placement": placement, "kills": kills, **extra}


def feed(catalog: Catalog, event: CloudEvent) -> bool:
    """Ingest a match.completed as the worker does; True if the ledger holds it."""
    ingest_event(event, catalog, ["in_app"], hooks=INGEST_HOOKS)
    row_id = Event.select(Event.id).where(Event.source == event.source, Event.event_id == event.id).scalar()
    return MatchResult.select().where(MatchResult.event == row_id).exists()


def test_a_completed_match_is_recorded_once_in_the_ledger(db: str, catalog: Catalog) -> None:
    # given
    event = completed([line("a", 1, 3, team_name="Owls"), line("b", 2)], winner="a", match_id="m-1", hours=2)

    # when: recorded, then redelivered
    assert feed(catalog, event) is True
    assert feed(catalog, event) is True

    # then
    result = MatchResult.get()
    assert MatchResult.select().count() == 1
    assert (result.tournament_id, result.match_id, result.winner, result.completed_at) == ("t1", "m-1", "a", at(2))
    assert result.participants == [
        {"team_id": "a", "score": 99, "placement": 1, "kills": 3, "team_name": "Owls"},
        {"team_id": "b", "score": 98, "placement": 2, "kills": 0, "team_name": None},
    ]


def test_a_match_without_time_completes_when_it_is_received(db: str, catalog: Catalog) -> None:
    # given
    event = parsed_event(
        "match.completed",
        {
            "topic": "m",
            "tournament_name": "Cup",
            "winner_name": "A",
            "tournament_id": "t1",
            "winner": None,
            "participants": [line("a", 1)],
        },
        id="no-time",
        source="/matches",
    )

    # when
    with clock.use_clock(lambda: at(5)):
        feed(catalog, event)

    # then
    assert MatchResult.get().completed_at == at(5)


@pytest.mark.parametrize("missing", ["tournament_id", "participants"])
def test_a_match_without_ledger_data_is_a_notification_but_not_a_result(
    db: str, catalog: Catalog, missing: str
) -> None:
    # given
    event = completed([line("a", 1)], winner="a")
    del event.data[missing]

    # when
    with capture_logs() as logs:
        recorded = feed(catalog, event)

    # then
    assert recorded is False
    assert MatchResult.select().count() == 0
    assert Event.select().count() == 1
    assert [(entry["event"], entry["reason"]) for entry in logs] == [
        ("match_result_not_recorded", f"data has no {missing}")
    ]


@pytest.mark.parametrize(
    ("participants", "winner", "reason"),
    [
        ([], None, "data.participants must be a non-empty list of {team_id, score, placement, kills}"),
        ("a,b", None, "data.participants must be a non-empty list"),
        (["a"], None, "data.participants[0] must be an object with team_id, score, placement and kills"),
        ([{"score": 1, "placement": 1, "kills": 0}], None, "data.participants[0].team_id must be a string of 1 to 255"),
        ([line("a", 1), line("a", 2)], None, "data.participants[1].team_id 'a' appears twice in data.participants"),
        ([{**line("a", 1), "score": "ten"}], None, "data.participants[0].score must be a number"),
        ([line("a", 1), line("b", 0)], None, "data.participants[1].placement must be an integer of 1 or more"),
        ([{**line("a", 1), "placement": True}], None, "data.participants[0].placement must be an integer of 1 or more"),
        ([line("a", 1, kills=-1)], None, "data.participants[0].kills must be an integer of 0 or more"),
        ([{**line("a", 1), "kills": 1.5}], None, "data.participants[0].kills must be an integer of 0 or more"),
        ([line("a", 1)], "b", "data.winner 'b' is not the team_id of one of data.participants"),
    ],
)
def test_malformed_ledger_data_is_rejected_with_a_clear_reason(
    participants: Any, winner: str | None, reason: str
) -> None:
    # given
    event = completed(participants, winner=winner)

    # when / then: rejected before anything is written
    with pytest.raises(InvalidEvent, match=re.escape(reason)):
        record_result(event, event_row_id=0)


def test_a_tournament_id_that_is_not_a_string_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="data.tournament_id must be a string of 1 to 255 characters"):
        record_result(completed([line("a", 1)], tournament=42), event_row_id=0)  # type: ignore[arg-type]


# --- recompute and snapshots ---------------------------------------------------------


def overall_ranks() -> dict[str, int]:
    return {row["team_id"]: row["rank"] for row in standings("overall")}


def test_recompute_stores_the_hand_computed_standings_of_each_scope(db: str, catalog: Catalog) -> None:
    # given: two tournaments
    feed(catalog, completed([line("a", 1, 3, team_name="Owls"), line("b", 2, 5), line("c", 3)], winner="a", hours=0))
    feed(catalog, completed([line("b", 1, 1), line("c", 2, 4), line("a", 4)], winner="b", hours=1))
    feed(catalog, completed([line("c", 1, 0), line("a", 2, 1)], winner="c", tournament="t2", hours=2))

    # when
    with clock.use_clock(lambda: at(3)):
        changes = recompute()

    # then: first snapshots announce nothing
    assert changes == []
    assert standings("overall") == [
        {
            "rank": 1,
            "team_id": "b",
            "team_name": None,
            "points": 3,
            "wins": 1,
            "losses": 1,
            "matches": 2,
            "reached_at": "2026-05-09T11:00:00Z",
        },
        {
            "rank": 2,
            "team_id": "a",
            "team_name": "Owls",
            "points": 3,
            "wins": 1,
            "losses": 2,
            "matches": 3,
            "reached_at": "2026-05-09T10:00:00Z",
        },
        {
            "rank": 3,
            "team_id": "c",
            "team_name": None,
            "points": 3,
            "wins": 1,
            "losses": 2,
            "matches": 3,
            "reached_at": "2026-05-09T12:00:00Z",
        },
    ]
    assert table(standings("tournament:t1"), "points", "kills", "best_placement") == [
        (1, "b", 27, 6, 1),
        (2, "c", 20, 4, 2),
        (3, "a", 20, 3, 1),
    ]
    assert table(standings("tournament:t2"), "points", "kills", "best_placement") == [
        (1, "c", 12, 0, 1),
        (2, "a", 10, 1, 2),
    ]
    assert {(s.scope, s.version, s.computed_at) for s in RankingSnapshot.select()} == {
        ("overall", 1, at(3)),
        ("tournament:t1", 1, at(3)),
        ("tournament:t2", 1, at(3)),
    }
    assert standings("tournament:nope") == []


def test_a_recompute_with_no_new_results_writes_nothing_and_announces_nothing(db: str, catalog: Catalog) -> None:
    # given
    feed(catalog, completed([line("a", 1), line("b", 2)], winner="a"))
    recompute()
    feed(catalog, completed([line("b", 1, 2), line("a", 2)], winner="b", hours=1))
    assert recompute() != []

    # when
    again = recompute()

    # then
    assert again == []
    assert RankingSnapshot.select().count() == 4  # overall and t1, versions 1 and 2


def setup_three_teams(catalog: Catalog) -> None:
    """a, b, c placed 1-2-3 at 10:00: overall a 1, b 2, c 3 (b and c tie; b by id); t1 a 1, b 2, c 3."""
    feed(catalog, completed([line("a", 1), line("b", 2), line("c", 3)], winner="a", hours=0))
    recompute()


def test_only_teams_whose_rank_moved_get_a_change_with_old_and_new_rank(db: str, catalog: Catalog) -> None:
    # given
    setup_three_teams(catalog)

    # when: c wins at 11:00 ahead of d, a newcomer
    feed(catalog, completed([line("c", 1), line("d", 2)], winner="c", hours=1))
    changes = recompute()

    # then: overall a 3 pts (1 W 0 L), c 3 (1 W 1 L), b 0 (reached 10:00), d 0 (11:00): a did not move
    assert [c for c in changes if c.scope == "overall"] == [
        RankChange("overall", "c", 3, 2, 3, version=2),
        RankChange("overall", "b", 2, 3, 0, version=2),
        RankChange("overall", "d", None, 4, 0, version=2),
    ]
    # t1: c 7 + 12 = 19, a 12, b 9 (reached 10:00), d 9 (reached 11:00): everyone moved
    assert [(c.team_id, c.old_rank, c.new_rank, c.points) for c in changes if c.scope == "tournament:t1"] == [
        ("c", 3, 1, 19),
        ("a", 1, 2, 12),
        ("b", 2, 3, 9),
        ("d", None, 4, 9),
    ]
    assert overall_ranks() == {"a": 1, "c": 2, "b": 3, "d": 4}


def test_a_change_keeps_the_previous_snapshot(db: str, catalog: Catalog) -> None:
    # given
    setup_three_teams(catalog)
    before = standings("overall")

    # when
    feed(catalog, completed([line("c", 1), line("d", 2)], winner="c", hours=1))
    recompute()

    # then
    versions = list(
        RankingSnapshot.select().where(RankingSnapshot.scope == "overall").order_by(RankingSnapshot.version)
    )
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].standings == before
    assert versions[1].standings == standings("overall") != before


def test_new_results_that_move_nobody_write_a_snapshot_but_announce_nothing(db: str, catalog: Catalog) -> None:
    # given
    setup_three_teams(catalog)

    # when: a wins again; the order stays a, b, c everywhere
    feed(catalog, completed([line("a", 1), line("b", 2), line("c", 3)], winner="a", hours=1))
    changes = recompute()

    # then
    assert changes == []
    assert RankingSnapshot.select().where(RankingSnapshot.version == 2).count() == 2
    assert standings("overall")[0]["points"] == 6


def test_a_new_tournament_announces_nothing_in_its_own_scope(db: str, catalog: Catalog) -> None:
    # given
    setup_three_teams(catalog)

    # when: c wins the first match of t2
    feed(catalog, completed([line("c", 1), line("b", 2)], winner="c", tournament="t2", hours=1))
    changes = recompute()

    # then: only the overall scope had standings to move from
    assert {c.scope for c in changes} == {"overall"}
    assert table(standings("tournament:t2"), "points") == [(1, "c", 12), (2, "b", 9)]


# --- notices ----------------------------------------------------------------------------


def test_change_events_are_ranking_changed_events_for_the_team_topic(db: str, catalog: Catalog) -> None:
    # given
    setup_three_teams(catalog)
    feed(catalog, completed([line("c", 1, team_name="Crows"), line("d", 2)], winner="c", hours=1))
    changes = recompute()

    # when
    events = change_events(changes, now=at(2))

    # then
    crows = [e for e in events if e["data"]["team_id"] == "c"]
    assert [e["data"] for e in crows] == [
        {
            "topic": "team:c",
            "team_id": "c",
            "team_name": "Crows",
            "scope": "overall",
            "old_rank": 3,
            "new_rank": 2,
            "points": 3,
        },
        {
            "topic": "team:c",
            "team_id": "c",
            "team_name": "Crows",
            "scope": "tournament:t1",
            "old_rank": 3,
            "new_rank": 1,
            "points": 19,
            "tournament_id": "t1",
        },
    ]
    assert all(
        (e["type"], e["source"], e["time"]) == ("ranking.changed", "/tidings/rankings", "2026-05-09T12:00:00Z")
        for e in events
    )
    assert [e["data"]["team_name"] for e in events if e["data"]["team_id"] == "b"] == ["b", "b"]  # no name known
    assert all(parse_event(e, catalog) for e in events)


def test_change_event_ids_depend_only_on_scope_team_and_version() -> None:
    # given
    change = RankChange("overall", "c", 3, 2, 3, version=2)

    # when
    first = change_events([change], now=at(1))[0]
    later = change_events([RankChange("overall", "c", 3, 2, 3, version=2, team_name="Crows")], now=at(9))[0]
    others = change_events(
        [
            RankChange("overall", "c", 2, 1, 6, version=3),
            RankChange("tournament:t1", "c", 3, 2, 3, version=2),
            RankChange("overall", "b", 3, 2, 3, version=2),
        ],
        now=at(1),
    )

    # then
    assert first["id"] == later["id"]
    assert len({first["id"], *(e["id"] for e in others)}) == 4


def test_changes_since_rebuilds_the_same_notices_from_the_snapshots(db: str, catalog: Catalog) -> None:
    # given
    setup_three_teams(catalog)
    feed(catalog, completed([line("c", 1), line("d", 2)], winner="c", hours=1))
    with clock.use_clock(lambda: at(2)):
        changes = recompute()

    # when
    rebuilt = changes_since(at(2))

    # then
    assert sorted(rebuilt, key=repr) == sorted(changes, key=repr)
    assert changes_since(at(2) + dt.timedelta(seconds=1)) == []


def test_a_published_change_notifies_the_team_subscribers_once(db: str, catalog: Catalog) -> None:
    # given
    setup_three_teams(catalog)
    Subscription.create(topic="team:c", user_id="cora", active=True, changed_at=T0)
    Subscription.create(topic="team:a", user_id="abe", active=True, changed_at=T0)
    feed(catalog, completed([line("c", 1), line("d", 2)], winner="c", hours=1))
    events = [e for e in change_events(recompute(), now=at(2)) if e["data"]["scope"] == "overall"]

    # when: what the exchange hands back to Tidings' ingest, twice
    outcomes = [
        ingest_event(parse_event(e, catalog), catalog, ["in_app"], hooks=INGEST_HOOKS).outcome for e in events + events
    ]

    # then: c moved and has a subscriber; a did not move
    assert outcomes == ["accepted"] * 3 + ["duplicate"] * 3
    assert [
        (d.user_id, d.event.data["new_rank"])
        for d in Delivery.select().join(Event).where(Event.type == "ranking.changed")
    ] == [("cora", 2)]


def test_a_tournament_is_named_by_its_latest_result_and_a_change_in_it_carries_the_name(
    db: str, catalog: Catalog
) -> None:
    # given t1's results named "Spring Cup" then "Spring Cup 2026"; t2's name unknown
    setup_three_teams(catalog)
    feed(catalog, completed([line("c", 1), line("a", 2)], winner="c", hours=1, tournament_name="Spring Cup 2026"))
    feed(catalog, completed([line("x", 1), line("y", 2)], winner="x", hours=1, tournament="t2", tournament_name=" "))
    # when
    names = tournament_names(["t1", "t2", "t9"])
    events = change_events(recompute(), now=at(2), names=names)
    # then
    assert names == {"t1": "Spring Cup 2026"}
    scopes = {(e["data"]["team_id"], e["data"]["scope"]): e["data"].get("tournament_name") for e in events}
    assert scopes[("c", "tournament:t1")] == "Spring Cup 2026"
    assert all(name is None for (_, scope), name in scopes.items() if not scope.startswith("tournament:t1"))


@pytest.mark.parametrize(
    ("scope_data", "subject", "sentence"),
    [
        (
            {"scope": "overall"},
            "Night Owls is now #1 overall",
            "moved from #3 to #1 in the overall rankings (9 points).",
        ),
        (
            {"scope": "tournament:t1", "tournament_id": "t1", "tournament_name": "Spring Cup"},
            "Night Owls is now #1 in Spring Cup",
            "moved from #3 to #1 in Spring Cup (9 points).",
        ),
        (
            {"scope": "tournament:t1", "tournament_id": "t1"},
            "Night Owls is now #1 in tournament t1",
            "moved from #3 to #1 in tournament t1 (9 points).",
        ),
        ({}, "Night Owls is now #1", "moved from #3 to #1 (9 points)."),
    ],
)
def test_a_rank_notice_says_which_rankings_it_is_about(
    catalog: Catalog, scope_data: dict[str, str], subject: str, sentence: str
) -> None:
    # given
    data = {"team_name": "Night Owls", "old_rank": 3, "new_rank": 1, "points": 9, **scope_data}
    context = {"data": data, "url": None, "user": {"name": None}, "product": {"name": "Arena", "url": None}}
    # when
    rendered = get_renderer(Settings().templates_dir).render("ranking.changed", context, frozenset({"subject", "text"}))
    # then
    assert (rendered.subject, sentence in rendered.text) == (subject, True)


# --- the command line -----------------------------------------------------------------


def test_the_rankings_commands_recompute_show_and_announce_the_standings(
    sqlite_db: str,
    catalog: Catalog,
    capsys: pytest.CaptureFixture[str],
    announced: tuple[str, Callable[[], list[dict]]],
) -> None:
    # given
    exchange, read_announced = announced
    settings = Settings.from_env({"TIDINGS_DATABASE_URL": sqlite_db, "TIDINGS_EXCHANGE": exchange})
    feed(catalog, completed([line("a", 1, 2, team_name="Owls"), line("b", 2)], winner="a"))

    def run(*argv: str) -> str:
        assert main(list(argv), settings=settings) == 0
        return capsys.readouterr().out

    # when / then
    assert run("rankings", "show") == (
        "no standings for overall yet (`tidings rankings recompute` computes them from the results)\n"
    )
    assert run("rankings", "recompute") == (
        "0 rank change(s)\n"
        "published 0 ranking.changed and series.completed event(s) (each once, whoever publishes it)\n"
    )
    assert run("rankings", "show").splitlines()[1:] == [
        "RANK  TEAM      POINTS  WINS  LOSSES",
        "1     Owls (a)  3       1     0",
        "2     b         0       0     1",
    ]
    assert run("rankings", "show", "--tournament", "t1").splitlines()[1:] == [
        "RANK  TEAM      POINTS  KILLS  BEST_PLACEMENT",
        "1     Owls (a)  14      2      1",
        "2     b         9       0      2",
    ]
    shown = json.loads(run("rankings", "show", "--tournament", "t1", "--json"))
    assert (shown["scope"], shown["version"], [r["team_id"] for r in shown["standings"]]) == (
        "tournament:t1",
        1,
        ["a", "b"],
    )
    feed(catalog, completed([line("b", 1), line("a", 2)], winner="b", hours=1))
    feed(catalog, completed([line("b", 1), line("a", 2)], winner="b", hours=2))
    assert run("rankings", "recompute").splitlines() == [
        "4 rank change(s)",
        "SCOPE          TEAM  OLD_RANK  NEW_RANK  POINTS",
        "overall        b     2         1         6",
        "overall        a     1         2         3",
        "tournament:t1  b     2         1         33",
        "tournament:t1  a     1         2         32",
        "published 4 ranking.changed and series.completed event(s) (each once, whoever publishes it)",
    ]
    events = read_announced()
    assert sorted(
        (e["data"]["topic"], e["data"]["scope"], e["data"]["old_rank"], e["data"]["new_rank"]) for e in events
    ) == [
        ("team:a", "overall", 1, 2),
        ("team:a", "tournament:t1", 1, 2),
        ("team:b", "overall", 2, 1),
        ("team:b", "tournament:t1", 2, 1),
    ]
    assert {e["type"] for e in events} == {"ranking.changed"}


def test_a_tournament_id_too_long_for_its_scope_is_rejected_and_the_longest_that_fits_recomputes(
    db: str, catalog: Catalog
) -> None:
    # given: 'tournament:' + the id is stored in 255 characters
    with pytest.raises(InvalidEvent, match="data.tournament_id has 245 characters, over 244"):
        record_result(completed([line("a", 1)], tournament="t" * 245), event_row_id=0)

    # when
    feed(catalog, completed([line("a", 1), line("b", 2)], winner="a", tournament="t" * 244))
    recompute()

    # then
    assert [row["team_id"] for row in standings("tournament:" + "t" * 244)] == ["a", "b"]
