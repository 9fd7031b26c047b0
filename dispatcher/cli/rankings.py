"""`tidings rankings …` and `tidings series …`: standings, placement overrides and their audit trail, series."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from dispatcher.cli.console import Context, print_json, print_table
from dispatcher.cli.progress import Reporter
from dispatcher.commands.overrides import COMMAND as OVERRIDE_COMMAND
from dispatcher.commands.overrides import UNCHANGED
from dispatcher.core import clock
from dispatcher.core.errors import TidingsError
from dispatcher.rankings.ledger import (
    latest_snapshot,
    override_trail,
    rank_changes,
    recompute,
    series_summary,
    snapshot,
)
from dispatcher.rankings.notices import ANNOUNCE_WINDOW, announce
from dispatcher.rankings.series import DECIDED, DRAWN, SeriesSummary, majority
from dispatcher.rankings.standings import OVERALL, tournament_scope
from dispatcher.storage.models import MatchResult, RankingSnapshot

OVERALL_COLUMNS = ["rank", "team", "points", "wins", "losses"]
TOURNAMENT_COLUMNS = ["rank", "team", "points", "kills", "best_placement"]
TRAIL_COLUMNS = ["at", "team", "action", "old_rank", "new_rank", "actor", "reason", "via"]
TOURNAMENT = tournament_scope("")


# --- standings ----------------------------------------------------------------


def cmd_rankings_show(ctx: Context, args: argparse.Namespace) -> int:
    scope = _shown_scope(args)
    ctx.database()
    latest = latest_snapshot(scope)
    if latest is None:
        _require_tournament(scope)
    found = latest if args.version is None else _version(scope, latest, args.version)
    if args.json:
        print_json(
            {
                "scope": scope,
                "version": found.version if found else None,
                "computed_at": found.computed_at.isoformat() + "Z" if found else None,
                "standings": found.standings if found else [],
            }
        )
        return 0
    if found is None:
        print(f"no standings for {scope} yet (`tidings rankings recompute` computes them from the results)")
        return 0
    newest = f" (the latest is version {latest.version})" if latest and latest.version != found.version else ""
    print(f"{scope}, version {found.version}{newest}, computed {found.computed_at.isoformat()}Z")
    _print_lines(scope, found.standings)
    return 0


def cmd_rankings_recompute(ctx: Context, args: argparse.Namespace) -> int:
    ctx.database()
    with Reporter("recomputing the standings") as progress:
        changes = recompute(progress=progress)
    rows = [
        {
            "scope": c.scope,
            "team": c.team_id,
            "old_rank": c.old_rank if c.old_rank is not None else "new",
            "new_rank": c.new_rank,
            "points": c.points,
        }
        for c in changes
    ]
    print(f"{len(changes)} rank change(s)")
    if rows:
        print_table(rows, ["scope", "team", "old_rank", "new_rank", "points"])
    with Reporter("announcing rank changes") as progress:
        announced = announce(ctx.settings, since=clock.now() - ANNOUNCE_WINDOW, progress=progress)
    print(f"published {announced} ranking.changed and series.completed event(s) (each once, whoever publishes it)")
    return 0


def _shown_scope(args: argparse.Namespace) -> str:
    """SCOPE, or --tournament's, or overall."""
    if args.scope is not None and args.tournament is not None:
        raise TidingsError("give SCOPE or --tournament, not both")
    if args.tournament is not None:
        return tournament_scope(args.tournament)
    return OVERALL if args.scope is None else _scope(args.scope)


def _scope(text: str) -> str:
    """``text`` if it is a scope: "overall" or "tournament:<id>"."""
    if text == OVERALL or (text.startswith(TOURNAMENT) and text.removeprefix(TOURNAMENT)):
        return text
    raise TidingsError(f'no scope {text!r}: a scope is "overall" or "tournament:<id>"')


def _require_tournament(scope: str) -> None:
    """TidingsError when ``scope`` is a tournament that no match result names."""
    tournament_id = scope.removeprefix(TOURNAMENT)
    if scope != OVERALL and not MatchResult.select().where(MatchResult.tournament_id == tournament_id).exists():
        raise TidingsError(f"no tournament {tournament_id!r}: no match result names it")


def _version(scope: str, latest: RankingSnapshot | None, version: int) -> RankingSnapshot:
    """That version of ``scope``'s standings; versions run from 1 to the latest's."""
    # checked against the latest first: a version past SQLite's integers could not even be looked up
    found = snapshot(scope, version) if latest is not None and 1 <= version <= latest.version else None
    if found is None:
        known = f"its versions are 1 to {latest.version}" if latest else "it has no standings yet"
        raise TidingsError(f"no version {version} of {scope}'s standings: {known}")
    return found


def _print_lines(scope: str, rows: list[dict[str, Any]]) -> None:
    """The standings table; the column ``override`` shows who set a line's rank, when one did."""
    columns = list(OVERALL_COLUMNS if scope == OVERALL else TOURNAMENT_COLUMNS)
    if any(row.get("override") for row in rows):
        columns.append("override")
    print_table([{**row, "team": _team(row), "override": _override_cell(row)} for row in rows], columns)


def _override_cell(row: dict[str, Any]) -> str | None:
    override = row.get("override")
    return f"set by {override['actor']} (computed #{override['computed_rank']})" if override else None


def _team(row: dict[str, Any]) -> str:
    name = row.get("team_name")
    return f"{name} ({row['team_id']})" if name and name != row["team_id"] else row["team_id"]


# --- placement overrides --------------------------------------------------------


def cmd_rankings_override(ctx: Context, args: argparse.Namespace) -> int:
    """Set or revoke a team's final rank through tidings.standings.override, which checks what it is given."""
    ctx.database()
    before = latest_snapshot(args.scope)
    rank = None if args.revoke else args.rank
    data = {"scope": args.scope, "team_id": args.team, "rank": rank, "reason": args.reason, "actor": args.actor}
    outcome = ctx.command(OVERRIDE_COMMAND, data)
    after = latest_snapshot(args.scope)
    rows = after.standings if after else []
    row = next((r for r in rows if r["team_id"] == args.team), None)
    print(f"{outcome}: {_override_outcome(outcome, args, row)}")
    if row is None:
        print(f"no standings for {args.scope} yet (`tidings rankings recompute` computes them from the results)")
        return 0
    _print_lines(args.scope, [row])
    if before is not None and after is not None and after.version != before.version:
        moved = rank_changes(args.scope, before.standings, after.standings, version=after.version)
        print(f"{len(moved)} rank change(s), each a ranking.changed event:")
        print_table(
            [{"team": c.team_id, "old_rank": c.old_rank, "new_rank": c.new_rank} for c in moved],
            ["team", "old_rank", "new_rank"],
        )
    return 0


def _override_outcome(outcome: str, args: argparse.Namespace, row: dict[str, Any] | None) -> str:
    team = _team(row) if row else args.team
    if outcome == UNCHANGED:
        if args.revoke:
            return f"{team} has no override in {args.scope} to revoke"
        return f"{team} already has rank {args.rank} in {args.scope} by an override"
    if outcome != "applied":  # "stale": an operator's command never is
        return f"a newer override of {team} in {args.scope} is recorded"
    if args.revoke:
        back = f": back to its computed rank {row['rank']}" if row else ""
        return f"the override of {team} in {args.scope} is revoked{back}"
    return f"{team} has rank {args.rank} in {args.scope}, set by {args.actor}"


def cmd_rankings_overrides(ctx: Context, args: argparse.Namespace) -> int:
    scope = _scope(args.scope)
    if scope == OVERALL:
        raise TidingsError('the overall rankings have no overrides: a final placement belongs to "tournament:<id>"')
    ctx.database()
    _require_tournament(scope)
    trail = override_trail(scope)
    if args.json:
        print_json({"scope": scope, "entries": trail})
    else:
        print_table([{**entry, "team": entry["team_id"]} for entry in trail], TRAIL_COLUMNS)
    return 0


# --- series ---------------------------------------------------------------------------


def cmd_series_show(ctx: Context, args: argparse.Namespace) -> int:
    ctx.database()
    summary = series_summary(args.series_id)
    if summary is None:
        raise TidingsError(f"no series {args.series_id!r}: no match result names it")
    if args.json:
        print_json(summary.to_dict())
        return 0
    shown = summary.to_dict()
    print(f"series {summary.series_id} of tournament {summary.tournament_id}, best of {summary.best_of}")
    print(_series_status(summary))
    print_table(
        [{"team": _team(team), "wins": team["wins"]} for team in shown["teams"]],
        ["team", "wins"],
    )
    names = {team["team_id"]: team for team in shown["teams"]}
    print_table(
        [
            {
                "match": game["match_id"],
                "completed_at": game["completed_at"],
                "winner": _team(names.get(game["winner"], {"team_id": game["winner"]})) if game["winner"] else None,
                "score": _game_score(game),
                "counted": "yes" if game["counted"] else f"no: {game['note']}",
            }
            for game in shown["games"]
        ],
        ["match", "completed_at", "winner", "score", "counted"],
    )
    return 0


def _series_status(summary: SeriesSummary) -> str:
    if summary.status == DECIDED and summary.winner is not None:
        winner = _team({"team_id": summary.winner, "team_name": summary.team_name(summary.winner)})
        at = f", {summary.decided_at.isoformat()}Z" if summary.decided_at else ""
        return f"decided: {winner} won it {summary.score(summary.winner)} by {summary.decided_by}{at}"
    if summary.status == DRAWN:
        return f"drawn: all {summary.best_of} game(s) played, no team won {majority(summary.best_of)}"
    return f"in progress: the first to {majority(summary.best_of)} win(s) wins it"


def _game_score(game: dict[str, Any]) -> str:
    score = ", ".join(f"{team} {_number(points)}" for team, points in game["score"].items())
    return f"{score}; {game['forfeit']} forfeits the series" if game["forfeit"] else score


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --- parsers ----------------------------------------------------------------------------


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """The `rankings` subcommands."""
    rankings = sub.add_parser("rankings", help="team rankings").add_subparsers(dest="action", required=True)
    p = command(rankings, "show", cmd_rankings_show, "show the standings: overall, or one tournament's")
    p.add_argument("scope", nargs="?", metavar="SCOPE", help='"overall" (the default) or "tournament:<id>"')
    p.add_argument("--tournament", metavar="ID", help="the battle-royale standings of this tournament")
    p.add_argument("--version", type=int, metavar="N", help="that snapshot of the standings (default: the latest)")
    p.add_argument("--json", action="store_true")
    command(rankings, "recompute", cmd_rankings_recompute, "recompute the standings now and list who moved")

    p = command(rankings, "override", cmd_rankings_override, "set (or --revoke) a team's final rank in a tournament")
    p.add_argument("scope", metavar="SCOPE", help='"tournament:<id>"')
    p.add_argument("team", metavar="TEAM", help="the team's id")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("rank", nargs="?", type=int, metavar="RANK", help="the rank to give it (1 or more)")
    given.add_argument("--revoke", action="store_true", help="give the team back its computed rank")
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (kept in the audit trail)")
    p.add_argument("--actor", required=True, metavar="NAME", help="who decided it (kept in the audit trail)")

    p = command(rankings, "overrides", cmd_rankings_overrides, "show the audit trail of a tournament's overrides")
    p.add_argument("scope", metavar="SCOPE", help='"tournament:<id>"')
    p.add_argument("--json", action="store_true")


def add_series_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """The `series` subcommands."""
    series = sub.add_parser("series", help="best-of series").add_subparsers(dest="action", required=True)
    p = command(series, "show", cmd_series_show, "show a series: who won it and how, and each game, counted or why not")
    p.add_argument("series_id", metavar="ID")
    p.add_argument("--json", action="store_true")
