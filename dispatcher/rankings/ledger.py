"""The rankings: a ledger of match results, versioned standings snapshots, and rank-change notices.

``match.completed`` feeds the ledger (see :func:`record_result` for the data it reads). A recompute
derives every scope's standings from the whole ledger (dispatcher/standings.py), keeps each version it
writes, and reports the teams whose rank moved; :func:`change_events` turns those into ``ranking.changed``
events that, published to the exchange, reach both other services and the subscribers of ``team:<id>``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import structlog

from dispatcher.amqp.bus import event_publisher
from dispatcher.amqp.publisher import build_event
from dispatcher.core import clock
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import CloudEvent
from dispatcher.core.results import Placing, check_identifier, parse_participants
from dispatcher.core.settings import Settings
from dispatcher.rankings.standings import (
    DEFAULT_PLACEMENT_POINTS,
    DEFAULT_POINTS_PER_KILL,
    DEFAULT_WIN_POINTS,
    MatchRecord,
    all_standings,
)
from dispatcher.storage.db import database, is_sqlite, transaction
from dispatcher.storage.models import Event, MatchResult, RankingSnapshot

log = structlog.get_logger("tidings.rankings")

SOURCE = "/tidings/rankings"
#: announce() covers the snapshots of this long ago: a change whose publish failed goes out next time.
ANNOUNCE_WINDOW = dt.timedelta(days=2)
CHANGE_TYPE = "ranking.changed"
#: Namespace of the ranking.changed event ids (uuid5 of scope, team and snapshot version).
_ID_NAMESPACE = uuid.UUID("6f0b3c1e-4a57-5d0e-9c1a-72616e6b696e")


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
    match_id = None if data.get("match_id") is None else check_identifier(data["match_id"], "data.match_id")
    participants = parse_participants(data["participants"])
    winner = data.get("winner")
    if winner is not None and (not isinstance(winner, str) or winner not in {p.team_id for p in participants}):
        raise InvalidEvent(f"data.winner {str(winner)[:100]!r} is not the team_id of one of data.participants")
    completed_at = clock.to_utc_naive(event.time) if event.time else clock.now()
    MatchResult.insert(
        event=event_row_id,
        tournament_id=tournament_id,
        match_id=match_id,
        winner=winner,
        participants=[dataclasses.asdict(p) for p in participants],
        completed_at=completed_at,
    ).on_conflict_ignore().execute()
    return True


#: What the ledger records at ingest, by event type (pipeline.ingest's hooks).
INGEST_HOOKS = {"match.completed": [record_result]}


def ledger() -> list[MatchRecord]:
    """Every recorded match, in completion order (then recording order)."""
    query = MatchResult.select().order_by(MatchResult.completed_at, MatchResult.id)
    return [
        MatchRecord(r.tournament_id, r.winner, tuple(Placing(**p) for p in r.participants), r.completed_at)
        for r in query
    ]


# --- standings ----------------------------------------------------------------


def recompute(
    *,
    placement_points: dict[int, float] | None = None,
    points_per_kill: float = DEFAULT_POINTS_PER_KILL,
    win_points: float = DEFAULT_WIN_POINTS,
    progress: Callable[[int, int], None] | None = None,
) -> list[RankChange]:
    """Recompute every scope from the ledger, in one transaction; return the teams whose rank moved.

    A new snapshot version is written only for a scope whose standings differ from its latest one, so a
    run with nothing new writes nothing and returns []. A team new to a scope counts as moved only when
    that scope had a snapshot before (the first snapshot of a scope announces nothing).
    ``progress(done, total)`` is told after each scope (`tidings rankings recompute` shows it).
    """
    with transaction():
        if not is_sqlite():  # two recomputes at once would both write the same version
            database.execute_sql("SELECT pg_advisory_xact_lock(hashtext('tidings.rankings'))")
        scopes = all_standings(
            ledger(),
            placement_points=DEFAULT_PLACEMENT_POINTS if placement_points is None else placement_points,
            points_per_kill=points_per_kill,
            win_points=win_points,
        )
        latest = _latest_snapshots()
        now = clock.now()
        changes: list[RankChange] = []
        for done, (scope, rows) in enumerate(scopes.items(), 1):
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


def _latest_snapshots() -> dict[str, RankingSnapshot]:
    latest: dict[str, RankingSnapshot] = {}
    for snapshot in RankingSnapshot.select().order_by(RankingSnapshot.scope, RankingSnapshot.version):
        latest[snapshot.scope] = snapshot
    return latest


def _json_round_trip(rows: list[dict[str, Any]]) -> Any:
    """Rows as they read back from the database, so that a comparison sees no float/int or tuple drift."""
    return json.loads(json.dumps(rows))


# --- notices ------------------------------------------------------------------


def tournament_names(tournament_ids: Iterable[str]) -> dict[str, str]:
    """The name each tournament's latest result gave it (match.completed's ``tournament_name``), where one did."""
    query = (
        MatchResult.select(MatchResult.tournament_id, Event.data)
        .join(Event)
        .where(MatchResult.tournament_id.in_(sorted(set(tournament_ids))))
        .order_by(MatchResult.completed_at, MatchResult.id)
    )
    names: dict[str, str] = {}
    for tournament_id, data in cast(Iterable[tuple[str, dict[str, Any]]], query.tuples()):
        name = data.get("tournament_name")
        if isinstance(name, str) and name.strip():
            names[tournament_id] = name.strip()
    return names


def change_events(
    changes: list[RankChange], *, now: dt.datetime, names: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One ``ranking.changed`` CloudEvent dict per change, for the exchange.

    ``data.topic`` is ``team:<id>``, so the same event that informs other services notifies the team's
    subscribers. The id is derived from (scope, team, snapshot version): publishing twice is harmless.
    ``now`` is naive UTC (clock.now()) or aware. ``names``: tournament names by id (:func:`tournament_names`),
    given as ``data.tournament_name`` so that a notice says which rankings it is about.
    """
    at = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now
    events = []
    for change in changes:
        data: dict[str, Any] = {
            "topic": f"team:{change.team_id}",
            "team_id": change.team_id,
            "team_name": change.team_name or change.team_id,
            "scope": change.scope,
            "old_rank": change.old_rank,
            "new_rank": change.new_rank,
            "points": change.points,
        }
        if change.scope.startswith("tournament:"):
            data["tournament_id"] = change.scope.removeprefix("tournament:")
            if (names or {}).get(data["tournament_id"]):
                data["tournament_name"] = (names or {})[data["tournament_id"]]
        key = json.dumps([change.scope, change.team_id, change.version])
        events.append(build_event(CHANGE_TYPE, data, source=SOURCE, id=str(uuid.uuid5(_ID_NAMESPACE, key)), time=at))
    return events


def announce(settings: Settings, *, since: dt.datetime, progress: Callable[[int, int], None] | None = None) -> int:
    """Publish ranking.changed for every rank change of the snapshots written since ``since``.

    Publishing goes through the exchange: other services get it, and Tidings' own ingest notifies
    the subscribers of topic team:<id>. The event ids are fixed, so announcing a change twice (a
    retry, two schedulers, a recompute by hand) notifies no one twice. ``progress(done, total)`` is
    told after each event.
    """
    changes = changes_since(since)
    names = tournament_names(c.scope.removeprefix("tournament:") for c in changes if c.scope.startswith("tournament:"))
    events = change_events(changes, now=clock.now(), names=names)
    if events:
        with event_publisher(settings) as publisher:
            for done, event in enumerate(events, 1):
                publisher.publish(event)
                if progress is not None:
                    progress(done, len(events))
    log.info("rank_changes_announced", events=len(events))
    return len(events)
