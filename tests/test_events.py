"""CloudEvents: parse_event admits exactly the publisher contract; decode_body never crashes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import MAX_RECIPIENTS, decode_body, parse_event
from tests.support.events import cloud_event, invite


def invite_event(**overrides: Any) -> dict[str, Any]:
    """A valid team.invite.sent event; ``overrides`` replace top-level attributes."""
    data = invite(["u1", "u2"], team_name="Owls", inviter_name="Ada")
    event = cloud_event("team.invite.sent", data, id="evt-1", source="/teams", time="2026-05-09T18:30:00Z")
    return {**event, **overrides}


def with_data(**data: Any) -> dict[str, Any]:
    """A team.invite.sent event whose data is exactly ``data``."""
    return invite_event(data=data)


def test_a_valid_event_is_parsed_into_a_cloud_event(catalog: Catalog) -> None:
    # given
    raw = invite_event(
        subject="team/42",
        data={
            "recipients": ["u1"],
            "topic": "team-42",
            "url": "https://x.test/t/42",
            "team_name": "Owls",
            "inviter_name": "Ada",
        },
    )

    # when
    event = parse_event(raw, catalog)

    # then
    assert (event.id, event.source, event.type, event.subject) == ("evt-1", "/teams", "team.invite.sent", "team/42")
    assert event.time == dt.datetime(2026, 5, 9, 18, 30, tzinfo=dt.UTC)
    assert event.recipients == ["u1"]
    assert event.topic == "team-42"
    assert event.context == {"url": "https://x.test/t/42", "team_name": "Owls", "inviter_name": "Ada"}
    assert not event.is_command


def test_a_parsed_event_turns_back_into_its_json_form(catalog: Catalog) -> None:
    # given
    raw = invite_event(time="2026-05-09T20:30:00+02:00")

    # when
    body = parse_event(raw, catalog).to_json()

    # then
    assert body["time"] == "2026-05-09T18:30:00Z"
    assert {k: body[k] for k in ("specversion", "id", "source", "type", "data")} == {
        k: raw[k] for k in ("specversion", "id", "source", "type", "data")
    }


def test_an_event_without_time_is_accepted(catalog: Catalog) -> None:
    # given
    raw = invite_event()
    del raw["time"]

    # when
    event = parse_event(raw, catalog)

    # then
    assert event.time is None


@pytest.mark.parametrize("specversion", [None, "0.3", "1", 1.0, "1.0 "])
def test_an_event_with_a_wrong_specversion_is_rejected(catalog: Catalog, specversion: object) -> None:
    # given
    raw = invite_event(specversion=specversion)

    # when / then
    with pytest.raises(InvalidEvent, match='specversion must be "1.0"'):
        parse_event(raw, catalog)


@pytest.mark.parametrize("attribute", ["id", "source", "type"])
@pytest.mark.parametrize("value", ["<missing>", None, "", "   ", 42, ["x"]])
def test_an_event_with_a_missing_or_empty_required_attribute_is_rejected(
    catalog: Catalog, attribute: str, value: object
) -> None:
    # given
    raw = invite_event()
    if value == "<missing>":
        del raw[attribute]
    else:
        raw[attribute] = value

    # when / then
    with pytest.raises(InvalidEvent, match=f"{attribute} must be a non-empty string"):
        parse_event(raw, catalog)


def test_an_event_with_an_overlong_id_is_rejected(catalog: Catalog) -> None:
    # given
    raw = invite_event(id="x" * 1021)

    # when / then
    with pytest.raises(InvalidEvent, match="id is longer than 1020 characters"):
        parse_event(raw, catalog)


@pytest.mark.parametrize("data", [[], "text", 42, True])
def test_an_event_whose_data_is_not_an_object_is_rejected(catalog: Catalog, data: object) -> None:
    # given
    raw = invite_event(data=data)

    # when / then
    with pytest.raises(InvalidEvent, match="data must be a JSON object"):
        parse_event(raw, catalog)


def test_an_event_with_a_non_json_content_type_is_rejected(catalog: Catalog) -> None:
    # given
    raw = invite_event(datacontenttype="text/xml")

    # when / then
    with pytest.raises(InvalidEvent, match="datacontenttype 'text/xml' is not application/json"):
        parse_event(raw, catalog)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/cloudevents+json", "application/json; charset=utf-8"]
)
def test_json_content_types_are_accepted(catalog: Catalog, content_type: str) -> None:
    # given
    raw = invite_event(datacontenttype=content_type)

    # when
    event = parse_event(raw, catalog)

    # then
    assert event.id == "evt-1"


@pytest.mark.parametrize(
    "recipients",
    [
        "u1",
        ["u1", 2],
        ["u1", None],
        {"u1": True},
    ],
)
def test_recipients_that_are_not_a_list_of_strings_are_rejected(catalog: Catalog, recipients: object) -> None:
    # given
    raw = with_data(recipients=recipients, team_name="Owls", inviter_name="Ada")

    # when / then
    with pytest.raises(InvalidEvent, match="data.recipients must be a list of user id strings"):
        parse_event(raw, catalog)


@pytest.mark.parametrize("user_id", ["", "u" * 256])
def test_a_recipient_id_of_the_wrong_length_is_rejected(catalog: Catalog, user_id: str) -> None:
    # given
    raw = with_data(recipients=["u1", user_id], team_name="Owls", inviter_name="Ada")

    # when / then
    with pytest.raises(InvalidEvent, match="every user id in data.recipients must have 1 to 255 characters"):
        parse_event(raw, catalog)


def test_more_recipients_than_the_limit_are_rejected(catalog: Catalog) -> None:
    # given
    raw = with_data(recipients=[f"u{i}" for i in range(MAX_RECIPIENTS + 1)], team_name="Owls", inviter_name="Ada")

    # when / then
    with pytest.raises(InvalidEvent, match=f"data.recipients has {MAX_RECIPIENTS + 1} entries, over {MAX_RECIPIENTS}"):
        parse_event(raw, catalog)


def test_exactly_the_recipient_limit_is_accepted(catalog: Catalog) -> None:
    # given
    raw = with_data(recipients=[f"u{i}" for i in range(MAX_RECIPIENTS)], team_name="Owls", inviter_name="Ada")

    # when
    event = parse_event(raw, catalog)

    # then
    assert len(event.recipients) == MAX_RECIPIENTS


def test_an_event_with_neither_recipients_nor_topic_is_rejected(catalog: Catalog) -> None:
    # given
    raw = with_data(team_name="Owls", inviter_name="Ada")

    # when / then
    with pytest.raises(InvalidEvent, match="data needs recipients .* or topic"):
        parse_event(raw, catalog)


def test_an_event_with_only_a_topic_is_accepted(catalog: Catalog) -> None:
    # given
    raw = with_data(topic="team-42", team_name="Owls", inviter_name="Ada")

    # when
    event = parse_event(raw, catalog)

    # then
    assert event.topic == "team-42"
    assert event.recipients == []


@pytest.mark.parametrize("topic", ["", 42, ["team-42"], "t" * 256])
def test_a_malformed_topic_is_rejected(catalog: Catalog, topic: object) -> None:
    # given
    raw = with_data(topic=topic, team_name="Owls", inviter_name="Ada")

    # when / then
    with pytest.raises(InvalidEvent, match="data.topic must be a string of 1 to 255 characters"):
        parse_event(raw, catalog)


def test_an_event_of_a_type_outside_the_catalog_is_rejected(catalog: Catalog) -> None:
    # given
    raw = invite_event(type="team.invite.exploded")

    # when / then
    with pytest.raises(InvalidEvent, match="type 'team.invite.exploded' is not in the catalog"):
        parse_event(raw, catalog)


def test_an_event_missing_required_keys_is_rejected_naming_them(catalog: Catalog) -> None:
    # given
    raw = invite_event(type="match.disputed", data={"recipients": ["u1"], "tournament_name": "Cup"})

    # when / then
    with pytest.raises(InvalidEvent, match="data lacks the keys match.disputed requires: match_id, reason"):
        parse_event(raw, catalog)


@pytest.mark.parametrize(
    "time, message",
    [
        ("yesterday", "time 'yesterday' is not an RFC 3339 timestamp"),
        ("2026-13-01T00:00:00Z", "is not an RFC 3339 timestamp"),
        ("2026-05-09T18:30:00+0200", "is not an RFC 3339 timestamp"),
        ("2026-05-09", "time '2026-05-09' is not an RFC 3339 timestamp"),
        ("2026-05-09T18:30:00", "time '2026-05-09T18:30:00' has no UTC offset"),
        (1715279400, "time must be an RFC 3339 string"),
    ],
)
def test_an_event_with_a_bad_time_is_rejected(catalog: Catalog, time: object, message: str) -> None:
    # given
    raw = invite_event(time=time)

    # when / then
    with pytest.raises(InvalidEvent, match=message):
        parse_event(raw, catalog)


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://x.test/file", "/relative/path", 42])
def test_an_event_with_a_url_that_is_not_http_is_rejected(catalog: Catalog, url: object) -> None:
    # given
    raw = with_data(recipients=["u1"], url=url, team_name="Owls", inviter_name="Ada")

    # when / then
    with pytest.raises(InvalidEvent, match=r"data.url must be an http\(s\) URL"):
        parse_event(raw, catalog)


def test_a_subject_that_is_not_a_string_is_rejected(catalog: Catalog) -> None:
    # given
    raw = invite_event(subject=["team", 42])

    # when / then
    with pytest.raises(InvalidEvent, match="subject must be a string"):
        parse_event(raw, catalog)


def test_a_control_command_skips_the_notification_checks(catalog: Catalog) -> None:
    # given: no recipients, no topic, and a type the catalog does not list
    raw = invite_event(type="tidings.user.upsert", data={"id": "u1", "email": "u1@example.com"})

    # when
    event = parse_event(raw, catalog)

    # then
    assert event.is_command
    assert event.data == {"id": "u1", "email": "u1@example.com"}


def test_a_control_command_still_needs_the_cloud_event_attributes(catalog: Catalog) -> None:
    # given
    raw = invite_event(type="tidings.user.upsert", id="", data={"id": "u1"})

    # when / then
    with pytest.raises(InvalidEvent, match="id must be a non-empty string"):
        parse_event(raw, catalog)


def test_decode_body_reads_a_json_object_from_bytes_or_text() -> None:
    # given
    body = json.dumps(invite_event())

    # when / then
    assert decode_body(body) == invite_event()
    assert decode_body(body.encode("utf-8")) == invite_event()


@pytest.mark.parametrize(
    "body, message",
    [
        (b"\xff\xfe{}", "the body is not UTF-8"),
        (b'{"id": "caf\xe9"}', "the body is not UTF-8"),
        ("not json", "the body is not JSON"),
        ('{"id": "evt-1",', "the body is not JSON"),
        ("", "the body is not JSON"),
        ("[1, 2]", r"the body is JSON but not an object \(got list\)"),
        ('"text"', r"the body is JSON but not an object \(got str\)"),
        ("null", r"the body is JSON but not an object \(got NoneType\)"),
    ],
)
def test_decode_body_rejects_what_is_not_a_json_object(body: str | bytes, message: str) -> None:
    # given / when / then
    with pytest.raises(InvalidEvent, match=message):
        decode_body(body)


@pytest.mark.parametrize("body", ["[" * 100_000, '{"a":' * 100_000, b"[" * 100_000, "[" * 50_000 + "]" * 50_000])
def test_decode_body_rejects_deep_nesting_as_an_invalid_event_not_a_recursion_error(body: str | bytes) -> None:
    # given / when / then
    with pytest.raises(InvalidEvent, match="the body is not JSON"):
        decode_body(body)
