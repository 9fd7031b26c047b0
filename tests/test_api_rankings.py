"""GET /v1/rankings/{scope}, GET /v1/series/{id} and placement overrides over HTTP, with their audit trail.

The unit tests run the app in this process on each database, with a local bus in place of RabbitMQ so
that what an override announces can be read back; the integration test speaks to the web process.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from fastapi.testclient import TestClient

from dispatcher.amqp import local
from dispatcher.api.app import create_app
from dispatcher.core.api_keys import parse_api_keys
from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import Settings
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.rankings.ledger import recompute
from dispatcher.rankings.notices import INGEST_HOOKS
from dispatcher.storage.migrate import migrate
from dispatcher.storage.models import Event
from tests.support.deployment import Deployment
from tests.support.events import parsed_event

BOARD_KEY = "board-key-0123456789abcdefghijklmnopqrstuvwx"
STAFF_KEY = "staff-key-0123456789abcdefghijklmnopqrstuvwx"
API_KEYS = f"board:rankings:{BOARD_KEY},staff:rankings+overrides:{STAFF_KEY}"
T0 = dt.datetime(2026, 5, 9, 10, 0, tzinfo=dt.UTC)
_ids = itertools.count()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def line(team: str, placement: int, kills: int = 0, **extra: Any) -> dict[str, Any]:
    return {"team_id": team, "score": 100 - placement, "placement": placement, "kills": kills, **extra}


def feed(catalog: Catalog, *participants: dict[str, Any], winner: str, hours: float = 0, **extra: Any) -> None:
    """Ingest a match.completed of tournament t1 as the worker does (with the rankings' hooks)."""
    data = {
        "topic": "matches",
        "tournament_id": "t1",
        "tournament_name": "Spring Cup",
        "winner": winner,
        "winner_name": winner,
        "participants": list(participants),
        **extra,
    }
    event = parsed_event(
        "match.completed", data, id=f"match-{next(_ids)}", source="/matches", time=T0 + dt.timedelta(hours=hours)
    )
    ingest_event(event, catalog, [], hooks=INGEST_HOOKS)


def three_teams(catalog: Catalog) -> None:
    """Owls (a) 23 points, b 22, c 21 in t1; a and b one win each overall (a got there first), c none."""
    feed(catalog, line("a", 1, 2, team_name="Owls"), line("b", 2), line("c", 3), winner="a", hours=0)
    feed(catalog, line("b", 1, 1), line("a", 2), line("c", 3, 7), winner="b", hours=1)
    recompute()


def columns(response: Any, *names: str) -> list[tuple[Any, ...]]:
    return [tuple(row[name] for name in ("rank", "team_id", *names)) for row in response.json()["standings"]]


@pytest.fixture
def published() -> Iterator[list[dict[str, Any]]]:
    """A local bus in place of RabbitMQ: the events published to the exchange, as they were sent."""
    sent: list[dict[str, Any]] = []
    local.install(local.LocalBus(lambda body, routing_key, publisher: sent.append(json.loads(body))))
    yield sent
    local.install(None)


@pytest.fixture
def api(db: str, catalog: Catalog, published: list[dict[str, Any]]) -> Iterator[TestClient]:
    settings = Settings(database_url=db, api_keys=parse_api_keys(API_KEYS))
    with TestClient(create_app(settings, catalog)) as client:
        yield client


# --- standings and series ------------------------------------------------------------------------------------


def test_the_overall_standings_have_wins_and_losses_and_a_tournament_s_kills_and_best_placement(
    api: TestClient, catalog: Catalog
) -> None:
    # given
    three_teams(catalog)
    # when
    overall = api.get("/v1/rankings/overall", headers=auth(BOARD_KEY))
    tournament = api.get("/v1/rankings/tournament:t1", headers=auth(BOARD_KEY))
    # then
    assert overall.status_code == 200 and tournament.status_code == 200
    assert (overall.json()["scope"], overall.json()["version"]) == ("overall", 1)
    assert overall.json()["computed_at"].endswith("Z")
    assert columns(overall, "team_name", "points", "wins", "losses", "kills", "best_placement", "matches") == [
        (1, "a", "Owls", 3, 1, 1, None, None, 2),
        (2, "b", None, 3, 1, 1, None, None, 2),
        (3, "c", None, 0, 0, 2, None, None, 2),
    ]
    assert columns(tournament, "points", "wins", "losses", "kills", "best_placement") == [
        (1, "a", 23, None, None, 2, 1),
        (2, "b", 22, None, None, 1, 1),
        (3, "c", 21, None, None, 7, 3),
    ]
    line_a = tournament.json()["standings"][0]
    assert (line_a["overridden"], line_a["computed_rank"], line_a["override"]) == (False, None, None)


def test_an_earlier_version_of_the_standings_is_read_with_the_version_parameter(
    api: TestClient, catalog: Catalog
) -> None:
    # given version 1, then a match that puts b first: version 2
    three_teams(catalog)
    feed(catalog, line("b", 1), line("a", 2), line("c", 3), winner="b", hours=2)
    recompute()
    # when
    latest = api.get("/v1/rankings/overall", headers=auth(BOARD_KEY))
    first = api.get("/v1/rankings/overall", params={"version": 1}, headers=auth(BOARD_KEY))
    # then
    assert (latest.json()["version"], columns(latest)) == (2, [(1, "b"), (2, "a"), (3, "c")])
    assert (first.json()["version"], columns(first)) == (1, [(1, "a"), (2, "b"), (3, "c")])


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/v1/rankings/tournament:nope", "no standings for tournament:nope yet"),
        ("/v1/rankings/overall?version=9", "no version 9 of overall's standings"),
    ],
)
def test_standings_that_do_not_exist_are_a_problem_json_404(
    api: TestClient, catalog: Catalog, path: str, detail: str
) -> None:
    three_teams(catalog)
    response = api.get(path, headers=auth(BOARD_KEY))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == detail


@pytest.mark.parametrize("scope", ["weekly", "tournament:", "Overall", "tournament:" + "x" * 256])
def test_a_malformed_scope_is_a_422_naming_it(api: TestClient, scope: str) -> None:
    response = api.get(f"/v1/rankings/{scope}", headers=auth(BOARD_KEY))
    assert response.status_code == 422
    assert [(e["in"], e["field"]) for e in response.json()["errors"]] == [("path", "scope")]


def test_a_series_summary_says_who_won_it_and_one_still_in_progress_says_so(api: TestClient, catalog: Catalog) -> None:
    # given s1, won 2-0 by a (best of 3), and s2, one game in
    duel = (line("a", 1, team_name="Owls"), line("b", 2))
    feed(catalog, *duel, winner="a", hours=0, series_id="s1", best_of=3, match_id="g1")
    feed(catalog, *duel, winner="a", hours=1, series_id="s1", best_of=3, match_id="g2")
    feed(catalog, *duel, winner="b", hours=2, series_id="s2", best_of=5, match_id="g3")
    # when
    decided = api.get("/v1/series/s1", headers=auth(BOARD_KEY))
    going = api.get("/v1/series/s2", headers=auth(BOARD_KEY))
    # then
    assert decided.status_code == 200
    summary = decided.json()
    assert {k: summary[k] for k in ("series_id", "tournament_id", "best_of", "status", "winner", "winner_name")} == {
        "series_id": "s1",
        "tournament_id": "t1",
        "best_of": 3,
        "status": "decided",
        "winner": "a",
        "winner_name": "Owls",
    }
    assert (summary["decided_by"], summary["decided_at"]) == ("majority", "2026-05-09T11:00:00.000Z")
    assert summary["teams"] == [
        {"team_id": "a", "team_name": "Owls", "wins": 2},
        {"team_id": "b", "team_name": None, "wins": 0},
    ]
    assert summary["games"][0] == {
        "match_id": "g1",
        "winner": "a",
        "score": {"a": 99, "b": 98},
        "forfeit": None,
        "completed_at": "2026-05-09T10:00:00.000Z",
        "counted": True,
        "note": None,
    }
    assert (going.json()["status"], going.json()["winner"], going.json()["decided_by"]) == ("in_progress", None, None)
    assert [team["wins"] for team in going.json()["teams"]] == [0, 1]


def test_a_series_no_game_names_is_a_404(api: TestClient) -> None:
    response = api.get("/v1/series/nope", headers=auth(BOARD_KEY))
    assert (response.status_code, response.json()["detail"]) == (404, "no such series")


# --- placement overrides -------------------------------------------------------------------------------------


def override(team_id: str = "c", rank: int = 1, **fields: Any) -> dict[str, Any]:
    return {"team_id": team_id, "rank": rank, "reason": "b and a were penalised", "actor": "referee", **fields}


def test_an_override_set_over_http_marks_the_line_is_audited_and_announces_the_ranks_it_moved(
    api: TestClient, catalog: Catalog, published: list[dict[str, Any]]
) -> None:
    # given a, b, c in t1
    three_teams(catalog)
    # when
    response = api.post("/v1/rankings/tournament:t1/overrides", json=override(), headers=auth(STAFF_KEY))
    # then: the entry written
    assert response.status_code == 201, response.text
    entry = response.json()
    assert {k: entry[k] for k in ("scope", "team_id", "action", "old_rank", "new_rank", "reason", "actor", "via")} == {
        "scope": "tournament:t1",
        "team_id": "c",
        "action": "set",
        "old_rank": 3,
        "new_rank": 1,
        "reason": "b and a were penalised",
        "actor": "referee",
        "via": "/tidings/api (api:staff)",
    }
    # and the standings, recomputed at once: c first by hand, the others in their order around it
    standings = api.get("/v1/rankings/tournament:t1", headers=auth(BOARD_KEY))
    assert standings.json()["version"] == 2
    assert columns(standings, "overridden", "computed_rank") == [
        (1, "c", True, 3),
        (2, "a", False, None),
        (3, "b", False, None),
    ]
    note = standings.json()["standings"][0]["override"]
    assert (note["reason"], note["actor"], note["at"]) == ("b and a were penalised", "referee", entry["at"])
    # and the trail read back
    trail = api.get("/v1/rankings/tournament:t1/overrides", headers=auth(BOARD_KEY))
    assert trail.json() == {"scope": "tournament:t1", "entries": [entry]}
    # and every rank it moved announced to the exchange, once committed
    assert sorted((e["type"], e["data"]["topic"], e["data"]["old_rank"], e["data"]["new_rank"]) for e in published) == [
        ("ranking.changed", "team:a", 1, 2),
        ("ranking.changed", "team:b", 2, 3),
        ("ranking.changed", "team:c", 3, 1),
    ]
    assert {e["data"]["tournament_name"] for e in published} == {"Spring Cup"}
    command = Event.get(Event.type == "tidings.standings.override")
    assert (command.source, command.publisher) == ("/tidings/api", "api:staff")


def test_the_same_override_again_is_a_200_that_changes_nothing(
    api: TestClient, catalog: Catalog, published: list[dict[str, Any]]
) -> None:
    # given
    three_teams(catalog)
    first = api.post("/v1/rankings/tournament:t1/overrides", json=override(), headers=auth(STAFF_KEY))
    published.clear()
    # when
    again = api.post("/v1/rankings/tournament:t1/overrides", json=override(), headers=auth(STAFF_KEY))
    # then
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    trail = api.get("/v1/rankings/tournament:t1/overrides", headers=auth(BOARD_KEY)).json()
    assert len(trail["entries"]) == 1
    assert api.get("/v1/rankings/tournament:t1", headers=auth(BOARD_KEY)).json()["version"] == 2
    assert published == []


def test_a_revoke_is_a_204_then_a_404_and_the_trail_gives_the_rank_the_team_went_back_to(
    api: TestClient, catalog: Catalog, published: list[dict[str, Any]]
) -> None:
    # given c set first by hand
    three_teams(catalog)
    api.post("/v1/rankings/tournament:t1/overrides", json=override(), headers=auth(STAFF_KEY))
    published.clear()
    revoke = {"reason": "penalty overturned", "actor": "head referee"}
    # when
    first = api.delete("/v1/rankings/tournament:t1/overrides/c", params=revoke, headers=auth(STAFF_KEY))
    second = api.delete("/v1/rankings/tournament:t1/overrides/c", params=revoke, headers=auth(STAFF_KEY))
    # then
    assert (first.status_code, first.content) == (204, b"")
    assert second.status_code == 404
    assert second.json()["detail"] == "team 'c' has no override in tournament:t1"
    entries = api.get("/v1/rankings/tournament:t1/overrides", headers=auth(BOARD_KEY)).json()["entries"]
    assert [(e["action"], e["old_rank"], e["new_rank"], e["reason"], e["actor"]) for e in entries] == [
        ("set", 3, 1, "b and a were penalised", "referee"),
        ("revoke", 1, 3, "penalty overturned", "head referee"),
    ]
    standings = api.get("/v1/rankings/tournament:t1", headers=auth(BOARD_KEY))
    assert columns(standings, "overridden") == [(1, "a", False), (2, "b", False), (3, "c", False)]
    assert sorted((e["data"]["topic"], e["data"]["new_rank"]) for e in published) == [
        ("team:a", 1),
        ("team:b", 2),
        ("team:c", 3),
    ]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"team_id": "c", "rank": 1, "actor": "referee"}, "reason", "Field required"),
        ({"team_id": "c", "rank": 1, "reason": "why"}, "actor", "Field required"),
        ({**override(), "colour": "red"}, "colour", "Extra inputs are not permitted"),
        (override(reason="  "), "reason", "tidings.standings.override: reason is required"),
        (override(actor=""), "actor", "tidings.standings.override: actor is required"),
        (override(rank=0), "rank", "tidings.standings.override: rank must be an integer of 1 or more"),
        (override(rank=4), "rank", "tidings.standings.override: rank 4 is past the last: tournament:t1 has 3 teams"),
        (override(team_id="zebras"), "team_id", "tidings.standings.override: team_id 'zebras' has no result"),
    ],
)
def test_an_override_of_the_wrong_shape_or_that_the_command_refuses_is_a_422_naming_the_field(
    api: TestClient, catalog: Catalog, body: dict[str, Any], field: str, message: str
) -> None:
    # given
    three_teams(catalog)
    # when
    response = api.post("/v1/rankings/tournament:t1/overrides", json=body, headers=auth(STAFF_KEY))
    # then: the shape is pydantic's to check, the values the command's, whose reason it gives
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["in"], error["field"]) == ("body", field)
    assert error["message"].startswith(message)
    assert api.get("/v1/rankings/tournament:t1/overrides", headers=auth(BOARD_KEY)).json()["entries"] == []


def test_a_revoke_without_its_reason_or_actor_is_a_422_naming_the_query_parameter(
    api: TestClient, catalog: Catalog
) -> None:
    # given
    three_teams(catalog)
    api.post("/v1/rankings/tournament:t1/overrides", json=override(), headers=auth(STAFF_KEY))
    url = "/v1/rankings/tournament:t1/overrides/c"
    # when
    no_actor = api.delete(url, params={"reason": "overturned"}, headers=auth(STAFF_KEY))
    blank_reason = api.delete(url, params={"reason": " ", "actor": "referee"}, headers=auth(STAFF_KEY))
    # then
    assert [(e["in"], e["field"]) for e in no_actor.json()["errors"]] == [("query", "actor")]
    assert [(e["in"], e["field"]) for e in blank_reason.json()["errors"]] == [("query", "reason")]
    assert blank_reason.json()["errors"][0]["message"].startswith("tidings.standings.override: reason is required")
    assert len(api.get("/v1/rankings/tournament:t1/overrides", headers=auth(BOARD_KEY)).json()["entries"]) == 1


def test_an_override_of_the_overall_scope_is_a_422_naming_the_path(api: TestClient, catalog: Catalog) -> None:
    three_teams(catalog)
    response = api.post("/v1/rankings/overall/overrides", json=override(), headers=auth(STAFF_KEY))
    assert response.status_code == 422
    assert [(e["in"], e["field"]) for e in response.json()["errors"]] == [("path", "scope")]


def test_reading_rankings_needs_the_rankings_scope_and_overriding_the_overrides_scope(
    db: str, catalog: Catalog, published: list[dict[str, Any]]
) -> None:
    # given a key for each scope but these
    events_key = "events-key-0123456789abcdefghijklmnopqrstuv"
    settings = Settings(database_url=db, api_keys=parse_api_keys(f"board:rankings:{BOARD_KEY},svc:events:{events_key}"))
    three_teams(catalog)
    with TestClient(create_app(settings, catalog)) as api:
        # when / then
        assert api.get("/v1/rankings/overall").status_code == 401
        assert api.get("/v1/rankings/overall", headers=auth(events_key)).status_code == 403
        assert api.get("/v1/series/s1", headers=auth(events_key)).status_code == 403
        assert api.get("/v1/rankings/tournament:t1/overrides", headers=auth(events_key)).status_code == 403
        refused = api.post("/v1/rankings/tournament:t1/overrides", json=override(), headers=auth(BOARD_KEY))
        assert (refused.status_code, refused.json()["detail"]) == (
            403,
            "the API key 'board' lacks the 'overrides' scope",
        )
        revoke = {"reason": "r", "actor": "a"}
        assert (
            api.delete("/v1/rankings/tournament:t1/overrides/c", params=revoke, headers=auth(BOARD_KEY)).status_code
            == 403
        )


# --- the web process --------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_web_process_serves_the_standings_and_publishes_what_an_override_moves(
    deployment: Deployment, catalog: Catalog
) -> None:
    # given a queue on the deployment's exchange for ranking.changed, and results in its database
    connection = pika.BlockingConnection(pika.URLParameters(deployment.env["TIDINGS_BROKER_URL"]))
    channel = connection.channel()
    channel.exchange_declare(deployment.exchange, exchange_type="topic", durable=True)
    queue = channel.queue_declare(f"rankings-{uuid.uuid4().hex[:8]}", exclusive=True).method.queue
    channel.queue_bind(queue, deployment.exchange, routing_key="ranking.changed")
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(STAFF_KEY) as client:
        deployment.use_database()
        migrate()  # done by the web process already: this only waits for it
        three_teams(catalog)
        # when
        overall = client.get("/v1/rankings/overall")
        moved = client.post("/v1/rankings/tournament:t1/overrides", json=override())
    # then
    assert overall.status_code == 200
    assert [(row["rank"], row["team_id"]) for row in overall.json()["standings"]] == [(1, "a"), (2, "b"), (3, "c")]
    assert moved.status_code == 201
    bodies = []
    while (message := channel.basic_get(queue, auto_ack=True))[0] is not None:
        bodies.append(json.loads(message[2]))
    connection.close()
    assert sorted((b["data"]["team_id"], b["data"]["new_rank"]) for b in bodies) == [("a", 2), ("b", 3), ("c", 1)]
