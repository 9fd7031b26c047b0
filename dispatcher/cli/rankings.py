"""`tidings rankings …`: show the standings, or recompute them now."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from dispatcher.cli.console import Context, print_json, print_table
from dispatcher.cli.progress import Reporter
from dispatcher.core import clock
from dispatcher.core.errors import TidingsError
from dispatcher.rankings.ledger import latest_snapshot, recompute
from dispatcher.rankings.notices import ANNOUNCE_WINDOW, announce
from dispatcher.rankings.standings import OVERALL, tournament_scope
from dispatcher.storage.models import MatchResult

OVERALL_COLUMNS = ["rank", "team", "points", "wins", "losses"]
TOURNAMENT_COLUMNS = ["rank", "team", "points", "kills", "best_placement"]


def cmd_rankings_show(ctx: Context, args: argparse.Namespace) -> int:
    ctx.database()
    scope = tournament_scope(args.tournament) if args.tournament else OVERALL
    snapshot = latest_snapshot(scope)
    rows = snapshot.standings if snapshot else []
    if args.json:
        print_json(
            {
                "scope": scope,
                "version": snapshot.version if snapshot else None,
                "computed_at": snapshot.computed_at.isoformat() + "Z" if snapshot else None,
                "standings": rows,
            }
        )
        return 0
    if snapshot is None:
        if args.tournament and not MatchResult.select().where(MatchResult.tournament_id == args.tournament).exists():
            raise TidingsError(f"no tournament {args.tournament!r}: no match result names it")
        print(f"no standings for {scope} yet (`tidings rankings recompute` computes them from the results)")
        return 0
    print(f"{scope}, version {snapshot.version}, computed {snapshot.computed_at.isoformat()}Z")
    columns = TOURNAMENT_COLUMNS if args.tournament else OVERALL_COLUMNS
    print_table([{**row, "team": _team(row)} for row in rows], columns)
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
    print(f"published {announced} ranking.changed event(s) (each change once, whoever publishes it)")
    return 0


def _team(row: dict[str, Any]) -> str:
    name = row.get("team_name")
    return f"{name} ({row['team_id']})" if name and name != row["team_id"] else row["team_id"]


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """The `rankings` subcommands."""
    rankings = sub.add_parser("rankings", help="team rankings").add_subparsers(dest="action", required=True)
    p = command(rankings, "show", cmd_rankings_show, "show the latest standings: overall, or one tournament's")
    p.add_argument("--tournament", metavar="ID", help="the battle-royale standings of this tournament")
    p.add_argument("--json", action="store_true")
    command(rankings, "recompute", cmd_rankings_recompute, "recompute the standings now and list who moved")
