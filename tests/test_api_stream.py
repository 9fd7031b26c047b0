"""The live stream, end to end: raw pika → the worker → the inbox feed → the web process → an SSE client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dispatcher.api.auth import mint_user_token
from dispatcher.storage.models import InboxItem
from tests.support.deployment import Deployment
from tests.support.events import invite
from tests.support.publishing import publish_event
from tests.support.sse import STREAM, EventSource
from tests.support.sse import user_token as token
from tests.support.wait import wait_for
from tests.support.web import WebServer

pytestmark = pytest.mark.integration


@pytest.fixture
def web(running: Deployment) -> Iterator[WebServer]:
    with running.web().start() as server:
        yield server


def open_stream(web: WebServer, user_id: str, **options: Any) -> EventSource:
    """A stream that has sent its first counts: from then on it is bound to the feed."""
    source = EventSource(web, user_id, **options)
    source.next("count")
    return source


def rows_of(user_id: str) -> list[int]:
    return [item.id for item in InboxItem.select().where(InboxItem.user_id == user_id).order_by(InboxItem.id)]


def test_a_notification_published_with_raw_pika_arrives_on_the_stream_within_a_second(
    running: Deployment, web: WebServer
) -> None:
    # given
    source = open_stream(web, "ana")
    try:
        # when
        started = time.monotonic()
        publish_event(running, "team.invite.sent", invite(["ana"], team_name="Wolves"))
        # then
        event = source.next(timeout=1.0)
        elapsed = time.monotonic() - started
        [row_id] = rows_of("ana")
        assert event.id == str(row_id)
        item = event.json()
        assert (item["id"], item["type"], item["read_at"]) == (row_id, "team.invite.sent", None)
        assert "Wolves" in item["title"] + item["body"]
        count = source.next("count")
        assert (count.json(), count.id) == ({"total": 1, "unread": 1, "unseen": 1}, str(row_id))
        assert elapsed < 1.0
    finally:
        source.close()


def test_a_reconnection_with_last_event_id_replays_the_missed_notification_exactly_once(
    running: Deployment, web: WebServer
) -> None:
    # given a stream that received one notification, then disconnected
    source = open_stream(web, "ana")
    publish_event(running, "team.invite.sent", invite(["ana"]))
    first = source.next()
    source.close()
    # when one more arrives meanwhile, and the client reconnects with the last id it saw
    publish_event(running, "team.invite.sent", invite(["ana"]))
    missed = wait_for(lambda: rows_of("ana")[1:], what="the second inbox row")[0]
    again = EventSource(web, "ana", headers={"Last-Event-ID": first.id or ""})
    try:
        # then the missed one comes first, once, and live ones follow
        assert again.next().id == str(missed)
        publish_event(running, "team.invite.sent", invite(["ana"]))
        live = again.next()
        later = wait_for(lambda: rows_of("ana")[2:], what="the third inbox row")[0]
        assert live.id == str(later)
        notifications = [e.id for e in again.received() if e.event == "notification"]
        assert notifications == []
    finally:
        again.close()


def test_the_replay_also_takes_last_event_id_from_the_query_string(running: Deployment, web: WebServer) -> None:
    # given two rows stored while no stream was open
    publish_event(running, "team.invite.sent", invite(["ana"]))
    publish_event(running, "team.invite.sent", invite(["ana"]))
    first, second = wait_for(lambda: rows_of("ana") if len(rows_of("ana")) == 2 else None, what="two rows")
    # when
    with httpx.Client(base_url=web.url, timeout=10) as client:
        params = {"token": token("ana"), "last_event_id": str(first)}
        with client.stream("GET", STREAM, params=params) as response:
            lines = response.iter_lines()
            text = ""
            while "event: count" not in text:
                text += next(lines) + "\n"
    # then
    assert f"id: {second}\nevent: notification\n" in text
    assert f"id: {first}\n" not in text


def test_a_user_never_receives_another_users_notifications(running: Deployment, web: WebServer) -> None:
    # given streams of users whose ids look like routing patterns
    users = ["ana", "ana.#", "#", "*"]
    sources = {user: open_stream(web, user) for user in users}
    try:
        # when each gets one notification
        for user in users:
            publish_event(running, "team.invite.sent", invite([user]))
        # then each stream gets its own, and nothing else
        for user, source in sources.items():
            [row_id] = wait_for(lambda user=user: rows_of(user), what=f"{user}'s row")
            assert source.next().id == str(row_id)
        publish_event(running, "team.invite.sent", invite(["bo"]))
        wait_for(lambda: rows_of("bo"), what="bo's row")
        for source in sources.values():
            source.next("count")  # its own count, sent after its own notification
        for source in sources.values():
            assert [e for e in source.received() if e.event == "notification"] == []
    finally:
        for source in sources.values():
            source.close()


def test_a_bad_token_is_a_401_problem(web: WebServer) -> None:
    forged = mint_user_token("another-secret-of-at-least-32-bytes!", "ana", ttl=600)
    with httpx.Client(base_url=web.url, timeout=10) as client:
        for params in ({"token": forged}, {"token": "not-a-jwt"}, {}):
            response = client.get(STREAM, params=params)
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"


def test_a_bearer_token_works_too_and_a_bad_last_event_id_is_a_422(web: WebServer) -> None:
    headers = {"Authorization": f"Bearer {token('ana')}"}
    with httpx.Client(base_url=web.url, timeout=10, headers=headers) as client:
        with client.stream("GET", STREAM) as response:
            assert response.status_code == 200
            assert next(response.iter_lines()).startswith("retry:")
        response = client.get(STREAM, headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 422


def test_the_web_process_stops_promptly_with_streams_open(running: Deployment) -> None:
    # given
    server = running.web().start()
    source = open_stream(server, "ana")
    try:
        # when
        started = time.monotonic()
        server.stop()
        # then: well before --timeout-graceful-shutdown would cut the streams
        assert time.monotonic() - started < 5
        assert "Finished server process" in server.log()
        assert "timeout graceful shutdown exceeded" not in server.log()
    finally:
        source.close()
