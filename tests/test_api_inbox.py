"""The inbox over HTTP, from the real web process, on SQLite and PostgreSQL: pages, filters, counts, state changes,
read-all and archive-all, another user's ids, tokens, cursors and bodies that are refused."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from dispatcher.amqp.publisher import Publisher, build_event
from dispatcher.api.auth import mint_user_token
from dispatcher.cli.main import main
from dispatcher.core.catalog import Catalog
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.models import InboxItem
from tests.support.deployment import USER_TOKEN_SECRET, Deployment
from tests.support.events import invite, parsed_event
from tests.support.wait import wait_for
from tests.support.web import WebServer

pytestmark = pytest.mark.integration

BRACKET = "tournament.bracket_ready"
INVITE = "team.invite.sent"


def token(user: str, *, secret: str = USER_TOKEN_SECRET, ttl: float = 600) -> str:
    return mint_user_token(secret, user, ttl=ttl)


@pytest.fixture
def add_items(catalog: Catalog) -> Callable[..., list[int]]:
    """``count`` inbox rows of ``user``, each made from an event ingest routed to the in-app channel; their ids."""

    def add(user: str, count: int = 1, type_name: str = INVITE) -> list[int]:
        ids = []
        for n in range(count):
            data = invite([user]) if type_name == INVITE else {"recipients": [user], "tournament_name": f"Cup {n}"}
            [(delivery_id, _)] = ingest_event(parsed_event(type_name, data), catalog, ["in_app"]).to_enqueue
            row = InboxItem.create(
                delivery=delivery_id, user_id=user, type=type_name, title=f"{type_name} {n}", body="b", data=data
            )
            ids.append(row.id)
        return ids

    return add


def ids_of(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_the_inbox_lists_the_users_notifications_newest_first(
    web: WebServer, add_items: Callable[..., list[int]]
) -> None:
    # given
    ids = add_items("ana", 3)
    add_items("bo", 2)
    # when
    with web.client(token("ana")) as client:
        response = client.get("/v1/me/notifications")
    # then
    body = response.json()
    assert [item["id"] for item in body["items"]] == ids[::-1]
    assert body["next_cursor"] is None
    first = body["items"][0]
    assert set(first) == {
        "id", "type", "title", "body", "url", "data", "created_at", "seen_at", "read_at", "archived_at"
    }  # fmt: skip
    assert (first["type"], first["title"], first["data"]["team_name"]) == (INVITE, f"{INVITE} 2", "Wolves")
    assert first["created_at"].endswith("Z") and first["read_at"] is None


def test_pages_cover_the_inbox_without_duplicates_or_gaps_even_as_items_arrive(
    web: WebServer, add_items: Callable[..., list[int]]
) -> None:
    # given 23 notifications, read 7 at a time
    ids = add_items("ana", 23)
    seen: list[int] = []
    with web.client(token("ana")) as client:
        response = client.get("/v1/me/notifications", params={"limit": 7})
        seen += ids_of(response)
        add_items("ana", 2)  # newer ones arrive while the user pages: they belong to the first page, not the next
        pages = 1
        # when
        while (cursor := response.json()["next_cursor"]) is not None:
            response = client.get("/v1/me/notifications", params={"limit": 7, "cursor": cursor})
            seen += ids_of(response)
            pages += 1
    # then
    assert seen == ids[::-1]
    assert pages == 4


def test_filters_select_unread_archived_and_one_type(web: WebServer, add_items: Callable[..., list[int]]) -> None:
    # given
    read, archived, plain = add_items("ana", 3)
    [bracket] = add_items("ana", 1, BRACKET)
    with web.client(token("ana")) as client:
        client.post(f"/v1/me/notifications/{read}/read").raise_for_status()
        client.post(f"/v1/me/notifications/{archived}/archive").raise_for_status()

        def listed(**params: Any) -> list[int]:
            return ids_of(client.get("/v1/me/notifications", params=params))

        # when / then
        assert listed() == [bracket, plain, read]
        assert listed(unread="true") == [bracket, plain]
        assert listed(unread="false") == [read]
        assert listed(archived="true") == [archived]
        assert listed(archived="false", type=INVITE) == [plain, read]
        assert listed(type=BRACKET, unread="true") == [bracket]


def test_counts_give_total_unread_and_unseen_without_archived_ones(
    web: WebServer, add_items: Callable[..., list[int]]
) -> None:
    # given
    read, seen, archived, _ = add_items("ana", 4)
    add_items("bo", 5)
    with web.client(token("ana")) as client:
        assert client.get("/v1/me/notifications/count").json() == {"total": 4, "unread": 4, "unseen": 4}
        # when
        client.post(f"/v1/me/notifications/{read}/read").raise_for_status()
        client.post(f"/v1/me/notifications/{seen}/seen").raise_for_status()
        client.post(f"/v1/me/notifications/{archived}/archive").raise_for_status()
        # then
        assert client.get("/v1/me/notifications/count").json() == {"total": 3, "unread": 2, "unseen": 1}


def test_each_state_change_returns_the_item_as_it_now_is(web: WebServer, add_items: Callable[..., list[int]]) -> None:
    # given
    [item] = add_items("ana")
    with web.client(token("ana")) as client:

        def post(action: str) -> dict[str, Any]:
            response = client.post(f"/v1/me/notifications/{item}/{action}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            assert body["id"] == item
            return body

        # when / then: seen only
        seen = post("seen")
        assert seen["seen_at"] is not None and seen["read_at"] is None
        # read implies seen, and keeps the first seen time
        read = post("read")
        assert read["read_at"] is not None and read["seen_at"] == seen["seen_at"]
        assert post("read")["read_at"] == read["read_at"]  # idempotent
        unread = post("unread")
        assert unread["read_at"] is None and unread["seen_at"] == seen["seen_at"]
        archived = post("archive")
        assert archived["archived_at"] is not None
        assert ids_of(client.get("/v1/me/notifications")) == []
        assert post("unarchive")["archived_at"] is None
        assert ids_of(client.get("/v1/me/notifications")) == [item]


def test_read_all_and_archive_all_change_every_item_or_those_of_one_type(
    web: WebServer, add_items: Callable[..., list[int]]
) -> None:
    # given
    invites = add_items("ana", 3)
    brackets = add_items("ana", 2, BRACKET)
    add_items("bo", 2)
    with web.client(token("ana")) as client:
        # when / then
        assert client.post("/v1/me/notifications/read-all", json={"type": BRACKET}).json() == {"updated": 2}
        assert client.get("/v1/me/notifications/count").json() == {"total": 5, "unread": 3, "unseen": 3}
        assert client.post("/v1/me/notifications/read-all").json() == {"updated": 3}
        assert client.post("/v1/me/notifications/read-all").json() == {"updated": 0}
        assert client.post("/v1/me/notifications/archive-all", json={"type": INVITE}).json() == {"updated": 3}
        assert ids_of(client.get("/v1/me/notifications")) == brackets[::-1]
        assert client.post("/v1/me/notifications/archive-all", json={}).json() == {"updated": 2}
        assert ids_of(client.get("/v1/me/notifications", params={"archived": "true"})) == (invites + brackets)[::-1]
    with web.client(token("bo")) as client:
        assert client.get("/v1/me/notifications/count").json() == {"total": 2, "unread": 2, "unseen": 2}


def test_another_users_notification_is_404_like_an_unknown_one_and_stays_unchanged(
    web: WebServer, add_items: Callable[..., list[int]]
) -> None:
    # given
    [theirs] = add_items("bo")
    with web.client(token("ana")) as client:
        # when
        responses = [
            client.post(f"/v1/me/notifications/{item}/{action}")
            for item in (theirs, 987654)
            for action in ("read", "unread", "seen", "archive", "unarchive")
        ]
    # then
    assert {r.status_code for r in responses} == {404}
    assert {r.headers["content-type"] for r in responses} == {"application/problem+json"}
    assert responses[0].json() == responses[5].json()  # nothing tells the two apart
    with web.client(token("bo")) as client:
        [item] = client.get("/v1/me/notifications").json()["items"]
    assert (item["id"], item["read_at"], item["seen_at"], item["archived_at"]) == (theirs, None, None, None)


def test_a_user_tidings_has_never_heard_of_has_an_empty_inbox(sqlite_web: WebServer) -> None:
    with sqlite_web.client(token("newcomer")) as client:
        assert client.get("/v1/me/notifications").json() == {"items": [], "next_cursor": None}
        assert client.get("/v1/me/notifications/count").json() == {"total": 0, "unread": 0, "unseen": 0}
        assert client.post("/v1/me/notifications/read-all").json() == {"updated": 0}
        assert client.post("/v1/me/notifications/1/read").status_code == 404


def test_forged_expired_wrong_secret_and_missing_tokens_are_401(sqlite_web: WebServer) -> None:
    # given
    now = int(time.time())
    header, payload, signature = token("bo").split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    forged_payload = jwt.utils.base64url_encode(json.dumps({**claims, "sub": "ana"}).encode()).decode()
    bad = {
        "forged": f"{header}.{forged_payload}.{signature}",
        "expired": jwt.encode({"sub": "ana", "iat": now - 7200, "exp": now - 3600}, USER_TOKEN_SECRET, "HS256"),
        "wrong secret": token("ana", secret="another-secret-0123456789abcdef-0123456789"),
        "not a JWT": "not-a-token",
        "unsigned": jwt.encode({"sub": "ana", "exp": now + 60}, None, algorithm="none"),
    }
    for name, value in bad.items():
        with sqlite_web.client(value) as client:
            # when
            responses = [client.get("/v1/me/notifications"), client.post("/v1/me/notifications/read-all")]
        # then
        assert [r.status_code for r in responses] == [401, 401], name
        assert responses[0].headers["www-authenticate"].startswith("Bearer"), name
    with sqlite_web.client() as client:
        assert client.get("/v1/me/notifications/count").status_code == 401


def test_a_cursor_tidings_did_not_give_is_400(sqlite_web: WebServer) -> None:
    with sqlite_web.client(token("ana")) as client:
        for cursor in ("garbage", "djEuMA", "'; DROP TABLE inbox_item; --", "A" * 100):
            response = client.get("/v1/me/notifications", params={"cursor": cursor})
            assert response.status_code == 400, cursor
            assert response.headers["content-type"] == "application/problem+json"
            assert "cursor" in response.json()["detail"]


def test_unknown_fields_types_and_bad_values_are_422_naming_the_field(sqlite_web: WebServer) -> None:
    with sqlite_web.client(token("ana")) as client:
        cases = {
            "colour": client.post("/v1/me/notifications/read-all", json={"type": INVITE, "colour": "red"}),
            "type": client.post("/v1/me/notifications/archive-all", json={"type": "no.such.type"}),
            "limit": client.get("/v1/me/notifications", params={"limit": 101}),
            "unread": client.get("/v1/me/notifications", params={"unread": "perhaps"}),
            "item_id": client.post("/v1/me/notifications/abc/read"),
        }
        query_type = client.get("/v1/me/notifications", params={"type": "no.such.type"})
    for field, response in cases.items():
        assert response.status_code == 422, (field, response.text)
        assert field in [error["field"] for error in response.json()["errors"]], (field, response.json())
    assert query_type.status_code == 422
    assert query_type.json()["errors"][0] == {
        "field": "type",
        "in": "query",
        "message": "'no.such.type' is not a notification type of the catalog",
    }


def test_a_published_event_reaches_the_inbox_api_and_the_cli_shows_the_same(
    capsys: pytest.CaptureFixture[str], running: Deployment
) -> None:
    # given a worker and the web process
    with running.web().start() as web, web.client(token("ana")) as client:
        # when an event is published on the bus
        with Publisher(running.settings.broker_url, running.settings.exchange) as publisher:
            publisher.publish(build_event(INVITE, invite(["ana"]), source="/tests"))
        items = wait_for(
            lambda: client.get("/v1/me/notifications").json()["items"], what="the notification in the API's list"
        )
        # then
        assert [item["type"] for item in items] == [INVITE]
        assert client.get("/v1/me/notifications/count").json() == {"total": 1, "unread": 1, "unseen": 1}
        capsys.readouterr()
        assert main(["inbox", "list", "ana", "--json"], settings=running.settings) == 0
        assert json.loads(capsys.readouterr().out) == items
        assert main(["inbox", "mark-read", "ana", str(items[0]["id"])], settings=running.settings) == 0
        assert client.get("/v1/me/notifications/count").json() == {"total": 1, "unread": 0, "unseen": 0}
