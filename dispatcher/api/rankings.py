"""Rankings (API key): a scope's standings, a series' summary, and tournament staff's placement overrides.

Reading takes the ``rankings`` scope; setting or revoking an override the ``overrides`` scope. An override
is a tidings.standings.override command applied as the worker applies it (an operator's authority): the
tournament's standings are recomputed in its transaction, and the ``ranking.changed`` events of the ranks
it moved are published once it has committed. Each set and revoke leaves an entry in the audit trail, its
``via`` naming the API key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dispatcher.commands.overrides import COMMAND, MAX_ACTOR, MAX_REASON, UNCHANGED
from dispatcher.core.api_keys import ApiKey
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import MAX_ID_LENGTH
from dispatcher.rankings.ledger import override_trail, series_summary, snapshot
from dispatcher.storage.models import RankingSnapshot

from .auth import api_key
from .control import apply_now_and_announce, unprocessable
from .database import session
from .problems import PROBLEM_JSON, ApiError, Problem, not_found
from .schemas import UtcTime
from .state import api_state

router = APIRouter(tags=["rankings"])

_TOURNAMENT = "tournament:"
Scope = Annotated[
    str,
    Path(
        description='"overall" (every match) or "tournament:<id>" (one tournament\'s battle-royale standings).',
        pattern=r"^(overall|tournament:.+)$",
        max_length=len(_TOURNAMENT) + MAX_ID_LENGTH,
        examples=["overall", "tournament:spring-cup"],
    ),
]
TournamentScope = Annotated[
    str,
    Path(
        description='"tournament:<id>": a final placement belongs to a tournament.',
        pattern=r"^tournament:.+$",
        max_length=len(_TOURNAMENT) + MAX_ID_LENGTH,
        examples=["tournament:spring-cup"],
    ),
]
TeamId = Annotated[str, Path(description="The team's id, as match.completed names it in data.participants.")]
SeriesId = Annotated[str, Path(description="The series' id, as match.completed names it in data.series_id.")]
RankingsKey = Annotated[ApiKey, Depends(api_key("rankings"))]
OverridesKey = Annotated[ApiKey, Depends(api_key("overrides"))]
#: The largest version the snapshot column holds (a 32-bit INTEGER): asking for more, SQLite could not even compare.
MAX_VERSION = 2**31 - 1
PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{Problem.__name__}"}}}


class OverrideNote(BaseModel):
    """Who set a line's rank by hand, why, and when."""

    model_config = ConfigDict(extra="forbid")

    reason: str
    actor: str
    at: UtcTime


class StandingsLine(BaseModel):
    """One team's line. The overall scope counts wins and losses, a tournament's kills and best placement: the
    columns a scope has not are null."""

    model_config = ConfigDict(extra="forbid")

    rank: int
    team_id: str
    team_name: str | None
    points: float
    wins: int | None
    losses: int | None
    kills: int | None
    best_placement: int | None
    matches: int
    overridden: bool = Field(description="staff set this rank (a placement override)")
    computed_rank: int | None = Field(description="the rank the results give, when an override set another")
    override: OverrideNote | None


class Standings(BaseModel):
    """A scope's standings as one recompute left them (a snapshot version), best first."""

    model_config = ConfigDict(extra="forbid")

    scope: str
    version: int
    computed_at: UtcTime
    standings: list[StandingsLine]


class SeriesTeam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team_id: str
    team_name: str | None
    wins: int


class SeriesGame(BaseModel):
    """One game of the series: counted, or not and why (``note``)."""

    model_config = ConfigDict(extra="forbid")

    match_id: str | None
    winner: str | None
    score: dict[str, float] = Field(description="each team's score in the game, by team id")
    forfeit: str | None = Field(description="the team that forfeited the series with this game")
    completed_at: UtcTime
    counted: bool
    note: str | None


class Series(BaseModel):
    """A best-of series as its games in the ledger say, in order of completion."""

    model_config = ConfigDict(extra="forbid")

    series_id: str
    tournament_id: str
    best_of: int
    status: Literal["in_progress", "decided", "drawn"]
    winner: str | None
    winner_name: str | None
    decided_by: Literal["majority", "forfeit"] | None
    decided_at: UtcTime | None
    teams: list[SeriesTeam]
    games: list[SeriesGame]


class OverrideEntry(BaseModel):
    """One entry of the audit trail: an override set (or changed) or revoked, by whom, why, how and when."""

    model_config = ConfigDict(extra="forbid")

    scope: str
    team_id: str
    action: Literal["set", "revoke"]
    old_rank: int | None = Field(description="the team's rank before (null: it had none yet)")
    new_rank: int | None = Field(description="the rank after: the one set, or a revoke's computed rank")
    reason: str
    actor: str = Field(description="who decided it")
    via: str = Field(description='how it came: "/tidings/api (api:<key name>)" from this API')
    at: UtcTime


class OverrideTrail(BaseModel):
    """A scope's audit trail of placement overrides, oldest first."""

    model_config = ConfigDict(extra="forbid")

    scope: str
    entries: list[OverrideEntry]


class OverrideRequest(BaseModel):
    """The final rank to give a team, and who decided it and why (both required). tidings.standings.override
    checks the values, and its reason is what a refusal gives."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"team_id": "owls", "rank": 1, "reason": "penalty on wolves overturned", "actor": "referee"}]
        },
    )

    team_id: str
    rank: int = Field(description="1 or more, at most the number of teams in the tournament")
    reason: str = Field(description=f"a single line of at most {MAX_REASON} characters")
    actor: str = Field(description=f"a single line of at most {MAX_ACTOR} characters")


def standings_view(found: RankingSnapshot) -> Standings:
    return Standings(
        scope=found.scope,
        version=found.version,
        computed_at=found.computed_at,
        standings=[_line(row) for row in found.standings],
    )


def _line(row: dict[str, Any]) -> StandingsLine:
    override = row.get("override")  # {computed_rank, reason, actor, at}: rankings.standings.apply_overrides
    note = OverrideNote(reason=override["reason"], actor=override["actor"], at=override["at"]) if override else None
    return StandingsLine(
        rank=row["rank"],
        team_id=row["team_id"],
        team_name=row.get("team_name"),
        points=row["points"],
        wins=row.get("wins"),
        losses=row.get("losses"),
        kills=row.get("kills"),
        best_placement=row.get("best_placement"),
        matches=row["matches"],
        overridden=override is not None,
        computed_rank=override["computed_rank"] if override else None,
        override=note,
    )


def _apply(
    request: Request,
    key: ApiKey,
    data: dict[str, Any],
    *,
    body: Iterable[str] = (),
    path: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> str:
    """Apply an override command; "applied" or "unchanged". A 422 for what it refuses (under the field of
    ``body``, ``path`` or ``query`` its reason names), a 409 for a stale one."""
    state = api_state(request)
    try:
        outcome = apply_now_and_announce(state.catalog, state.settings, key, COMMAND, data)
    except InvalidEvent as e:
        raise unprocessable(e, body, path=path, query=query) from None
    if outcome == "stale":  # an operator's command never is; a check that it stays so
        raise ApiError(409, "Conflict", f"a newer override of team {data['team_id']!r} in {data['scope']} is recorded")
    return outcome


def _last_entry(scope: str, team_id: str) -> OverrideEntry | None:
    entries = [entry for entry in override_trail(scope) if entry["team_id"] == team_id]
    return OverrideEntry(**entries[-1]) if entries else None


@router.get(
    "/v1/rankings/{scope}",
    response_model=Standings,
    summary="A scope's standings",
    description="The latest standings of the overall rankings or of one tournament, or those of `version`. "
    "A line whose rank staff set says so (`overridden`, `computed_rank`, `override`).",
    responses={404: {"description": "no standings for this scope yet, or no such version", "content": PROBLEM}},
)
def get_standings(
    scope: Scope,
    key: RankingsKey,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_VERSION, description="a snapshot version (left out: the latest)")
    ] = None,
) -> Standings:
    with session():
        found = snapshot(scope, version)
    if found is None:
        what = f"standings for {scope} yet" if version is None else f"version {version} of {scope}'s standings"
        raise ApiError(404, "Not Found", f"no {what}")
    return standings_view(found)


@router.get(
    "/v1/series/{series_id}",
    response_model=Series,
    summary="A series' summary",
    description="Its teams and wins, its winner once decided (by majority or forfeit), and each game: counted, "
    "or not and why.",
    responses={404: {"description": "no recorded game names this series", "content": PROBLEM}},
)
def get_series(series_id: SeriesId, key: RankingsKey) -> Series:
    with session():
        summary = series_summary(series_id)
    if summary is None:
        raise not_found("series")
    return Series(**summary.to_dict())


@router.get(
    "/v1/rankings/{scope}/overrides",
    response_model=OverrideTrail,
    summary="The audit trail of a tournament's placement overrides",
)
def list_overrides(scope: TournamentScope, key: RankingsKey) -> OverrideTrail:
    with session():
        entries = override_trail(scope)
    return OverrideTrail(scope=scope, entries=[OverrideEntry(**entry) for entry in entries])


@router.post(
    "/v1/rankings/{scope}/overrides",
    status_code=201,
    response_model=OverrideEntry,
    summary="Set a team's final rank in a tournament",
    description="The team takes that rank; the others keep their computed order around it. The standings are "
    "recomputed at once and the rank changes announced (`ranking.changed`). Answers the audit entry written; "
    "the same rank again changes nothing and answers 200 with the entry in force.",
    responses={
        200: {"model": OverrideEntry, "description": "the team already had this rank by an override: nothing changed"},
        409: {"description": "a newer override of the team is recorded", "content": PROBLEM},
    },
)
def set_override(
    body: OverrideRequest, request: Request, response: Response, scope: TournamentScope, key: OverridesKey
) -> OverrideEntry:
    data = {"scope": scope, **body.model_dump()}
    outcome = _apply(request, key, data, body=OverrideRequest.model_fields, path={"scope": "scope"})
    if outcome == UNCHANGED:
        response.status_code = 200
    with session():
        entry = _last_entry(scope, body.team_id)
    assert entry is not None, "an override in force has its audit entry"
    return entry


@router.delete(
    "/v1/rankings/{scope}/overrides/{team_id}",
    status_code=204,
    response_class=Response,
    summary="Revoke a team's placement override",
    description="The team goes back to its computed rank; the standings are recomputed and the rank changes "
    "announced. The audit entry gives the rank the team now has.",
    responses={404: {"description": "the team has no override in this tournament", "content": PROBLEM}},
)
def revoke_override(
    request: Request,
    scope: TournamentScope,
    team_id: TeamId,
    key: OverridesKey,
    reason: Annotated[str, Query(description="why: required, as for setting one")],
    actor: Annotated[str, Query(description="who decided it: required")],
) -> Response:
    data = {"scope": scope, "team_id": team_id, "rank": None, "reason": reason, "actor": actor}
    outcome = _apply(
        request, key, data, path={"scope": "scope", "team_id": "team_id"}, query={"reason": "reason", "actor": "actor"}
    )
    if outcome == UNCHANGED:
        raise ApiError(404, "Not Found", f"team {team_id!r} has no override in {scope}")
    return Response(status_code=204)
