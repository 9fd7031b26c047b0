"""POST /v1/events and GET /v1/deliveries: the bus's checks and authority over HTTP.

The unit tests build the app in this process (no broker: every refusal comes before publishing);
the integration tests start the web process as the Procfile does, beside a real worker.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from dispatcher.amqp.intake import ORIGINAL_PUBLISHER_HEADER
from dispatcher.amqp.publisher import Publisher, PublishError
from dispatcher.api.app import create_app
from dispatcher.api.events import binary_to_structured
from dispatcher.api.publishing import PublisherPool
from dispatcher.core.api_keys import parse_api_keys
from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import Settings
from dispatcher.storage.models import Delivery, Event, InboxItem, Rejection, User
from tests.support.deployment import Deployment
from tests.support.events import as_body, cloud_event, invite
from tests.support.publishing import publish
from tests.support.services import free_port
from tests.support.wait import wait_for

EVENTS_KEY = "events-key-0123456789abcdefghijklmnopqrstuv"
COMMANDS_KEY = "commands-key-0123456789abcdefghijklmnopqrstu"
READ_KEY = "read-key-0123456789abcdefghijklmnopqrstuvwxyz"
API_KEYS = f"billing:events:{EVENTS_KEY},ops:events+commands:{COMMANDS_KEY},support:read:{READ_KEY}"
#: Bad events the exchange routes nowhere (no binding for their type): only the API can judge them.
UNROUTABLE = ("unknown type", "internal type")


def _bad_events() -> dict[str, dict[str, Any]]:
    """Events ingest refuses, each for its own reason."""
    return {
        "no specversion": {k: v for k, v in cloud_event("team.invite.sent", invite()).items() if k != "specversion"},
        "unknown type": cloud_event("team.invite.lost", invite()),
        "a required key missing": cloud_event("team.invite.sent", {"recipients": ["ana"], "team_name": "Wolves"}),
        "recipients not a list": cloud_event("team.invite.sent", invite(recipients="ana")),
        "dated in the future": cloud_event("team.invite.sent", invite(), time="2999-01-01T00:00:00Z"),
        "internal type": cloud_event("digest.daily", {"recipients": ["ana"]}),
    }


# --- in this process ---------------------------------------------------------------------------------------------


@pytest.fixture
def api(catalog: Catalog) -> Iterator[TestClient]:
    """The app with the test keys and a broker nobody listens on: nothing here may need to publish."""
    settings = Settings(api_keys=parse_api_keys(API_KEYS), broker_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    with TestClient(create_app(settings, catalog)) as client:
        yield client


def post(client: TestClient | httpx.Client, key: str | None, event: Any, **options: Any) -> httpx.Response:
    headers = {"Content-Type": "application/cloudevents+json", **({"Authorization": f"Bearer {key}"} if key else {})}
    headers.update(options.pop("headers", {}))
    content = event if isinstance(event, bytes) else as_body(event)
    return client.post("/v1/events", content=content, headers=headers, **options)


def test_posting_an_event_needs_a_configured_key_with_the_events_scope(api: TestClient) -> None:
    event = cloud_event("team.invite.sent", invite())
    assert post(api, None, event).status_code == 401
    assert post(api, "not-a-configured-key-0123456789abcdefghij", event).status_code == 401
    refused = post(api, READ_KEY, event)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "'events' scope" in refused.json()["detail"]


@pytest.mark.parametrize("case", sorted(_bad_events()))
def test_a_bad_event_is_a_422_whose_detail_is_the_reason_admission_gives(api: TestClient, case: str) -> None:
    # given what the worker's own intake and admission say of the event
    from dispatcher.amqp.intake import CONTENT_TYPE, Envelope
    from dispatcher.core.authority import Authority
    from dispatcher.core.errors import InvalidEvent
    from dispatcher.pipeline.admission import admit

    event = _bad_events()[case]
    settings = api.app.state.tidings.settings  # type: ignore[attr-defined]
    envelope = Envelope(routing_key=str(event.get("type")), content_type=CONTENT_TYPE, publisher="api:billing")
    with pytest.raises(InvalidEvent) as expected:
        admit(event, envelope, catalog=api.app.state.tidings.catalog, settings=settings, authority=Authority(()))  # type: ignore[attr-defined]
    # when
    response = post(api, EVENTS_KEY, event)
    # then
    assert response.status_code == 422
    assert response.json()["detail"] == str(expected.value)


def test_a_body_that_is_not_json_is_refused_in_the_intakes_words(api: TestClient) -> None:
    assert post(api, EVENTS_KEY, b"{not json").json()["detail"].startswith("the body is not JSON")
    assert post(api, EVENTS_KEY, b"[1, 2]").json()["detail"] == "the body is JSON but not an object (got list)"


def test_control_commands_and_restricted_types_need_the_commands_scope(api: TestClient) -> None:
    upsert = cloud_event("tidings.user.upsert", {"id": "ana", "email": "ana@example.com"})
    announcement = cloud_event("system.announcement", {"recipients": ["ana"], "title": "Hi", "message": "Hello"})
    for event in (upsert, announcement):
        response = post(api, EVENTS_KEY, event)
        assert response.status_code == 403, response.text
        assert "'api:billing' may not" in response.json()["detail"]
        assert "'commands' scope" in response.json()["detail"]


def test_a_command_with_the_commands_scope_or_an_open_command_passes_the_checks_and_only_then_needs_the_broker(
    api: TestClient,
) -> None:
    # the broker of this app is unreachable: passing every check means a 503, not a 403
    upsert = cloud_event("tidings.user.upsert", {"id": "ana", "email": "ana@example.com"})
    cancel = cloud_event("tidings.notification.cancel", {"cancel_key": "match:42"})
    assert post(api, COMMANDS_KEY, upsert).status_code == 503
    response = post(api, EVENTS_KEY, cancel)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "send it again" in response.json()["detail"]


def test_a_request_in_neither_mode_is_a_415(api: TestClient) -> None:
    response = post(api, EVENTS_KEY, cloud_event("team.invite.sent", invite()), headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"


def test_a_binary_mode_request_is_the_structured_event_it_stands_for() -> None:
    headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", "b-1"),
        ("ce-source", "/teams"),
        ("ce-type", "team.invite.sent"),
        ("ce-subject", "caf%C3%A9"),
        ("ce-traceparent", "00-abc-01"),
        ("authorization", "Bearer x"),
    ]
    body = binary_to_structured(headers, "application/json", as_body(invite()))
    assert httpx.Response(200, content=body).json() == {
        "specversion": "1.0",
        "id": "b-1",
        "source": "/teams",
        "type": "team.invite.sent",
        "subject": "café",
        "traceparent": "00-abc-01",
        "datacontenttype": "application/json",
        "data": invite(),
    }


def test_a_binary_mode_request_is_checked_like_any_event(api: TestClient) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "b-2", "ce-source": "/teams", "ce-type": "team.invite.sent"}
    response = post(api, EVENTS_KEY, as_body({"recipients": ["ana"]}), headers=headers)
    assert (response.status_code, response.json()["detail"]) == (
        422,
        "data lacks the keys team.invite.sent requires: team_name, inviter_name",
    )
    text = post(api, EVENTS_KEY, b"hello", headers={**headers, "Content-Type": "text/plain"})
    assert text.status_code == 422 and text.json()["detail"].startswith("the body is not JSON")


@dataclasses.dataclass
class FakePublisher:
    fails: bool
    published: list[bytes] = dataclasses.field(default_factory=list)
    closed: bool = False

    @property
    def connection(self) -> FakePublisher:
        return self

    @property
    def is_open(self) -> bool:
        return not self.closed

    def publish_raw(self, body: bytes, **options: Any) -> None:
        if self.fails:
            raise PublishError("publishing failed: StreamLostError")
        self.published.append(body)

    def close(self) -> None:
        self.closed = True


class FakePool(PublisherPool):
    def __init__(self, *plan: bool) -> None:
        super().__init__("amqp://guest:guest@127.0.0.1:1/%2F", "events")
        self.plan = list(plan)
        self.made: list[FakePublisher] = []

    def _connect(self) -> Publisher:
        self.made.append(FakePublisher(fails=self.plan.pop(0)))
        return self.made[-1]  # type: ignore[return-value]


def test_the_pool_reuses_a_connection_and_replaces_one_that_died_while_idle() -> None:
    # given a pool whose first connection will die after one publish
    pool = FakePool(False, False)
    pool.publish_raw(b"1", routing_key="t", message_id="1", headers={})
    pool.made[0].fails = True
    # when
    pool.publish_raw(b"2", routing_key="t", message_id="2", headers={})
    # then the second publish went out on a new connection, and the dead one is closed
    assert [p.published for p in pool.made] == [[b"1"], [b"2"]]
    assert pool.made[0].closed and not pool.made[1].closed
    pool.close()
    assert pool.made[1].closed
    with pytest.raises(PublishError):
        pool.publish_raw(b"3", routing_key="t", message_id="3", headers={})


def test_a_new_connection_that_fails_is_not_tried_again() -> None:
    pool = FakePool(True)
    with pytest.raises(PublishError):
        pool.publish_raw(b"1", routing_key="t", message_id="1", headers={})
    assert len(pool.made) == 1 and pool.made[0].closed


# --- the web process beside a worker --------------------------------------------------------------------------


def web_env() -> dict[str, str]:
    return {"TIDINGS_API_KEYS": API_KEYS}


@pytest.mark.integration
def test_an_event_posted_in_structured_or_binary_mode_reaches_the_inbox_and_its_deliveries_can_be_read(
    running: Deployment,
) -> None:
    # given
    structured = cloud_event("team.invite.sent", invite(["ana"]), source="/teams")
    binary_id = str(uuid.uuid4())
    binary = {
        "ce-specversion": "1.0",
        "ce-id": binary_id,
        "ce-source": "/teams",
        "ce-type": "team.invite.sent",
        "Content-Type": "application/json",
    }
    with running.web(**web_env()).start() as web, web.client() as client:
        # when
        first = post(client, EVENTS_KEY, structured)
        second = post(
            client, EVENTS_KEY, as_body(invite(["bo"])), headers={**binary, "Content-Type": "application/json"}
        )
        # then
        assert (first.status_code, first.json()) == (202, {"id": structured["id"], "source": "/teams"})
        assert (second.status_code, second.json()) == (202, {"id": binary_id, "source": "/teams"})
        wait_for(lambda: InboxItem.select().count() == 2, what="both inbox items")
        assert sorted(i.user_id for i in InboxItem.select()) == ["ana", "bo"]
        assert {e.publisher for e in Event.select()} == {"api:billing"}  # the key's name, not Tidings' user
        # and the deliveries of the first are listed
        wait_for(lambda: Delivery.select().where(Delivery.status == "sent").count() == 2, what="sent deliveries")
        listed = client.get(
            "/v1/deliveries",
            params={"source": "/teams", "event_id": structured["id"]},
            headers={"Authorization": f"Bearer {READ_KEY}"},
        )
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert body["event"] == {"id": structured["id"], "source": "/teams", "type": "team.invite.sent"}
        in_app = next(d for d in body["deliveries"] if d["channel"] == "in_app")
        assert in_app["target"] == {"kind": "user", "id": "ana"}
        assert (in_app["status"], in_app["attempts"], in_app["next_attempt_at"]) == ("sent", 1, None)
        assert in_app["sent_at"].endswith("Z")
        unknown = client.get(
            "/v1/deliveries",
            params={"source": "/teams", "event_id": "no-such-event"},
            headers={"Authorization": f"Bearer {READ_KEY}"},
        )
        assert unknown.status_code == 404
        assert client.get("/v1/deliveries", params={"source": "/teams", "event_id": "x"}).status_code == 401


@pytest.mark.integration
def test_the_same_bad_event_gets_the_same_reason_from_the_api_as_from_the_bus(running: Deployment) -> None:
    # given each bad event published on the bus (but those no binding routes), and the reasons the worker
    # dead-lettered them with
    events = {case: event for case, event in _bad_events().items() if case not in UNROUTABLE}
    publish(running, *events.values())
    wait_for(lambda: Rejection.select().count() == len(events), what="every rejection")
    by_id = {r.event_id: r.reason for r in Rejection.select()}
    with running.web(**web_env()).start() as web, web.client() as client:
        # when
        answers = {event["id"]: post(client, EVENTS_KEY, event) for event in events.values()}
    # then
    for case, event in events.items():
        assert answers[event["id"]].status_code == 422, case
        assert answers[event["id"]].json()["detail"] == by_id[event["id"]], case


@pytest.mark.integration
def test_a_command_applies_from_a_key_with_the_commands_scope_and_is_refused_from_one_without(
    running: Deployment,
) -> None:
    upsert = cloud_event("tidings.user.upsert", {"id": "ana", "email": "ana@example.com"})
    forged = cloud_event("tidings.user.upsert", {"id": "bo", "email": "bo@example.com"})
    with running.web(**web_env()).start() as web, web.client() as client:
        assert post(client, EVENTS_KEY, forged).status_code == 403
        assert post(client, COMMANDS_KEY, upsert).status_code == 202
    wait_for(lambda: User.get_or_none(User.id == "ana"), what="ana, upserted")
    assert Event.get(Event.event_id == upsert["id"]).publisher == running.settings.broker_user
    assert User.get_or_none(User.id == "bo") is None
    assert not Event.select().where(Event.event_id == forged["id"]).exists()


@pytest.mark.integration
def test_the_worker_judges_an_event_published_for_a_key_with_that_keys_authority(running: Deployment) -> None:
    # given a command published as the web process publishes, for a key without the commands scope,
    # as if the API had let it through
    forged = cloud_event("tidings.user.upsert", {"id": "bo", "email": "bo@example.com"})
    allowed = cloud_event("tidings.user.upsert", {"id": "ana", "email": "ana@example.com"})
    pool = PublisherPool(running.env["TIDINGS_BROKER_URL"], running.exchange)
    try:
        for event, publisher in ((forged, "api:billing"), (allowed, running.settings.broker_user)):
            pool.publish_raw(
                as_body(event),
                routing_key=event["type"],
                message_id=event["id"],
                headers={ORIGINAL_PUBLISHER_HEADER: publisher},
            )
    finally:
        pool.close()
    # then the worker refuses the first with the reason the API gives, and applies the second
    wait_for(lambda: Rejection.get_or_none(Rejection.event_id == forged["id"]), what="the forged upsert refused")
    reason = Rejection.get(Rejection.event_id == forged["id"]).reason
    assert reason.startswith("tidings.user.upsert is a control command and RabbitMQ user 'api:billing' may not")
    wait_for(lambda: User.get_or_none(User.id == "ana"), what="ana, upserted")
    assert User.get_or_none(User.id == "bo") is None
    with running.web(**web_env()).start() as web, web.client() as client:
        assert post(client, EVENTS_KEY, forged).json()["detail"].startswith(reason)


@pytest.mark.integration
def test_a_streamed_body_over_the_limit_to_post_events_is_a_413(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_HTTP_MAX_BODY_BYTES="1000", **web_env()).start() as web, web.client() as client:
        response = client.post(
            "/v1/events",
            content=iter([b'{"specversion": "1.0", "data": "', b"x" * 800, b"x" * 800, b'"}']),
            headers={"Authorization": f"Bearer {EVENTS_KEY}", "Content-Type": "application/cloudevents+json"},
        )
    assert response.status_code == 413
    assert response.json()["title"] == "Content Too Large"


@pytest.mark.integration
def test_an_event_posted_while_the_broker_is_unreachable_is_a_503_and_nothing_is_applied(
    deployment: Deployment,
) -> None:
    unreachable = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    with deployment.web(TIDINGS_BROKER_URL=unreachable, **web_env()).start() as web, web.client() as client:
        response = post(client, EVENTS_KEY, cloud_event("team.invite.sent", invite()))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
