"""Placement overrides: staff set a team's final rank in a tournament; audited, idempotent, revocable."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

import pytest

from dispatcher.core import clock
from dispatcher.core.authority import OPERATOR, Sender
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import CloudEvent
from dispatcher.pipeline.ingest import IngestResult, ingest_event
from dispatcher.rankings.ledger import override_trail, recompute, standings
from dispatcher.rankings.notices import CHANGE_TYPE, INGEST_HOOKS
from dispatcher.rankings.standings import Override, apply_overrides
from dispatcher.storage.models import OverrideEntry, PlacementOverride
from tests.support.events import parsed_event

T0 = dt.datetime(2026, 5, 9, 10, 0)
SCOPE = "tournament:t1"
_ids = itertools.count(1)


# --- pure: an override over computed rows ---------------------------------------------


def rows(*teams: str) -> list[dict[str, Any]]:
    return [{"rank": rank, "team_id": team, "points": 10 - rank} for rank, team in enumerate(teams, start=1)]


def by(rank: int, minutes: int = 0) -> Override:
    return Override(rank=rank, reason="ruling", actor="staff", at=T0 + dt.timedelta(minutes=minutes))


@pytest.mark.parametrize(
    ("overrides", "order"),
    [
        pytest.param({}, "abcd", id="no override: the computed order"),
        pytest.param({"d": by(1)}, "dabc", id="the last moved to first, the others one down"),
        pytest.param({"a": by(3)}, "bcad", id="the first moved to third, the others fill in"),
        pytest.param({"b": by(9)}, "acdb", id="a rank past the last is the last"),
        pytest.param({"c": by(1), "d": by(2)}, "cdab", id="two overrides"),
        pytest.param({"c": by(1), "d": by(1, minutes=5)}, "cdab", id="two wanting one rank: the earlier has it"),
        pytest.param({"z": by(1)}, "abcd", id="an override of a team not in the standings changes nothing"),
    ],
)
def test_an_override_puts_a_team_at_its_rank_and_the_others_keep_their_order(
    overrides: dict[str, Override], order: str
) -> None:
    # when
    placed = apply_overrides(rows(*"abcd"), overrides)

    # then
    assert "".join(row["team_id"] for row in placed) == order
    assert [row["rank"] for row in placed] == [1, 2, 3, 4]


def test_an_overridden_line_is_marked_with_its_computed_rank_who_and_why() -> None:
    # when
    placed = apply_overrides(rows("a", "b"), {"b": by(1)})

    # then
    assert placed[0] == {
        "rank": 1,
        "team_id": "b",
        "points": 8,
        "override": {"computed_rank": 2, "reason": "ruling", "actor": "staff", "at": "2026-05-09T10:00:00Z"},
    }
    assert "override" not in placed[1]


# --- the command, as every way in applies it --------------------------------------------


def result(order: str, *, hours: float) -> CloudEvent:
    """A battle-royale match of tournament t1 finishing in ``order`` (first place first)."""
    return parsed_event(
        "match.completed",
        {
            "topic": "matches",
            "tournament_id": "t1",
            "tournament_name": "Spring Cup",
            "winner": order[0],
            "winner_name": order[0],
            "participants": [
                {"team_id": team, "score": 0, "placement": place, "kills": 0, "team_name": team.upper()}
                for place, team in enumerate(order, start=1)
            ],
        },
        id=f"result-{next(_ids)}",
        source="/matches",
        time=(T0 + dt.timedelta(hours=hours)).replace(tzinfo=dt.UTC),
    )


def override(catalog: Catalog, *, sender: Sender = OPERATOR, minutes: float = 0, **data: Any) -> IngestResult:
    """A tidings.standings.override through ingest, with the rankings' hooks (as the worker, CLI and API do)."""
    data = {"scope": SCOPE, "reason": "cheating ruling #12", "actor": "alice (referee)"} | data
    event = parsed_event(
        "tidings.standings.override",
        {k: v for k, v in data.items() if v is not ...},
        id=f"override-{next(_ids)}",
        source="/staff-tool",
        time=(clock.now() + dt.timedelta(minutes=minutes)).replace(tzinfo=dt.UTC),
    )
    return ingest_event(event, catalog, [], sender=sender, hooks=INGEST_HOOKS)


def ranks() -> list[str]:
    return [row["team_id"] for row in standings(SCOPE)]


@pytest.fixture
def four_teams(db: str, catalog: Catalog) -> Catalog:
    """Tournament t1 with a, b, c, d ranked in that order, and a first snapshot."""
    ingest_event(result("abcd", hours=0), catalog, [], hooks=INGEST_HOOKS)
    recompute()
    assert ranks() == list("abcd")
    return catalog


def test_an_override_sets_the_rank_marks_the_line_and_records_who_why_when_and_the_ranks(four_teams: Catalog) -> None:
    # when
    applied = override(four_teams, team_id="d", rank=1)

    # then
    assert applied.outcome == "applied"
    assert ranks() == list("dabc")
    line = standings(SCOPE)[0]
    assert (line["team_id"], line["override"]["computed_rank"], line["override"]["actor"]) == (
        "d",
        4,
        "alice (referee)",
    )
    [entry] = override_trail(SCOPE)
    assert {k: entry[k] for k in ("team_id", "action", "old_rank", "new_rank", "reason", "actor", "via")} == {
        "team_id": "d",
        "action": "set",
        "old_rank": 4,
        "new_rank": 1,
        "reason": "cheating ruling #12",
        "actor": "alice (referee)",
        "via": "/staff-tool",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", entry["at"])


def test_an_override_announces_each_rank_change_it_causes_once(four_teams: Catalog) -> None:
    # when
    announced = override(four_teams, team_id="c", rank=1).announce

    # then: c moved up, a and b one down, d stayed
    assert {e["type"] for e in announced} == {CHANGE_TYPE}
    assert sorted((e["data"]["team_id"], e["data"]["old_rank"], e["data"]["new_rank"]) for e in announced) == [
        ("a", 1, 2),
        ("b", 2, 3),
        ("c", 3, 1),
    ]
    assert all(e["data"]["tournament_name"] == "Spring Cup" for e in announced)
    assert len({e["id"] for e in announced}) == 3


def test_the_same_override_twice_changes_nothing_records_one_entry_and_announces_nothing(
    four_teams: Catalog,
) -> None:
    # given
    override(four_teams, team_id="d", rank=1)

    # when
    again = override(four_teams, team_id="d", rank=1, reason="said again")

    # then
    assert (again.outcome, again.announce) == ("unchanged", [])
    assert OverrideEntry.select().count() == 1 and ranks() == list("dabc")


def test_an_override_survives_recomputes_with_new_results(four_teams: Catalog, catalog: Catalog) -> None:
    # given
    override(four_teams, team_id="d", rank=1)

    # when: d comes last again, twice, and the daily job recomputes
    ingest_event(result("abcd", hours=1), catalog, [], hooks=INGEST_HOOKS)
    ingest_event(result("bacd", hours=2), catalog, [], hooks=INGEST_HOOKS)
    recompute()
    recompute()

    # then: d stays first; the others are in their new computed order
    assert ranks() == list("dabc")
    assert standings(SCOPE)[0]["override"]["computed_rank"] == 4


def test_revoking_an_override_restores_the_computed_rank_and_records_it(four_teams: Catalog) -> None:
    # given
    override(four_teams, team_id="d", rank=1)

    # when
    revoked = override(four_teams, team_id="d", rank=None, reason="appeal upheld", actor="bob")
    again = override(four_teams, team_id="d", rank=None, reason="appeal upheld", actor="bob")

    # then
    assert (revoked.outcome, again.outcome) == ("applied", "unchanged")
    assert ranks() == list("abcd") and "override" not in standings(SCOPE)[3]
    assert sorted((e["data"]["team_id"], e["data"]["new_rank"]) for e in revoked.announce) == [
        ("a", 1),
        ("b", 2),
        ("c", 3),
        ("d", 4),
    ]
    assert [(e["action"], e["old_rank"], e["new_rank"], e["actor"]) for e in override_trail(SCOPE)] == [
        ("set", 4, 1, "alice (referee)"),
        ("revoke", 1, 4, "bob"),
    ]
    assert PlacementOverride.select().count() == 0


def test_changing_an_override_records_a_second_entry(four_teams: Catalog) -> None:
    override(four_teams, team_id="d", rank=1)
    override(four_teams, team_id="d", rank=2)
    assert ranks() == list("adbc")
    assert [(e["old_rank"], e["new_rank"]) for e in override_trail(SCOPE)] == [(4, 1), (1, 2)]


def test_an_older_command_is_stale_but_an_operators_applies(four_teams: Catalog) -> None:
    # given: a staff tool's override, then one dated earlier from the same (privileged, not operator) tool
    tool = Sender(publisher="staff-tool", privileged=True)
    override(four_teams, team_id="d", rank=1, sender=tool)

    # when
    late = override(four_teams, team_id="d", rank=2, sender=tool, minutes=-10)
    operator = override(four_teams, team_id="d", rank=3, minutes=-10)

    # then
    assert (late.outcome, operator.outcome) == ("stale", "applied")
    assert ranks() == list("abdc")
    assert [e["via"] for e in override_trail(SCOPE)] == ["/staff-tool (staff-tool)", "/staff-tool"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"team_id": "d", "rank": 1, "reason": ...}, "reason is required"),
        ({"team_id": "d", "rank": 1, "reason": "   "}, "reason is required"),
        ({"team_id": "d", "rank": 1, "actor": ...}, "actor is required"),
        ({"team_id": "d", "rank": 1, "actor": "a\nb"}, "actor must be a single line"),
        ({"team_id": "d", "rank": ...}, "rank is required"),
        ({"team_id": "d", "rank": 0}, "rank must be an integer of 1 or more"),
        ({"team_id": "d", "rank": True}, "rank must be an integer of 1 or more"),
        ({"team_id": "d", "rank": 5}, "rank 5 is past the last: tournament:t1 has 4 teams"),
        ({"team_id": "z", "rank": 1}, "team_id 'z' has no result in tournament:t1"),
        ({"team_id": "d", "rank": 1, "scope": "overall"}, 'scope must be "tournament:<id>"'),
        ({"team_id": "d", "rank": 1, "scope": "tournament:nope"}, "no match result names tournament 'nope'"),
        ({"team_id": "d", "rank": 1, "note": "x"}, "unknown fields"),
    ],
)
def test_a_malformed_override_is_refused_with_a_clear_reason_and_records_nothing(
    four_teams: Catalog, data: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidEvent, match=re.escape(reason)):
        override(four_teams, **data)
    assert OverrideEntry.select().count() == 0 and ranks() == list("abcd")


def test_a_rank_another_override_holds_is_refused_until_that_one_is_revoked(four_teams: Catalog) -> None:
    # given
    override(four_teams, team_id="d", rank=1)

    # when / then
    with pytest.raises(InvalidEvent, match="rank 1 of tournament:t1 is already given to 'd' by an override"):
        override(four_teams, team_id="c", rank=1)
    override(four_teams, team_id="d", rank=None)
    assert override(four_teams, team_id="c", rank=1).outcome == "applied"
    assert ranks() == list("cabd")
