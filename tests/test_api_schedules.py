"""GET /v1/schedules and POST /v1/schedules/cancel: scheduled deliveries, pages of them, and cancelling them.

The unit tests run the app in this process on each database; the integration tests speak to the web
process beside a real worker.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dispatcher.api.app import create_app
from dispatcher.core.api_keys import parse_api_keys
from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import Settings
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.models import Delivery, DeliveryStatus, Event
from tests.support.deployment import Deployment
from tests.support.events import cloud_event, parsed_event
from tests.support.publishing import publish_event
from tests.support.wait import wait_for

EVENTS_KEY = "events-key-0123456789abcdefghijklmnopqrstuv"
READ_KEY = "read-key-0123456789abcdefghijklmnopqrstuvwxyz"
CANCEL_KEY = "cancel-key-0123456789abcdefghijklmnopqrstuvw"
API_KEYS = f"teams:events:{EVENTS_KEY},support:read:{READ_KEY},ops:schedules:{CANCEL_KEY}"
LATER = "2030-01-01T17:00:00Z"


def reminder(recipients: list[str], *, deliver_at: str = LATER, cancel_key: str | None = None) -> dict[str, Any]:
    """The data of a match.scheduled due at ``deliver_at``."""
    data: dict[str, Any] = {
        "recipients": recipients,
        "tournament_name": "Cup",
        "opponent_name": "Owls",
        "starts_at": "2030-01-01T18:00:00Z",
        "deliver_at": deliver_at,
    }
    if cancel_key is not None:
        data["cancel_key"] = cancel_key
    return data


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- in this process, on each database ------------------------------------------------------------------------


@pytest.fixture
def api(db: str, catalog: Catalog) -> Iterator[TestClient]:
    settings = Settings(database_url=db, api_keys=parse_api_keys(API_KEYS))
    with TestClient(create_app(settings, catalog)) as client:
        yield client


def schedule(catalog: Catalog, recipients: list[str], **options: Any) -> str:
    event = parsed_event("match.scheduled", reminder(recipients, **options), source="/matches")
    ingest_event(event, catalog, ["in_app"])
    return event.id


def test_schedules_are_listed_latest_due_first_in_pages_that_neither_repeat_nor_skip(
    api: TestClient, catalog: Catalog
) -> None:
    # given five scheduled deliveries (two due at the same time) and one due now
    for day, users in ((1, ["ana", "bo"]), (2, ["cy"]), (3, ["dee"]), (4, ["eve"])):
        schedule(catalog, users, deliver_at=f"2030-01-0{day}T17:00:00Z")
    now = parsed_event("match.started", {"recipients": ["ana"], "tournament_name": "Cup", "opponent_name": "O"})
    ingest_event(now, catalog, ["in_app"])
    # when
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = api.get("/v1/schedules", params=params, headers=auth(READ_KEY))
        assert response.status_code == 200, response.text
        pages.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    # then
    assert [len(page) for page in pages] == [2, 2, 1]
    listed = [(item["target"]["id"], item["due_at"]) for page in pages for item in page]
    assert listed == [
        ("eve", "2030-01-04T17:00:00.000Z"),
        ("dee", "2030-01-03T17:00:00.000Z"),
        ("cy", "2030-01-02T17:00:00.000Z"),
        ("ana", "2030-01-01T17:00:00.000Z"),
        ("bo", "2030-01-01T17:00:00.000Z"),
    ]
    item = pages[0][0]
    assert (item["type"], item["source"], item["channel"], item["status"]) == (
        "match.scheduled",
        "/matches",
        "in_app",
        "pending",
    )
    assert item["target"] == {"kind": "user", "id": "eve"}


def test_schedules_can_be_filtered_by_status(api: TestClient, catalog: Catalog) -> None:
    schedule(catalog, ["ana", "bo"])
    Delivery.update(status=DeliveryStatus.CANCELLED).where(Delivery.user_id == "bo").execute()
    response = api.get("/v1/schedules", params={"status": "cancelled"}, headers=auth(READ_KEY))
    assert [item["target"]["id"] for item in response.json()["items"]] == ["bo"]
    assert api.get("/v1/schedules", params={"status": "lost"}, headers=auth(READ_KEY)).status_code == 422


@pytest.mark.parametrize("cursor", ["garbage", "czE6bm90LWEtdGltZXwx", "!!!", "x" * 300])
def test_an_invalid_cursor_is_a_400(api: TestClient, cursor: str) -> None:
    response = api.get("/v1/schedules", params={"cursor": cursor}, headers=auth(READ_KEY))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_listing_schedules_needs_the_read_scope_and_cancelling_them_the_schedules_scope(api: TestClient) -> None:
    assert api.get("/v1/schedules").status_code == 401
    assert api.get("/v1/schedules", headers=auth(CANCEL_KEY)).status_code == 403
    assert api.post("/v1/schedules/cancel", json={"cancel_key": "k"}, headers=auth(READ_KEY)).status_code == 403


def test_a_cancel_says_how_many_it_cancelled_and_how_many_had_already_gone_out(
    api: TestClient, catalog: Catalog
) -> None:
    # given an event scheduled for ana, bo and cy, of which cy's went out already
    event_id = schedule(catalog, ["ana", "bo", "cy"])
    Delivery.update(status=DeliveryStatus.SENT).where(Delivery.user_id == "cy").execute()
    target = {"source": "/matches", "id": event_id}
    # when / then: bo only
    first = api.post("/v1/schedules/cancel", json={**target, "recipients": ["bo"]}, headers=auth(CANCEL_KEY))
    assert first.json() == {"cancelled": 1, "already_sent": 0}
    # and then everyone: ana is cancelled, cy's stays sent, bo's was cancelled before
    second = api.post("/v1/schedules/cancel", json=target, headers=auth(CANCEL_KEY))
    assert second.json() == {"cancelled": 1, "already_sent": 1}
    assert sorted((d.user_id, d.status) for d in Delivery.select()) == [
        ("ana", "cancelled"),
        ("bo", "cancelled"),
        ("cy", "sent"),
    ]
    # and again: nothing left to cancel
    assert api.post("/v1/schedules/cancel", json=target, headers=auth(CANCEL_KEY)).json() == {
        "cancelled": 0,
        "already_sent": 1,
    }


def test_a_cancel_key_cancels_every_event_that_carries_it_whoever_published_it(
    api: TestClient, catalog: Catalog
) -> None:
    # given two events with the key, from different sources and publishers, and one with another key
    for source in ("/matches", "/leagues"):
        event = parsed_event("match.scheduled", reminder(["ana"], cancel_key="match:42"), source=source)
        ingest_event(event, catalog, ["in_app"])
    schedule(catalog, ["bo"], cancel_key="match:43")
    # when
    response = api.post("/v1/schedules/cancel", json={"cancel_key": "match:42"}, headers=auth(CANCEL_KEY))
    # then
    assert response.json() == {"cancelled": 2, "already_sent": 0}
    assert sorted((d.user_id, d.status) for d in Delivery.select()) == [
        ("ana", "cancelled"),
        ("ana", "cancelled"),
        ("bo", "pending"),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"source": "/matches"}, "body"),
        ({"source": "/matches", "id": "x", "cancel_key": "k"}, "body"),
        ({"cancel_key": "k", "recipients": "ana"}, "recipients"),
        ({"cancel_key": "k", "user": "ana"}, "user"),
        ({"cancel_key": ""}, "cancel_key"),
    ],
)
def test_a_cancel_request_of_the_wrong_shape_is_a_422_naming_the_field(
    api: TestClient, body: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/schedules/cancel", json=body, headers=auth(CANCEL_KEY))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


def test_cancelling_an_unknown_event_is_a_404(api: TestClient) -> None:
    response = api.post("/v1/schedules/cancel", json={"source": "/matches", "id": "nope"}, headers=auth(CANCEL_KEY))
    assert response.status_code == 404


# --- the web process beside a worker --------------------------------------------------------------------------


@pytest.mark.integration
def test_scheduled_events_posted_over_http_are_listed_and_cancelled_with_counts(running: Deployment) -> None:
    # given a reminder posted for ana and bo, due tomorrow
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    data = reminder(["ana", "bo"], deliver_at=tomorrow.isoformat(), cancel_key="match:42")
    event = cloud_event("match.scheduled", data, source="/matches")
    due = tomorrow.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    with running.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client() as client:
        assert client.post("/v1/events", json=event, headers=auth(EVENTS_KEY)).status_code == 202
        wait_for(lambda: Delivery.select().count() == 2, what="the two deliveries")
        # when / then
        listed = client.get("/v1/schedules", headers=auth(READ_KEY)).json()
        assert sorted((i["target"]["id"], i["status"], i["due_at"]) for i in listed["items"]) == [
            ("ana", "pending", due),
            ("bo", "pending", due),
        ]
        assert listed["next_cursor"] is None
        cancel = {"source": "/matches", "id": event["id"], "recipients": ["bo"]}
        assert client.post("/v1/schedules/cancel", json=cancel, headers=auth(CANCEL_KEY)).json() == {
            "cancelled": 1,
            "already_sent": 0,
        }
        by_key = client.post("/v1/schedules/cancel", json={"cancel_key": "match:42"}, headers=auth(CANCEL_KEY))
        assert by_key.json() == {"cancelled": 1, "already_sent": 0}
        pending = client.get("/v1/schedules", params={"status": "pending"}, headers=auth(READ_KEY)).json()
        assert pending["items"] == []


@pytest.mark.integration
def test_a_cancel_posted_as_an_event_reaches_only_the_keys_own_events_as_on_the_bus(running: Deployment) -> None:
    # given one reminder published on the bus by another producer, and one posted with the key, sharing a cancel_key
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    options = {"deliver_at": tomorrow, "cancel_key": "match:42"}
    theirs = publish_event(running, "match.scheduled", reminder(["ana"], **options), source="/matches")
    ours = cloud_event("match.scheduled", reminder(["bo"], **options), source="/matches")
    cancel = cloud_event("tidings.notification.cancel", {"cancel_key": "match:42"}, source="/matches")
    with running.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client() as client:
        assert client.post("/v1/events", json=ours, headers=auth(EVENTS_KEY)).status_code == 202
        wait_for(lambda: Delivery.select().count() == 2, what="both deliveries")
        # when
        assert client.post("/v1/events", json=cancel, headers=auth(EVENTS_KEY)).status_code == 202
    # then only the key's own event is cancelled
    wait_for(lambda: Event.select().where(Event.event_id == cancel["id"]).exists(), what="the cancel applied")
    statuses = {d.event.event_id: d.status for d in Delivery.select(Delivery, Event).join(Event)}
    assert statuses == {theirs: "pending", ours["id"]: "cancelled"}
