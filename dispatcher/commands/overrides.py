"""tidings.standings.override: staff set (or revoke) a team's final rank in a tournament, with an audit trail.

Data: ``scope`` ("tournament:<id>"), ``team_id``, ``rank`` (an integer of 1 or more; null revokes the
team's override), ``reason`` and ``actor`` (who decided it), both required. Each set, change or revoke
writes one audit entry (who, why, when, how it came, the rank before and after); the same override
twice, or revoking what is not overridden, changes nothing and writes nothing ("unchanged"). A command
older than the team's last entry is "stale", unless an operator's.

The standings are not recomputed here: the rankings layer does that in the same transaction (its
ingest hook for this type), and announces the rank changes once committed.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from dispatcher.commands.base import Command
from dispatcher.core.errors import InvalidCommand
from dispatcher.core.events import MAX_ID_LENGTH
from dispatcher.storage.models import MatchResult, OverrideEntry, PlacementOverride, RankingSnapshot

COMMAND = "tidings.standings.override"
TOURNAMENT_PREFIX = "tournament:"
MAX_REASON = 1000
MAX_ACTOR = 255
UNCHANGED = "unchanged"


def override_placement(command: Command) -> str:
    """Apply one override command: "applied", "unchanged" or "stale"; InvalidCommand says what is wrong."""
    data = command.data
    unknown = set(data) - {"scope", "team_id", "rank", "reason", "actor"}
    if unknown:
        raise InvalidCommand(f"{COMMAND}: unknown fields {sorted(unknown)[:10]}")
    scope = _scope(data.get("scope"))
    team_id = _identifier(data.get("team_id"), "team_id")
    rank = data.get("rank", ...)
    if rank is ...:
        raise InvalidCommand(f"{COMMAND}: rank is required: an integer of 1 or more, or null to revoke")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise InvalidCommand(f"{COMMAND}: rank must be an integer of 1 or more, or null to revoke")
    reason = _text(data.get("reason"), "reason", MAX_REASON)
    actor = _text(data.get("actor"), "actor", MAX_ACTOR)
    teams = tournament_teams(scope.removeprefix(TOURNAMENT_PREFIX))
    if not teams:
        raise InvalidCommand(f"{COMMAND}: no match result names tournament {scope.removeprefix(TOURNAMENT_PREFIX)!r}")
    if team_id not in teams:
        raise InvalidCommand(f"{COMMAND}: team_id {team_id!r} has no result in {scope}")
    last = (
        OverrideEntry.select()
        .where(OverrideEntry.scope == scope, OverrideEntry.team_id == team_id)
        .order_by(OverrideEntry.at.desc(), OverrideEntry.id.desc())
        .first()
    )
    if last is not None and command.changed_at < last.at and not command.sender.operator:
        return "stale"
    current = PlacementOverride.get_or_none(PlacementOverride.scope == scope, PlacementOverride.team_id == team_id)
    before = current_rank(scope, team_id)
    if rank is None:
        if current is None:
            return UNCHANGED
        current.delete_instance()
    else:
        if current is not None and current.rank == rank:
            return UNCHANGED
        if rank > len(teams):
            raise InvalidCommand(f"{COMMAND}: rank {rank} is past the last: {scope} has {len(teams)} teams")
        holder = PlacementOverride.get_or_none(
            PlacementOverride.scope == scope, PlacementOverride.rank == rank, PlacementOverride.team_id != team_id
        )
        if holder is not None:
            raise InvalidCommand(
                f"{COMMAND}: rank {rank} of {scope} is already given to {holder.team_id!r} by an override: "
                "revoke that one first"
            )
        values = {"rank": rank, "reason": reason, "actor": actor, "changed_at": command.changed_at}
        PlacementOverride.insert(scope=scope, team_id=team_id, **values).on_conflict(
            conflict_target=[PlacementOverride.scope, PlacementOverride.team_id],
            update={getattr(PlacementOverride, name): value for name, value in values.items()},
        ).execute()
    OverrideEntry.create(
        scope=scope,
        team_id=team_id,
        action="set" if rank is not None else "revoke",
        old_rank=before,
        new_rank=rank,  # a revoke's is the computed rank: the rankings hook fills it in when it has recomputed
        reason=reason,
        actor=actor,
        via=_via(command),
        at=command.changed_at,
    )
    return "applied"


def tournament_teams(tournament_id: str) -> set[str]:
    """The team ids of every result recorded for ``tournament_id``."""
    query = MatchResult.select(MatchResult.participants).where(MatchResult.tournament_id == tournament_id)
    return {placing["team_id"] for row in query for placing in row.participants}


def current_rank(scope: str, team_id: str) -> int | None:
    """The team's rank in the latest standings of ``scope``, as published (None: none yet)."""
    snapshot = (
        RankingSnapshot.select().where(RankingSnapshot.scope == scope).order_by(RankingSnapshot.version.desc()).first()
    )
    rows: list[dict[str, Any]] = snapshot.standings if snapshot else []
    return next((row["rank"] for row in rows if row["team_id"] == team_id), None)


def _scope(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(TOURNAMENT_PREFIX):
        raise InvalidCommand(
            f'{COMMAND}: scope must be "tournament:<id>": a final placement belongs to a tournament '
            "(the overall rankings are computed from every match)"
        )
    _identifier(value.removeprefix(TOURNAMENT_PREFIX), "scope's tournament id")
    return value


def _identifier(value: object, name: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise InvalidCommand(f"{COMMAND}: {name} must be a string of 1 to {MAX_ID_LENGTH} characters")
    return value


def _text(value: object, name: str, limit: int) -> str:
    """A required single line: a reason or an actor."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidCommand(f"{COMMAND}: {name} is required: an override says who decided it and why")
    if not isinstance(value, str) or len(value) > limit or any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
        raise InvalidCommand(f"{COMMAND}: {name} must be a single line of at most {limit} characters")
    return value.strip()


def _via(command: Command) -> str:
    """How the command came: its source, and the publisher when it had one."""
    publisher = command.sender.publisher
    return f"{command.source[:500]} ({publisher[:400]})" if publisher else command.source[:1000]
