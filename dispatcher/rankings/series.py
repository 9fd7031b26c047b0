"""Series summaries (best of 1, 3, 5 or 7): pure functions over the series' games, no database.

A series is the games whose match.completed carry the same ``series_id``. They are taken in order
of completion (then the order they were recorded), whatever order they arrived in, and each game
is either counted or flagged with the reason it is not:

- the series was already decided (a team had the majority, or the other team forfeited);
- the series has had its ``best_of`` games (every one of them a draw, say);
- its ``best_of`` differs from the series' (set by its first game), or so do its teams;
- its ``match_id`` is one already counted (the same game reported twice under two event ids).

A counted game's winner scores one win. The first team to ``best_of // 2 + 1`` wins (2 of 3,
3 of 5) wins the series; a counted game with ``forfeit`` (the team that forfeits the series)
decides it at once for the game's winner. A flagged game stays in the summary, with its reason,
and counts in no standings (see rankings.ledger).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from dispatcher.core.results import Placing

IN_PROGRESS = "in_progress"
DECIDED = "decided"
DRAWN = "drawn"  # every game played, no majority: only draws can do that


@dataclasses.dataclass(frozen=True)
class SeriesGame:
    """One game of a series, as the ledger holds it (times naive UTC)."""

    result_id: int  # the ledger row: recording order, after completion time
    tournament_id: str
    match_id: str | None
    winner: str | None
    participants: tuple[Placing, ...]
    best_of: int
    completed_at: dt.datetime
    forfeit: str | None = None  # the team that forfeited the series with this game


@dataclasses.dataclass(frozen=True)
class GameLine:
    """A game as the summary shows it: counted, or not and why."""

    game: SeriesGame
    counted: bool
    note: str | None = None


@dataclasses.dataclass(frozen=True)
class SeriesSummary:
    series_id: str
    tournament_id: str
    best_of: int
    teams: tuple[tuple[str, str | None], ...]  # (team_id, team_name), in the order the first game lists them
    wins: dict[str, int]
    winner: str | None
    decided_by: str | None  # "majority" or "forfeit"
    decided_at: dt.datetime | None
    games: tuple[GameLine, ...]

    @property
    def status(self) -> str:
        if self.winner is not None:
            return DECIDED
        return DRAWN if sum(line.counted for line in self.games) >= self.best_of else IN_PROGRESS

    def team_name(self, team_id: str) -> str:
        return dict(self.teams).get(team_id) or team_id

    def score(self, team_id: str) -> str:
        """The series score from ``team_id``'s side: "2-1"; with more than two teams, its wins then the best other's."""
        return _score(self.wins, team_id)

    def to_dict(self) -> dict[str, Any]:
        """The summary as the API and `tidings series show --json` give it (times ISO 8601, UTC)."""
        return {
            "series_id": self.series_id,
            "tournament_id": self.tournament_id,
            "best_of": self.best_of,
            "status": self.status,
            "winner": self.winner,
            "winner_name": self.team_name(self.winner) if self.winner else None,
            "decided_by": self.decided_by,
            "decided_at": _iso(self.decided_at),
            "teams": [
                {"team_id": team, "team_name": name, "wins": self.wins.get(team, 0)} for team, name in self.teams
            ],
            "games": [
                {
                    "match_id": line.game.match_id,
                    "winner": line.game.winner,
                    "score": {p.team_id: p.score for p in line.game.participants},
                    "forfeit": line.game.forfeit,
                    "completed_at": _iso(line.game.completed_at),
                    "counted": line.counted,
                    "note": line.note,
                }
                for line in self.games
            ],
        }


def majority(best_of: int) -> int:
    """The wins that decide a series: 1 of 1, 2 of 3, 3 of 5, 4 of 7."""
    return best_of // 2 + 1


def summarize(series_id: str, games: Sequence[SeriesGame]) -> SeriesSummary:
    """The series as its games (at least one) say, counted or flagged by the rules above."""
    if not games:
        raise ValueError("a series has at least one game")
    ordered = sorted(games, key=lambda g: (g.completed_at, g.result_id))
    first = ordered[0]
    teams = tuple((p.team_id, p.team_name) for p in first.participants)
    names = dict(teams)
    team_ids = {team for team, _ in teams}
    wins = dict.fromkeys(names, 0)
    winner: str | None = None
    decided_by: str | None = None
    decided_at: dt.datetime | None = None
    counted_matches: set[str] = set()
    counted = 0
    lines: list[GameLine] = []
    for game in ordered:
        note = None
        if winner is not None:
            note = f"the series was already decided: {names.get(winner) or winner} won it {_score(wins, winner)}"
        elif counted >= first.best_of:
            note = f"the series has had its {first.best_of} game(s)"
        elif game.best_of != first.best_of:
            note = f"best_of {game.best_of} differs from the series' {first.best_of} (its first game's)"
        elif game.tournament_id != first.tournament_id:
            note = f"tournament {game.tournament_id!r} differs from the series' {first.tournament_id!r}"
        elif {p.team_id for p in game.participants} != team_ids:
            note = f"its teams differ from the series' ({', '.join(sorted(team_ids))})"
        elif game.match_id is not None and game.match_id in counted_matches:
            note = f"match {game.match_id!r} is already counted"
        if note is not None:
            lines.append(GameLine(game, counted=False, note=note))
            continue
        counted += 1
        if game.match_id is not None:
            counted_matches.add(game.match_id)
        for p in game.participants:
            names[p.team_id] = p.team_name or names.get(p.team_id)
        if game.winner is not None:
            wins[game.winner] += 1
        if game.forfeit is not None and game.winner is not None:
            winner, decided_by, decided_at = game.winner, "forfeit", game.completed_at
        elif game.winner is not None and wins[game.winner] >= majority(first.best_of):
            winner, decided_by, decided_at = game.winner, "majority", game.completed_at
        lines.append(GameLine(game, counted=True))
    return SeriesSummary(
        series_id=series_id,
        tournament_id=first.tournament_id,
        best_of=first.best_of,
        teams=tuple((team, names.get(team)) for team, _ in teams),
        wins=wins,
        winner=winner,
        decided_by=decided_by,
        decided_at=decided_at,
        games=tuple(lines),
    )


def _score(wins: dict[str, int], team_id: str) -> str:
    others = [count for team, count in wins.items() if team != team_id]
    return f"{wins.get(team_id, 0)}-{max(others, default=0)}"


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "Z"
