"""What the rankings announce to the exchange: ``ranking.changed`` and ``series.completed``.

Both are published to the exchange, so that other services get them and Tidings' own ingest notifies
the subscribers of ``team:<id>`` (``data.topic``). Their ids are derived from what they announce, so
announcing one twice (a retry, two schedulers, a recompute by hand, the daily job going over the last
two days) notifies no one twice: Tidings' (source, id) key drops the repeats.

The ingest hooks (:data:`INGEST_HOOKS`) record a match result and, in the same transaction, say what
to announce once it has committed: a series just decided, or the rank changes a placement override
causes.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import structlog

from dispatcher.amqp.bus import event_publisher
from dispatcher.amqp.publisher import build_event
from dispatcher.core import clock
from dispatcher.core.events import CloudEvent
from dispatcher.core.settings import Settings
from dispatcher.rankings.ledger import (
    RankChange,
    changes_since,
    recompute,
    record_result,
    series_of_results_since,
    series_summary,
    standings,
)
from dispatcher.rankings.series import SeriesSummary
from dispatcher.rankings.standings import tournament_scope
from dispatcher.storage.models import Event, MatchResult, OverrideEntry

log = structlog.get_logger("tidings.rankings")

SOURCE = "/tidings/rankings"
#: announce() covers what changed this long ago: a notice whose publish failed goes out next time.
ANNOUNCE_WINDOW = dt.timedelta(days=2)
CHANGE_TYPE = "ranking.changed"
SERIES_TYPE = "series.completed"
#: Namespace of the ids of the events announced (uuid5 of what each announces).
_ID_NAMESPACE = uuid.UUID("6f0b3c1e-4a57-5d0e-9c1a-72616e6b696e")


def tournament_names(tournament_ids: Iterable[str]) -> dict[str, str]:
    """The name each tournament's latest result gave it (match.completed's ``tournament_name``), where one did.

    Each tournament's results are read newest first, up to the first that names it (usually the latest).
    """
    names: dict[str, str] = {}
    for tournament_id in sorted(set(tournament_ids)):
        query = (
            MatchResult.select(Event.data)
            .join(Event)
            .where(MatchResult.tournament_id == tournament_id)
            .order_by(MatchResult.completed_at.desc(), MatchResult.id.desc())
        )
        for (data,) in cast(Iterable[tuple[dict[str, Any]]], query.tuples().iterator()):
            name = data.get("tournament_name")
            if isinstance(name, str) and name.strip():
                names[tournament_id] = name.strip()
                break
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


def series_events(
    summary: SeriesSummary, *, now: dt.datetime, names: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One ``series.completed`` per team of a decided series ([] if undecided), each to its team's topic.

    The id is derived from (series, team, winner): announcing twice is harmless, and a series whose
    winner changes (an earlier game reported late) is announced again, with the new winner.
    """
    if summary.winner is None:
        return []
    at = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now
    tournament_name = (names or {}).get(summary.tournament_id)
    events = []
    for team_id, _ in summary.teams:
        opponents = [summary.team_name(other) for other, _ in summary.teams if other != team_id]
        data: dict[str, Any] = {
            "topic": f"team:{team_id}",
            "series_id": summary.series_id,
            "tournament_id": summary.tournament_id,
            "best_of": summary.best_of,
            "team_id": team_id,
            "team_name": summary.team_name(team_id),
            "opponent_name": ", ".join(opponents),
            "won": team_id == summary.winner,
            "winner": summary.winner,
            "winner_name": summary.team_name(summary.winner),
            "score": summary.score(team_id),
            "decided_by": summary.decided_by,
        }
        if tournament_name:
            data["tournament_name"] = tournament_name
        key = json.dumps(["series", summary.series_id, team_id, summary.winner])
        events.append(build_event(SERIES_TYPE, data, source=SOURCE, id=str(uuid.uuid5(_ID_NAMESPACE, key)), time=at))
    return events


# --- ingest hooks: what to announce once the transaction has committed -------


def record_match(event: CloudEvent, event_row_id: int) -> list[dict[str, Any]]:
    """Record a match.completed in the ledger; when it is a counted game of a series now decided, the
    ``series.completed`` events to announce."""
    if not record_result(event, event_row_id):
        return []
    row = MatchResult.get_or_none(MatchResult.event == event_row_id)
    if row is None or row.series_id is None:
        return []
    summary = series_summary(row.series_id)
    if summary is None or not any(line.counted and line.game.result_id == row.id for line in summary.games):
        return []  # a flagged game (after the series was decided, say) announces nothing
    return series_events(summary, now=clock.now(), names=tournament_names([summary.tournament_id]))


def restand(event: CloudEvent, event_row_id: int) -> list[dict[str, Any]]:
    """After an applied ``tidings.standings.override``: recompute its tournament, complete a revoke's audit
    entry with the rank the team now has, and return the ``ranking.changed`` events of every rank it moved."""
    scope = event.data["scope"]
    tournament_id = scope.removeprefix("tournament:")
    changes = recompute(tournament_id=tournament_id)
    entry = (
        OverrideEntry.select()
        .where(OverrideEntry.scope == scope, OverrideEntry.team_id == event.data["team_id"])
        .order_by(OverrideEntry.id.desc())
        .first()
    )
    if entry is not None and entry.action == "revoke" and entry.new_rank is None:
        rows = standings(tournament_scope(tournament_id))
        entry.new_rank = next((row["rank"] for row in rows if row["team_id"] == entry.team_id), None)
        entry.save()
    return change_events(changes, now=clock.now(), names=tournament_names([tournament_id]))


#: What the rankings record at ingest, by event type (pipeline.ingest's hooks), each returning what to announce.
INGEST_HOOKS: dict[str, Sequence[Callable[[CloudEvent, int], list[dict[str, Any]]]]] = {
    "match.completed": [record_match],
    "tidings.standings.override": [restand],
}


# --- announcing ---------------------------------------------------------------


def recent_notices(since: dt.datetime) -> list[dict[str, Any]]:
    """Every notice of what changed since ``since`` (naive UTC): rank changes of the snapshots written since,
    and the series decided by a game recorded since."""
    changes = changes_since(since)
    summaries = [s for s in map(series_summary, series_of_results_since(since)) if s is not None and s.winner]
    ids = [c.scope.removeprefix("tournament:") for c in changes if c.scope.startswith("tournament:")]
    names = tournament_names([*ids, *(s.tournament_id for s in summaries)])
    now = clock.now()
    events = change_events(changes, now=now, names=names)
    for summary in summaries:
        events.extend(series_events(summary, now=now, names=names))
    return events


def publish(
    settings: Settings, events: Sequence[dict[str, Any]], progress: Callable[[int, int], None] | None = None
) -> int:
    """Publish ``events`` to the exchange (confirmed); ``progress(done, total)`` after each."""
    if events:
        with event_publisher(settings) as publisher:
            for done, event in enumerate(events, 1):
                publisher.publish(event)
                if progress is not None:
                    progress(done, len(events))
    return len(events)


def announce(settings: Settings, *, since: dt.datetime, progress: Callable[[int, int], None] | None = None) -> int:
    """Publish the notices of everything that changed since ``since`` (:func:`recent_notices`); return how many.

    The daily rankings job calls it over the last :data:`ANNOUNCE_WINDOW`, so a notice whose publish
    failed after its commit goes out then. ``progress(done, total)`` is told after each event.
    """
    published = publish(settings, recent_notices(since), progress)
    log.info("rank_changes_announced", events=published)
    return published
