"""Preferences over HTTP, from the real web process: GET shows what routing decides (what ingest does and
`tidings prefs show` prints), PUT and PATCH go through tidings.preferences.set and tidings.user.upsert, all or
nothing, for the token's user only."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import httpx
import pytest

from channels import channel_names
from dispatcher.api.auth import mint_user_token
from dispatcher.cli.main import main
from dispatcher.core import clock
from dispatcher.core.catalog import Catalog
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, Preference, User
from tests.support.deployment import USER_TOKEN_SECRET, Deployment
from tests.support.events import parsed_event
from tests.support.web import WebServer

pytestmark = pytest.mark.integration

CHANNELS = channel_names(addresses="user")
DIGESTS = channel_names(digests=True)
#: A type whose email can be a digest, and a critical one whose email is locked on.
PLAIN = "match.completed"
CRITICAL = "payout.received"


def token(user: str) -> str:
    return mint_user_token(USER_TOKEN_SECRET, user, ttl=600)


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {error["field"]: error["message"] for error in response.json()["errors"]}


def setting(enabled: bool, mode: str | None = None) -> dict[str, Any]:
    return {"enabled": enabled} if mode is None else {"enabled": enabled, "mode": mode}


def test_a_user_tidings_has_no_record_of_gets_the_catalogs_defaults_and_no_record_is_made(
    sqlite_web: WebServer, catalog: Catalog
) -> None:
    # when
    with sqlite_web.client(token("newcomer")) as client:
        body = ok(client.get("/v1/me/preferences"))
    # then
    assert (body["timezone"], body["digest_time"], body["quiet_start"], body["quiet_end"]) == (
        User.timezone.default,
        User.digest_time.default,
        None,
        None,
    )
    assert list(body["types"]) == catalog.public_names()
    for name, prefs in body["types"].items():
        kind = catalog.types[name]
        assert list(prefs["channels"]) == CHANNELS
        for channel, view in prefs["channels"].items():
            on = channel in kind.channels
            assert view == {
                "enabled": on,
                "mode": "immediate" if on and channel in DIGESTS else None,
                "locked": kind.critical and on,
            }, (name, channel)
    assert User.select().count() == 0 and Preference.select().count() == 0


def test_what_get_shows_is_what_ingest_does_and_what_the_cli_prints(
    web: WebServer, deployment: Deployment, catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    # given ana turns in-app off and takes a digest by email for one type, and Discord on for another
    changes = {
        PLAIN: {"channels": {CHANNELS[0]: setting(False), DIGESTS[0]: setting(True, "digest")}},
        "match.started": {"channels": {name: setting(True) for name in CHANNELS}},
    }
    with web.client(token("ana")) as client:
        after = ok(client.patch("/v1/me/preferences", json={"types": changes}))
        shown = ok(client.get("/v1/me/preferences"))
    assert after == shown
    # when events of every type are routed to ana
    for name in catalog.public_names():
        ingest_event(parsed_event(name, {"recipients": ["ana"]}), catalog, CHANNELS)
    # then each type's deliveries are the channels GET shows enabled, digests where it says digest
    for name, prefs in shown["types"].items():
        kind = Event.select(Event.id).where(Event.type == name)
        deliveries = {d.channel: d.status for d in Delivery.select().where(Delivery.event.in_(kind))}
        expected = {
            channel: DeliveryStatus.DIGEST if view["mode"] == "digest" else DeliveryStatus.PENDING
            for channel, view in prefs["channels"].items()
            if view["enabled"]
        }
        assert deliveries == expected, name
    assert shown["types"][PLAIN]["channels"][DIGESTS[0]]["mode"] == "digest"
    assert shown["types"][PLAIN]["channels"][CHANNELS[0]]["enabled"] is False
    # and `tidings prefs show` resolves the same
    capsys.readouterr()
    assert main(["prefs", "show", "ana", "--json"], settings=deployment.settings) == 0
    printed = {row["type"]: row["channels"] for row in json.loads(capsys.readouterr().out)["resolved"]}
    for name, prefs in shown["types"].items():
        for channel, view in prefs["channels"].items():
            cli = printed[name][channel]
            assert (cli["enabled"], cli["locked"]) == (view["enabled"], view["locked"]), (name, channel)
            if channel in DIGESTS:
                assert cli["mode"] == view["mode"], (name, channel)


def test_patch_changes_only_what_it_names(sqlite_web: WebServer) -> None:
    with sqlite_web.client(token("ana")) as client:
        # given
        ok(
            client.patch(
                "/v1/me/preferences",
                json={
                    "timezone": "Europe/Paris",
                    "quiet_start": "22:00",
                    "quiet_end": "07:00",
                    "types": {PLAIN: {"channels": {DIGESTS[0]: setting(True, "digest"), CHANNELS[0]: setting(False)}}},
                },
            )
        )
        before = ok(client.get("/v1/me/preferences"))
        # when
        after = ok(
            client.patch(
                "/v1/me/preferences",
                json={"digest_time": "18:30", "types": {PLAIN: {"channels": {CHANNELS[0]: setting(True)}}}},
            )
        )
    # then only the digest time and in-app for PLAIN changed
    expected = copy.deepcopy(before)
    expected["digest_time"] = "18:30"
    expected["types"][PLAIN]["channels"][CHANNELS[0]]["enabled"] = True
    assert after == expected
    assert (after["timezone"], after["quiet_start"], after["quiet_end"]) == ("Europe/Paris", "22:00", "07:00")


def test_put_replaces_the_time_settings_and_each_listed_type_as_a_whole(sqlite_web: WebServer) -> None:
    with sqlite_web.client(token("ana")) as client:
        # given
        ok(
            client.patch(
                "/v1/me/preferences", json={"timezone": "Asia/Tokyo", "quiet_start": "23:00", "quiet_end": "06:00"}
            )
        )
        document = ok(client.get("/v1/me/preferences"))
        # when the GET document comes back with one type changed, and the others left out
        sent = {
            "timezone": "America/New_York",
            "digest_time": None,  # null: back to the default
            "quiet_start": None,
            "quiet_end": None,
            "types": {PLAIN: copy.deepcopy(document["types"][PLAIN])},
        }
        sent["types"][PLAIN]["channels"][DIGESTS[0]] = {"enabled": True, "mode": "digest", "locked": False}
        after = ok(client.put("/v1/me/preferences", json=sent))
        # then
        assert (after["timezone"], after["digest_time"], after["quiet_start"], after["quiet_end"]) == (
            "America/New_York",
            User.digest_time.default,
            None,
            None,
        )
        assert after["types"][PLAIN]["channels"][DIGESTS[0]]["mode"] == "digest"
        assert {k: v for k, v in after["types"].items() if k != PLAIN} == {
            k: v for k, v in document["types"].items() if k != PLAIN
        }
        # a listed type must name every channel, and every time setting must be given
        partial = {**sent, "types": {PLAIN: {"channels": {DIGESTS[0]: setting(False)}}}}
        assert "every channel" in fields(client.put("/v1/me/preferences", json=partial))[f"types.{PLAIN}.channels"]
        without_timezone = {k: v for k, v in sent.items() if k != "timezone"}
        assert "timezone" in fields(client.put("/v1/me/preferences", json=without_timezone))
        # the whole GET document can be sent back as it is
        assert ok(client.put("/v1/me/preferences", json=after)) == after


def test_a_critical_types_locked_channel_cannot_be_switched_off_and_nothing_else_applies(web: WebServer) -> None:
    body = {
        "timezone": "Europe/Paris",
        "types": {
            PLAIN: {"channels": {CHANNELS[0]: setting(False)}},
            CRITICAL: {"channels": {DIGESTS[0]: setting(False)}},
        },
    }
    with web.client(token("ana")) as client:
        before = ok(client.get("/v1/me/preferences"))
        # when
        refused = client.patch("/v1/me/preferences", json=body)
        digest = client.patch(
            "/v1/me/preferences", json={"types": {CRITICAL: {"channels": {DIGESTS[0]: setting(True, "digest")}}}}
        )
        # then
        assert fields(refused) == {
            f"types.{CRITICAL}.channels.{DIGESTS[0]}.enabled": f"{CRITICAL} is critical: its {DIGESTS[0]} channel "
            "is locked on and cannot be switched off"
        }
        assert "never in a digest" in fields(digest)[f"types.{CRITICAL}.channels.{DIGESTS[0]}.mode"]
        assert ok(client.get("/v1/me/preferences")) == before
    assert Preference.select().count() == 0 and User.select().count() == 0


def test_a_refused_time_setting_leaves_the_preferences_untouched(web: WebServer) -> None:
    with web.client(token("ana")) as client:
        before = ok(client.get("/v1/me/preferences"))
        # when the preferences are fine but the time zone is not
        response = client.patch(
            "/v1/me/preferences",
            json={"timezone": "Mars/Olympus", "types": {PLAIN: {"channels": {CHANNELS[0]: setting(False)}}}},
        )
        # then
        assert "is not an IANA time zone name" in fields(response)["timezone"]
        assert "go together" in fields(client.patch("/v1/me/preferences", json={"quiet_start": "22:00"}))["quiet_start"]
        assert ok(client.get("/v1/me/preferences")) == before
    assert Preference.select().count() == 0 and User.select().count() == 0


def test_unknown_fields_types_channels_and_wrong_values_are_422_naming_the_field(sqlite_web: WebServer) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"user": "bo"}, "user"),  # the user is the token's, never the body's
        ({"colour": "red"}, "colour"),
        (
            {"types": {PLAIN: {"channels": {CHANNELS[0]: {"enabled": True, "volume": 3}}}}},
            f"types.{PLAIN}.channels.{CHANNELS[0]}.volume",
        ),
        (
            {"types": {PLAIN: {"channels": {CHANNELS[0]: {"enabled": "yes"}}}}},
            f"types.{PLAIN}.channels.{CHANNELS[0]}.enabled",
        ),
        (
            {"types": {PLAIN: {"channels": {CHANNELS[0]: setting(True, "digest")}}}},
            f"types.{PLAIN}.channels.{CHANNELS[0]}.mode",
        ),
        ({"types": {PLAIN: {"channels": {"pigeon": setting(True)}}}}, f"types.{PLAIN}.channels.pigeon"),
        ({"types": {"no.such.type": {"channels": {}}}}, "types.no.such.type"),
        ({"types": {"digest.daily": {"channels": {}}}}, "types.digest.daily"),  # internal: nobody receives it as such
        ({"types": {"*": {"channels": {}}}}, "types.*"),
        ({"digest_time": "8 o'clock"}, "digest_time"),
        ({"timezone": 5}, "timezone"),
    ]
    with sqlite_web.client(token("ana")) as client:
        for body, field in cases:
            assert field in fields(client.patch("/v1/me/preferences", json=body)), body
    assert Preference.select().count() == 0 and User.select().count() == 0


def test_changes_are_the_users_commands_and_apply_over_a_record_dated_ahead_of_the_clock(
    sqlite_web: WebServer,
) -> None:
    # given a setting a producer's command dated an hour ahead of Tidings' clock
    ahead = clock.now() + dt.timedelta(hours=1)
    Preference.create(user_id="ana", type=PLAIN, channel=CHANNELS[0], enabled=False, changed_at=ahead)
    Preference.create(user_id="bo", type=PLAIN, channel=CHANNELS[0], enabled=False, changed_at=ahead)
    with sqlite_web.client(token("ana")) as client:
        # when
        after = ok(
            client.patch("/v1/me/preferences", json={"types": {PLAIN: {"channels": {CHANNELS[0]: setting(True)}}}})
        )
    # then ana's choice applied, bo's record is as it was
    assert after["types"][PLAIN]["channels"][CHANNELS[0]]["enabled"] is True
    assert Preference.get(Preference.user_id == "bo").enabled is False
    [command] = Event.select().where(Event.type == "tidings.preferences.set")
    assert command.source == "/tidings/api/me"
    assert command.publisher is None
    assert command.data["user"] == "ana"


def test_preferences_need_a_valid_user_token(sqlite_web: WebServer) -> None:
    with sqlite_web.client() as client:
        assert client.get("/v1/me/preferences").status_code == 401
        assert client.patch("/v1/me/preferences", json={}).status_code == 401
    with sqlite_web.client("forged.token.value") as client:
        assert client.put("/v1/me/preferences", json={}).status_code == 401
