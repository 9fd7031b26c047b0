"""Users and topic subscriptions over HTTP (API key), against the real web process and its database."""

from __future__ import annotations

import pytest

from dispatcher.api.auth import mint_user_token
from dispatcher.commands.registry import CHECKS, REDACTED
from dispatcher.core import clock
from dispatcher.core.errors import InvalidCommand
from dispatcher.storage.models import Delivery, Event, InboxItem, Subscription, User
from tests.support.deployment import USER_TOKEN_SECRET, Deployment

pytestmark = pytest.mark.integration

OPS_KEY = "ops-key-0123456789abcdefghijklmnopqrstuvwxyz"
VIEWER_KEY = "viewer-key-0123456789abcdefghijklmnopqrstuvw"
API_KEYS = f"ops:read+users+webhooks:{OPS_KEY},viewer:read:{VIEWER_KEY}"
DISCORD_URL = "https://discord.com/api/webhooks/123/secret-token"


def reason(field: str, value: object) -> str:
    """What the tidings.user.upsert command says of this value."""
    with pytest.raises(InvalidCommand) as refused:
        CHECKS[field](value)
    return str(refused.value)


def test_a_user_put_over_http_is_stored_and_read_back_without_its_discord_webhook(deployment: Deployment) -> None:
    # given
    body = {
        "email": "ana@example.com",
        "name": "Ana",
        "timezone": "Europe/Paris",
        "locale": "fr",
        "digest_time": "07:30",
        "quiet_start": "22:00",
        "quiet_end": "07:00",
        "discord_webhook_url": DISCORD_URL,
    }
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        # when
        put = client.put("/v1/users/ana", json=body)
        got = client.get("/v1/users/ana")
    # then
    assert put.status_code == 200 and got.status_code == 200
    expected = {k: v for k, v in body.items() if k != "discord_webhook_url"}
    assert got.json() == put.json() == {"id": "ana", **expected, "has_discord_webhook": True}
    assert "secret-token" not in got.text
    deployment.use_database()
    user = User.get_by_id("ana")
    assert (user.email, user.timezone, user.quiet_start, user.discord_webhook_url) == (
        "ana@example.com",
        "Europe/Paris",
        "22:00",
        DISCORD_URL,
    )
    command = Event.get(Event.type == "tidings.user.upsert")
    assert (command.source, command.publisher) == ("/tidings/api", "api:ops")
    assert command.data["discord_webhook_url"] == REDACTED and command.data["email"] == REDACTED


def test_fields_left_out_of_a_user_put_are_kept_and_null_clears_one(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        # given
        client.put("/v1/users/ana", json={"email": "ana@example.com", "name": "Ana", "timezone": "Asia/Tokyo"})
        # when
        response = client.put("/v1/users/ana", json={"name": None, "timezone": None})
    # then
    assert response.status_code == 200
    assert response.json()["email"] == "ana@example.com"
    assert (response.json()["name"], response.json()["timezone"]) == (None, "UTC")
    deployment.use_database()
    assert (User.get_by_id("ana").name, User.get_by_id("ana").email) == (None, "ana@example.com")


@pytest.mark.parametrize(
    ("field", "value"),
    [("email", "not-an-address"), ("timezone", "Mars/Olympus_Mons"), ("digest_time", "25:00")],
)
def test_an_invalid_user_field_is_a_422_with_the_commands_reason_and_changes_nothing(
    deployment: Deployment, field: str, value: str
) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        # given
        client.put("/v1/users/ana", json={"email": "ana@example.com", "timezone": "Europe/Paris"})
        # when
        response = client.put("/v1/users/ana", json={"name": "Changed", field: value})
    # then
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"field": field, "in": "body", "message": reason(field, value)}]
    deployment.use_database()
    user = User.get_by_id("ana")
    assert (user.name, user.email, user.timezone, user.digest_time) == (
        None,
        "ana@example.com",
        "Europe/Paris",
        "08:00",
    )


def test_quiet_hours_given_half_are_refused_with_the_commands_reason(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        response = client.put("/v1/users/ana", json={"quiet_start": "22:00"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "quiet_start"
    assert "quiet_start and quiet_end go together" in response.json()["detail"]
    deployment.use_database()
    assert User.get_or_none(User.id == "ana") is None


def test_an_unknown_or_mistyped_user_field_is_a_422_naming_it(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        unknown = client.put("/v1/users/ana", json={"email": "ana@example.com", "favourite_colour": "teal"})
        mistyped = client.put("/v1/users/ana", json={"name": ["Ana"]})
        secret_read_back = client.put("/v1/users/ana", json={"has_discord_webhook": True})
    assert unknown.status_code == mistyped.status_code == secret_read_back.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["favourite_colour"]
    assert [e["field"] for e in mistyped.json()["errors"]] == ["name"]
    assert [e["field"] for e in secret_read_back.json()["errors"]] == ["has_discord_webhook"]
    deployment.use_database()
    assert User.get_or_none(User.id == "ana") is None


def test_a_discord_webhook_url_on_a_private_network_is_refused(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        response = client.put("/v1/users/ana", json={"discord_webhook_url": "https://10.1.2.3/api/webhooks/1/t"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "discord_webhook_url"
    assert "10.1.2.3 (private)" in response.json()["detail"]
    deployment.use_database()
    assert User.get_or_none(User.id == "ana") is None


def test_an_unknown_user_is_404(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        response = client.get("/v1/users/nobody")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_changes_need_the_users_scope_and_any_call_needs_a_key(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web:
        with web.client(VIEWER_KEY) as viewer:
            # when a key with only "read" tries to change things
            put_user = viewer.put("/v1/users/ana", json={"name": "Ana"})
            subscribe = viewer.put("/v1/topics/news/subscribers/ana")
            unsubscribe = viewer.delete("/v1/topics/news/subscribers/ana")
            read = viewer.get("/v1/users/ana")
        with web.client() as anonymous:
            no_key = anonymous.get("/v1/users/ana")
        with web.client("not-a-configured-key-0123456789abcdefgh") as stranger:
            wrong_key = stranger.put("/v1/users/ana", json={"name": "Ana"})
    # then
    assert put_user.status_code == subscribe.status_code == unsubscribe.status_code == 403
    assert "'users'" in put_user.json()["detail"]
    assert read.status_code == 404  # reading is allowed; there is no such user
    assert no_key.status_code == wrong_key.status_code == 401
    assert no_key.headers["www-authenticate"].startswith("Bearer")
    deployment.use_database()
    assert User.select().count() == 0 and Subscription.select().count() == 0


def test_subscribing_and_unsubscribing_a_user_is_idempotent(deployment: Deployment) -> None:
    def active() -> bool | None:
        row = Subscription.get_or_none(Subscription.topic == "tournament.42", Subscription.user_id == "ana")
        return None if row is None else row.active

    path = "/v1/topics/tournament.42/subscribers/ana"
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        deployment.use_database()
        # when subscribed twice
        assert [client.put(path).status_code for _ in range(2)] == [204, 204]
        # then
        assert active() is True
        assert Subscription.select().count() == 1
        # when unsubscribed twice
        assert [client.delete(path).status_code for _ in range(2)] == [204, 204]
        # then
        assert active() is False
        # and unsubscribing someone who never was is fine too
        assert client.delete("/v1/topics/tournament.42/subscribers/bob").status_code == 204


def test_a_topic_longer_than_an_id_may_be_is_a_422_naming_the_path_parameter(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(OPS_KEY) as client:
        response = client.put(f"/v1/topics/{'t' * 300}/subscribers/ana")
    assert response.status_code == 422
    assert response.json()["errors"][0] | {"message": ""} == {"field": "topic", "in": "path", "message": ""}


def _inbox_item(user_id: str, number: int, *, read: bool = False) -> InboxItem:
    event = Event.create(source="/tests", event_id=f"{user_id}-{number}", type="team.invite.sent", data={})
    delivery = Delivery.create(event=event, user_id=user_id, channel="in_app", status="sent")
    return InboxItem.create(
        delivery=delivery,
        user_id=user_id,
        type="team.invite.sent",
        title=f"Invite {number}",
        body="Join us",
        data={"n": number},
        read_at=clock.now() if read else None,
    )


def test_support_staff_see_a_users_inbox_exactly_as_the_user_does(deployment: Deployment) -> None:
    with deployment.web(TIDINGS_API_KEYS=API_KEYS).start() as web, web.client(VIEWER_KEY) as staff:
        # given ana's three notifications (the middle one read) and one of bob's
        deployment.use_database()
        ana = [_inbox_item("ana", n, read=n == 2) for n in (1, 2, 3)]
        _inbox_item("bob", 1)
        token = mint_user_token(USER_TOKEN_SECRET, "ana", ttl=600)
        # when
        first = staff.get("/v1/users/ana/notifications", params={"limit": 2})
        second = staff.get("/v1/users/ana/notifications", params={"limit": 2, "cursor": first.json()["next_cursor"]})
        unread = staff.get("/v1/users/ana/notifications", params={"unread": "true"})
        with web.client(token) as user:
            own = user.get("/v1/me/notifications", params={"limit": 2})
        bad_cursor = staff.get("/v1/users/ana/notifications", params={"cursor": "not-a-cursor"})
        stranger = staff.get("/v1/users/nobody/notifications")
    # then
    assert first.status_code == second.status_code == unread.status_code == 200
    assert [i["id"] for i in first.json()["items"]] == [ana[2].id, ana[1].id]
    assert [i["id"] for i in second.json()["items"]] == [ana[0].id] and second.json()["next_cursor"] is None
    assert [i["title"] for i in unread.json()["items"]] == ["Invite 3", "Invite 1"]
    assert own.status_code == 200 and own.json() == first.json()
    assert bad_cursor.status_code == 400
    assert stranger.status_code == 404


def test_a_users_inbox_needs_the_read_scope(deployment: Deployment) -> None:
    keys = f"{API_KEYS},changer:users:changer-key-0123456789abcdefghijklmnop"
    with (
        deployment.web(TIDINGS_API_KEYS=keys).start() as web,
        web.client("changer-key-0123456789abcdefghijklmnop") as c,
    ):
        response = c.get("/v1/users/ana/notifications")
    assert response.status_code == 403
