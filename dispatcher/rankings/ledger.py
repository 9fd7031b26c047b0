"""The rankings ledger: match results, series, versioned standings snapshots, placement overrides.

``match.completed`` feeds the ledger (see :func:`record_result` for the data it reads). A recompute
derives every scope's standings from the whole ledger (rankings/standings.py), puts staff's placement
overrides over them, keeps each version it writes, and reports the teams whose rank moved; notices.py
turns those into ``ranking.changed`` events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from peewee import fn

from dispatcher.core import clock
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import CloudEvent
from dispatcher.core.results import Placing, check_best_of, check_identifier, parse_participants
from dispatcher.rankings.series import SeriesGame, SeriesSummary, summarize
from dispatcher.rankings.standings import (
    DEFAULT_PLACEMENT_POINTS,
    DEFAULT_POINTS_PER_KILL,
    DEFAULT_WIN_POINTS,
    MatchRecord,
    Override,
    all_standings,
    apply_overrides,
    tournament_scope,
)
from dispatcher.storage.db import database, is_sqlite, transaction
from dispatcher.storage.models import Event, MatchResult, OverrideEntry, PlacementOverride, RankingSnapshot

log = structlog.get_logger("tidings.rankings")

#: A scope ("tournament:<id>") is stored in 255 characters, so a tournament id has at most 244.
MAX_SCOPE_LENGTH = 255
MAX_TOURNAMENT_ID = MAX_SCOPE_LENGTH - len(tournament_scope(""))


@dataclasses.dataclass(frozen=True)
class RankChange:
    """A team whose rank moved in one scope between two snapshot versions."""

    scope: str  # "overall" or "tournament:<id>"
    team_id: str
    old_rank: int | None  # None: the team is new in that scope
    new_rank: int
    points: float
    version: int = 0  # the snapshot version that recorded the move: part of the notice's id
    team_name: str | None = None


# --- the ledger ---------------------------------------------------------------


def record_result(event: CloudEvent, event_row_id: int) -> bool:
    """Add a ``match.completed`` to the ledger, once per event; call it inside the ingest transaction.

    The data it reads (beyond the catalog's ``tournament_name`` and ``winner_name``)::

        tournament_id  string, 1-255 characters
        match_id       optional string
        winner         the winning team's id, or null (it must be one of the participants)
        participants   [{team_id: string, score: number, placement: int >= 1, kills: int >= 0,
                         team_name: optional string}, ...], each team once
        series_id      optional string: the game belongs to this series (rankings/series.py)
        best_of        1, 3, 5 or 7: required with series_id, and only with it
        forfeit        optional, with series_id: the team that forfeits the series (a participant,
                       not the winner, and the game needs a winner)

    The completion time is the event's ``time``, else now (when it is received). An event without
    ``tournament_id`` or ``participants`` is still a valid notification but is not recorded: this logs
    why and returns False. Malformed ledger data raises InvalidEvent, which rolls the ingest back.
    """
    data = event.data
    missing = [key for key in ("tournament_id", "participants") if data.get(key) is None]
    if missing:
        log.info(
            "match_result_not_recorded",
            event_id=event.id,
            source=event.source,
            reason=f"data has no {' and no '.join(missing)}",
        )
        return False
    tournament_id = check_identifier(data["tournament_id"], "data.tournament_id")
    if len(tournament_scope(tournament_id)) > MAX_SCOPE_LENGTH:
        raise InvalidEvent(
            f"data.tournament_id has {len(tournament_id)} characters, over {MAX_TOURNAMENT_ID}: its rankings scope "
            f"(tournament:<id>) must fit in {MAX_SCOPE_LENGTH}"
        )
    match_id = None if data.get("match_id") is None else check_identifier(data["match_id"], "data.match_id")
    participants = parse_participants(data["participants"])
    winner = data.get("winner")
    if winner is not None and (not isinstance(winner, str) or winner not in {p.team_id for p in participants}):
        raise InvalidEvent(f"data.winner {str(winner)[:100]!r} is not the team_id of one of data.participants")
    series_id, best_of, forfeit = _series_fields(data, winner, {p.team_id for p in participants})
    completed_at = clock.to_utc_naive(event.time) if event.time else clock.now()
    MatchResult.insert(
        event=event_row_id,
        tournament_id=tournament_id,
        match_id=match_id,
        winner=winner,
        participants=[dataclasses.asdict(p) for p in participants],
        completed_at=completed_at,
        series_id=series_id,
        best_of=best_of,
        forfeit=forfeit,
    ).on_conflict_ignore().execute()
    return True


def _series_fields(
    data: dict[str, Any], winner: str | None, teams: set[str]
) -> tuple[str | None, int | None, str | None]:
    """(series_id, best_of, forfeit) of a result, checked together; InvalidEvent says what is wrong."""
    series_id, best_of, forfeit = data.get("series_id"), data.get("best_of"), data.get("forfeit")
    if series_id is None:
        if best_of is not None or forfeit is not None:
            raise InvalidEvent("data.best_of and data.forfeit belong to a series game: data.series_id is missing")
        return None, None, None
    series_id = check_identifier(series_id, "data.series_id")
    if best_of is None:
        raise InvalidEvent("data.series_id needs data.best_of (1, 3, 5 or 7)")
    best_of = check_best_of(best_of)
    if forfeit is not None:
        forfeit = check_identifier(forfeit, "data.forfeit")
        if forfeit not in teams:
            raise InvalidEvent(f"data.forfeit {forfeit[:100]!r} is not the team_id of one of data.participants")
        if winner is None or winner == forfeit:
            raise InvalidEvent(
                "data.forfeit needs data.winner: the team the series is forfeited to, not the forfeiting one"
            )
    return series_id, best_of, forfeit


def ledger(tournament_id: str | None = None) -> list[MatchRecord]:
    """Every recorded match (or one tournament's) in completion order, then recording order, but the series
    games a series summary does not count (a game after the series was decided, say: rankings/series.py)."""
    query = MatchResult.select().order_by(MatchResult.completed_at, MatchResult.id)
    if tournament_id is not None:
        query = query.where(MatchResult.tournament_id == tournament_id)
    rows = list(query)
    series_ids = {r.series_id for r in rows if r.series_id is not None}
    if tournament_id is not None and series_ids:  # a series is judged on all its games, whichever tournament
        rows_of_series = list(MatchResult.select().where(MatchResult.series_id.in_(sorted(series_ids))))
    else:
        rows_of_series = rows
    flagged = _uncounted(rows_of_series)
    return [MatchRecord(r.tournament_id, r.winner, _placings(r), r.completed_at) for r in rows if r.id not in flagged]


def _placings(row: MatchResult) -> tuple[Placing, ...]:
    return tuple(Placing(**p) for p in row.participants)


def _uncounted(rows: Iterable[MatchResult]) -> set[int]:
    """The ids of the results among ``rows`` that their series' summary flags as not counted."""
    by_series: dict[str, list[SeriesGame]] = {}
    for row in rows:
        if row.series_id is not None:
            by_series.setdefault(row.series_id, []).append(_series_game(row))
    return {
        line.game.result_id
        for series_id, games in by_series.items()
        for line in summarize(series_id, games).games
        if not line.counted
    }


def _series_game(row: MatchResult) -> SeriesGame:
    assert row.best_of is not None, "record_result stores a series game with its best_of"
    return SeriesGame(
        result_id=row.id,
        tournament_id=row.tournament_id,
        match_id=row.match_id,
        winner=row.winner,
        participants=_placings(row),
        best_of=row.best_of,
        completed_at=row.completed_at,
        forfeit=row.forfeit,
    )


def series_summary(series_id: str) -> SeriesSummary | None:
    """The summary of a series from its games in the ledger, or None when no game names it."""
    rows = MatchResult.select().where(MatchResult.series_id == series_id)
    games = [_series_game(row) for row in rows]
    return summarize(series_id, games) if games else None


def series_of_results_since(since: dt.datetime) -> list[str]:
    """The series with a game recorded at or after ``since`` (naive UTC), by their first such game."""
    query = (
        MatchResult.select(MatchResult.series_id)
        .join(Event)
        .where(MatchResult.series_id.is_null(False), Event.received_at >= since)
        .order_by(MatchResult.id)
    )
    return list(dict.fromkeys(row.series_id for row in query if row.series_id is not None))


# --- standings ----------------------------------------------------------------


def recompute(
    *,
    placement_points: dict[int, float] | None = None,
    points_per_kill: float = DEFAULT_POINTS_PER_KILL,
    win_points: float = DEFAULT_WIN_POINTS,
    tournament_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[RankChange]:
    """Recompute every scope from the ledger (or only ``tournament_id``'s), in one transaction; return the
    teams whose rank moved.

    Each tournament scope's placement overrides are put over its computed standings. A new snapshot version
    is written only for a scope whose standings differ from its latest one, so a run with nothing new writes
    nothing and returns []. A team new to a scope counts as moved only when that scope had a snapshot
    before (the first snapshot of a scope announces nothing).
    ``progress(done, total)`` is told after each scope (`tidings rankings recompute` shows it).
    """
    with transaction():
        if not is_sqlite():  # two recomputes at once would both write the same version
            database.execute_sql("SELECT pg_advisory_xact_lock(hashtext('tidings.rankings'))")
        scopes = all_standings(
            ledger(tournament_id),
            placement_points=DEFAULT_PLACEMENT_POINTS if placement_points is None else placement_points,
            points_per_kill=points_per_kill,
            win_points=win_points,
        )
        if tournament_id is not None:  # the overall scope of one tournament's matches is no scope at all
            scopes = {scope: rows for scope, rows in scopes.items() if scope == tournament_scope(tournament_id)}
        overrides = placement_overrides()
        latest = _latest_snapshots(scopes)
        now = clock.now()
        changes: list[RankChange] = []
        for done, (scope, computed) in enumerate(scopes.items(), 1):
            rows = apply_overrides(computed, overrides.get(scope, {}))
            previous = latest.get(scope)
            if previous is None or previous.standings != _json_round_trip(rows):
                version = previous.version + 1 if previous else 1
                RankingSnapshot.create(scope=scope, version=version, standings=rows, computed_at=now)
                if previous is not None:
                    changes.extend(rank_changes(scope, previous.standings, rows, version=version))
            if progress is not None:
                progress(done, len(scopes))
    log.info("rankings_recomputed", scopes=len(scopes), changes=len(changes))
    return changes


def rank_changes(
    scope: str, before: list[dict[str, Any]], after: list[dict[str, Any]], *, version: int
) -> list[RankChange]:
    """The rows of ``after`` whose rank is not the one they had in ``before``, in ``after``'s order."""
    old_ranks = {row["team_id"]: row["rank"] for row in before}
    return [
        RankChange(
            scope,
            row["team_id"],
            old_ranks.get(row["team_id"]),
            row["rank"],
            row["points"],
            version=version,
            team_name=row.get("team_name"),
        )
        for row in after
        if old_ranks.get(row["team_id"]) != row["rank"]
    ]


def changes_since(since: dt.datetime) -> list[RankChange]:
    """The rank changes of every snapshot computed at or after ``since`` (naive UTC), rebuilt from storage.

    With the deterministic ids of :func:`change_events`, a publisher may publish these again and again
    (after a crash between recompute and publish, say): Tidings' (source, id) key drops the repeats.
    """
    changes: list[RankChange] = []
    recent = RankingSnapshot.select().where(RankingSnapshot.computed_at >= since, RankingSnapshot.version > 1)
    for snapshot in recent.order_by(RankingSnapshot.computed_at, RankingSnapshot.id):
        previous = RankingSnapshot.get_or_none(
            RankingSnapshot.scope == snapshot.scope, RankingSnapshot.version == snapshot.version - 1
        )
        if previous is not None:
            changes.extend(
                rank_changes(snapshot.scope, previous.standings, snapshot.standings, version=snapshot.version)
            )
    return changes


def latest_snapshot(scope: str) -> RankingSnapshot | None:
    """The newest snapshot of ``scope``, or None."""
    return (
        RankingSnapshot.select().where(RankingSnapshot.scope == scope).order_by(RankingSnapshot.version.desc()).first()
    )


def standings(scope: str) -> list[dict[str, Any]]:
    """The latest snapshot of a scope ([] if none)."""
    snapshot = latest_snapshot(scope)
    return snapshot.standings if snapshot else []


def _latest_snapshots(scopes: Iterable[str]) -> dict[str, RankingSnapshot]:
    """The newest snapshot of each of ``scopes`` that has one (read without the older versions)."""
    newest = RankingSnapshot.select(RankingSnapshot.scope, fn.MAX(RankingSnapshot.version).alias("version"))
    newest = newest.where(RankingSnapshot.scope.in_(sorted(scopes))).group_by(RankingSnapshot.scope)
    query = RankingSnapshot.select().join(
        newest,
        on=((RankingSnapshot.scope == newest.c.scope) & (RankingSnapshot.version == newest.c.version)),
    )
    return {snapshot.scope: snapshot for snapshot in query}


def placement_overrides(scope: str | None = None) -> dict[str, dict[str, Override]]:
    """The overrides in force (or ``scope``'s), by scope then team."""
    query = PlacementOverride.select().order_by(PlacementOverride.scope, PlacementOverride.team_id)
    if scope is not None:
        query = query.where(PlacementOverride.scope == scope)
    overrides: dict[str, dict[str, Override]] = {}
    for row in query:
        overrides.setdefault(row.scope, {})[row.team_id] = Override(
            rank=row.rank, reason=row.reason, actor=row.actor, at=row.changed_at
        )
    return overrides


def _json_round_trip(rows: list[dict[str, Any]]) -> Any:
    """Rows as they read back from the database, so that a comparison sees no float/int or tuple drift."""
    return json.loads(json.dumps(rows))


def snapshot(scope: str, version: int | None = None) -> RankingSnapshot | None:
    """``scope``'s snapshot of that version, or its newest (None: no such snapshot)."""
    if version is None:
        return latest_snapshot(scope)
    return RankingSnapshot.get_or_none(RankingSnapshot.scope == scope, RankingSnapshot.version == version)


def override_trail(scope: str) -> list[dict[str, Any]]:
    """The audit trail of ``scope``'s placement overrides, in the order recorded (times ISO 8601, UTC)."""
    query = OverrideEntry.select().where(OverrideEntry.scope == scope).order_by(OverrideEntry.id)
    return [
        {
            "scope": entry.scope,
            "team_id": entry.team_id,
            "action": entry.action,
            "old_rank": entry.old_rank,
            "new_rank": entry.new_rank,
            "reason": entry.reason,
            "actor": entry.actor,
            "via": entry.via,
            "at": entry.at.isoformat() + "Z",
        }
        for entry in query
    ]
