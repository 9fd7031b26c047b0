"""Series and placement overrides through the real worker and RabbitMQ: what team subscribers hear, once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dispatcher.storage.models import Event, InboxItem, OverrideEntry, PlacementOverride
from tests.support.deployment import Deployment
from tests.support.publishing import publish_event, publish_event_as_tidings
from tests.support.scheduler import run_schedules
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def follow(deployment: Deployment, *pairs: tuple[str, str]) -> None:
    """Subscribe each (user, team) pair to the team's topic."""
    for user, team in pairs:
        publish_event_as_tidings(deployment, "tidings.topic.subscribe", {"topic": f"team:{team}", "user": user})


def inbox(type_name: str) -> list[InboxItem]:
    return list(InboxItem.select().where(InboxItem.type == type_name).order_by(InboxItem.user_id))


def game(series: str, number: int, winner: str, loser: str, best_of: int = 3) -> dict[str, Any]:
    return {
        "recipients": [],
        "tournament_id": "cup",
        "tournament_name": "Winter Cup",
        "match_id": f"{series}-{number}",
        "series_id": series,
        "best_of": best_of,
        "winner": winner,
        "winner_name": winner,
        "participants": [
            {"team_id": winner, "team_name": f"Team {winner}", "score": 13, "placement": 1, "kills": 0},
            {"team_id": loser, "team_name": f"Team {loser}", "score": 7, "placement": 2, "kills": 0},
        ],
    }


def test_a_decided_series_reaches_the_subscribers_of_both_teams_once(running: Deployment) -> None:
    # given ana follows a and bo follows b
    follow(running, ("ana", "a"), ("bo", "b"))
    wait_for(lambda: Event.select().where(Event.type == "tidings.topic.subscribe").count() == 2, what="subscriptions")

    # when a best of 3 goes a, b, a, then a stray fourth game is reported, and the deciding game is published twice
    third = game("bo3", 3, "a", "b")
    for index, data in enumerate([game("bo3", 1, "a", "b"), game("bo3", 2, "b", "a"), third], start=1):
        publish_event_as_tidings(running, "match.completed", data, id=f"g{index}")
    publish_event_as_tidings(running, "match.completed", third, id="g3")
    publish_event_as_tidings(running, "match.completed", game("bo3", 4, "b", "a"), id="g4")

    # then each side hears it once, from its side, and the stray game announces nothing
    wait_for(lambda: Event.select().where(Event.type == "match.completed").count() == 4, what="the four games")
    wait_for(lambda: len(inbox("series.completed")) == 2, what="the series notices")
    notices = [(i.user_id, i.title) for i in inbox("series.completed")]
    assert notices == [
        ("ana", "Team a won the series 2-1 against Team b"),
        ("bo", "Team b lost the series 1-2 against Team a"),
    ]
    assert Event.select().where(Event.type == "series.completed").count() == 2


def test_an_override_through_the_bus_is_audited_and_each_rank_it_moves_is_announced_once(
    running: Deployment,
) -> None:
    # given three teams in a tournament, each followed by one user, and the day's standings
    follow(running, ("ana", "a"), ("bo", "b"), ("cy", "c"))
    result = {
        "recipients": [],
        "tournament_id": "cup",
        "tournament_name": "Winter Cup",
        "winner": "a",
        "winner_name": "a",
        "participants": [
            {"team_id": team, "score": 0, "placement": place, "kills": 0} for place, team in enumerate("abc", 1)
        ],
    }
    publish_event_as_tidings(running, "match.completed", result)
    wait_for(lambda: Event.select().where(Event.type == "match.completed").count() == 1, what="the result")
    run_schedules(running, "recompute_rankings()")

    # when staff move c to first, and the same override is published again (a new id: a retry by hand)
    command = {"scope": "tournament:cup", "team_id": "c", "rank": 1, "reason": "ruling #7", "actor": "referee kim"}
    publish_event_as_tidings(running, "tidings.standings.override", command, source="/staff")
    wait_for(lambda: PlacementOverride.select().count() == 1, what="the override")
    publish_event_as_tidings(running, "tidings.standings.override", command, source="/staff")
    run_schedules(running, "recompute_rankings()")  # the daily job: announces nothing twice, keeps the override

    # then each moved team's subscriber hears it once, and the trail has one entry
    wait_for(lambda: len(inbox("ranking.changed")) == 3, what="the rank notices")
    wait_for(lambda: Event.select().where(Event.type == "tidings.standings.override").count() == 2, what="both")
    moves = sorted((i.user_id, i.data["old_rank"], i.data["new_rank"]) for i in inbox("ranking.changed"))
    assert moves == [("ana", 1, 2), ("bo", 2, 3), ("cy", 3, 1)]
    assert all("in Winter Cup" in i.title for i in inbox("ranking.changed"))
    [entry] = OverrideEntry.select()
    assert (entry.actor, entry.reason, entry.old_rank, entry.new_rank) == ("referee kim", "ruling #7", 3, 1)
    assert entry.via.startswith("/staff (")


def test_an_override_from_a_producer_without_authority_is_dead_lettered(running: Deployment) -> None:
    # when an anonymous producer sends an override
    command = {"scope": "tournament:cup", "team_id": "c", "rank": 1, "reason": "trust me", "actor": "mallory"}
    event_id = publish_event(running, "tidings.standings.override", command)

    # then it is refused, and changes nothing
    bodies = wait_for(running.dead_letters, what="the dead-lettered override")
    assert json.loads(bodies[0])["id"] == event_id
    assert PlacementOverride.select().count() == 0 and OverrideEntry.select().count() == 0


def test_a_best_of_one_is_announced_by_its_only_game(running: Deployment) -> None:
    # given
    follow(running, ("ana", "a"))
    wait_for(lambda: Event.select().where(Event.type == "tidings.topic.subscribe").count() == 1, what="subscription")
    # when
    publish_event_as_tidings(running, "match.completed", game("bo1", 1, "a", "b", best_of=1))
    # then
    wait_for(lambda: len(inbox("series.completed")) == 1, what="the best-of-1 notice")
    assert inbox("series.completed")[0].title == "Team a won the series 1-0 against Team b"
