"""Standings computed from match results: pure functions over plain values, no database.

Two kinds of scope:

- **overall**: every match counts. The winner of a match gets ``win_points`` and a win; every other
  participant gets a loss. Ties: more points, then more wins, then fewer losses, then who got there first.
- **tournament:<id>** (battle royale): a team earns ``placement_points.get(placement, 0)
  + points_per_kill * kills`` per match of that tournament. Ties: more points, then more kills, then the
  best (lowest) placement, then who got there first.

"Got there first" is ``reached_at``: the completion time of the last match that changed the team's total
(its first match when the total never changed, a team with no points at all say). Matches are taken in
ledger order (completion time, then the order they were recorded), so this is deterministic. When even
that ties (two teams that scored in the same match), team ids in string order decide: ranks are 1..n,
never shared.

Staff may override a team's final rank in a tournament scope (:func:`apply_overrides`): the team takes
that rank, the others keep their computed order around it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from dispatcher.core.results import Placing

#: Battle-royale points per placement; placements not listed earn nothing.
DEFAULT_PLACEMENT_POINTS: Mapping[int, float] = {1: 12, 2: 9, 3: 7, 4: 5, 5: 4, 6: 3, 7: 2, 8: 1}
DEFAULT_POINTS_PER_KILL = 1.0
DEFAULT_WIN_POINTS = 3.0
OVERALL = "overall"


def tournament_scope(tournament_id: str) -> str:
    return f"tournament:{tournament_id}"


@dataclasses.dataclass(frozen=True)
class MatchRecord:
    """One completed match, as the ledger holds it (times naive UTC)."""

    tournament_id: str
    winner: str | None
    participants: tuple[Placing, ...]
    completed_at: dt.datetime


@dataclasses.dataclass
class _Tally:
    team_id: str
    team_name: str | None = None
    points: float = 0.0
    wins: int = 0
    losses: int = 0
    kills: int = 0
    best_placement: int | None = None
    matches: int = 0
    reached_at: dt.datetime | None = None

    def add(self, placing: Placing, points: float, at: dt.datetime) -> None:
        before = self.points
        self.points = _number(self.points + points)
        self.matches += 1
        if self.reached_at is None or self.points != before:
            self.reached_at = at
        if placing.team_name:
            self.team_name = placing.team_name


def overall_standings(
    matches: Sequence[MatchRecord], *, win_points: float = DEFAULT_WIN_POINTS
) -> list[dict[str, Any]]:
    """Rows ``{rank, team_id, team_name, points, wins, losses, matches, reached_at}``, best first."""
    tallies: dict[str, _Tally] = {}
    for match in matches:
        for placing in match.participants:
            tally = tallies.setdefault(placing.team_id, _Tally(placing.team_id))
            won = placing.team_id == match.winner
            tally.add(placing, win_points if won else 0.0, match.completed_at)
            tally.wins += won
            tally.losses += not won
    ordered = sorted(tallies.values(), key=lambda t: (-t.points, -t.wins, t.losses, t.reached_at, t.team_id))
    return [
        {
            "rank": rank,
            "team_id": t.team_id,
            "team_name": t.team_name,
            "points": t.points,
            "wins": t.wins,
            "losses": t.losses,
            "matches": t.matches,
            "reached_at": _iso(t.reached_at),
        }
        for rank, t in enumerate(ordered, start=1)
    ]


def battle_royale_standings(
    matches: Sequence[MatchRecord],
    *,
    placement_points: Mapping[int, float] = DEFAULT_PLACEMENT_POINTS,
    points_per_kill: float = DEFAULT_POINTS_PER_KILL,
) -> list[dict[str, Any]]:
    """Rows ``{rank, team_id, team_name, points, kills, best_placement, matches, reached_at}``, best first.

    ``matches`` are one tournament's.
    """
    tallies: dict[str, _Tally] = {}
    for match in matches:
        for placing in match.participants:
            tally = tallies.setdefault(placing.team_id, _Tally(placing.team_id))
            points = placement_points.get(placing.placement, 0) + points_per_kill * placing.kills
            tally.add(placing, points, match.completed_at)
            tally.kills += placing.kills
            if tally.best_placement is None or placing.placement < tally.best_placement:
                tally.best_placement = placing.placement
    ordered = sorted(tallies.values(), key=lambda t: (-t.points, -t.kills, t.best_placement, t.reached_at, t.team_id))
    return [
        {
            "rank": rank,
            "team_id": t.team_id,
            "team_name": t.team_name,
            "points": t.points,
            "kills": t.kills,
            "best_placement": t.best_placement,
            "matches": t.matches,
            "reached_at": _iso(t.reached_at),
        }
        for rank, t in enumerate(ordered, start=1)
    ]


def all_standings(
    matches: Sequence[MatchRecord],
    *,
    placement_points: Mapping[int, float] = DEFAULT_PLACEMENT_POINTS,
    points_per_kill: float = DEFAULT_POINTS_PER_KILL,
    win_points: float = DEFAULT_WIN_POINTS,
) -> dict[str, list[dict[str, Any]]]:
    """Every scope's standings: overall, and one per tournament in the ledger."""
    scopes = {OVERALL: overall_standings(matches, win_points=win_points)}
    by_tournament: dict[str, list[MatchRecord]] = {}
    for match in matches:
        by_tournament.setdefault(match.tournament_id, []).append(match)
    for tournament_id, played in by_tournament.items():
        scopes[tournament_scope(tournament_id)] = battle_royale_standings(
            played, placement_points=placement_points, points_per_kill=points_per_kill
        )
    return scopes


@dataclasses.dataclass(frozen=True)
class Override:
    """A team's final rank as staff set it (rankings/overrides.py)."""

    rank: int
    reason: str
    actor: str
    at: dt.datetime  # naive UTC


def apply_overrides(rows: Sequence[dict[str, Any]], overrides: Mapping[str, Override]) -> list[dict[str, Any]]:
    """``rows`` (best first) with each overridden team at its rank, and the others in their order around them.

    An overridden row says so: ``override: {computed_rank, reason, actor, at}``. A rank past the last
    is the last; two overrides wanting one rank (they are refused when set, so only after a team left
    the standings) go by rank, then time, then team id, the later to the next free rank. An override
    of a team with no row changes nothing.
    """
    if not overrides:
        return [dict(row) for row in rows]
    present = {row["team_id"]: row for row in rows}
    chosen = sorted(
        ((team, o) for team, o in overrides.items() if team in present),
        key=lambda item: (item[1].rank, item[1].at, item[0]),
    )
    slots: list[dict[str, Any] | None] = [None] * len(rows)
    for team, override in chosen:
        wanted = min(override.rank, len(rows)) - 1
        free = [i for i, slot in enumerate(slots) if slot is None]
        index = next((i for i in free if i >= wanted), free[-1])
        slots[index] = {
            **present[team],
            "override": {
                "computed_rank": present[team]["rank"],
                "reason": override.reason,
                "actor": override.actor,
                "at": _iso(override.at),
            },
        }
    others = iter(row for row in rows if row["team_id"] not in overrides)
    placed = [slot if slot is not None else dict(next(others)) for slot in slots]
    return [{**row, "rank": rank} for rank, row in enumerate(placed, start=1)]


def _number(value: float) -> float:
    """Rounded so that 0.1 + 0.2 ties with 0.3; whole numbers as int (``12``, not ``12.0``, in notices)."""
    rounded = round(value, 6)
    return int(rounded) if rounded == int(rounded) else rounded


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "Z"
