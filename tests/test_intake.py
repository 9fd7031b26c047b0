"""Intake: every body from the events exchange becomes an ingest message, whatever its shape."""

from __future__ import annotations

import json
from typing import Any

import dramatiq
import pika
import pytest

from dispatcher.amqp.intake import ORIGINAL_PUBLISHER_HEADER, Envelope, Intake, check_content_type, check_routing_key
from dispatcher.core.errors import InvalidEvent
from tests.support.events import as_body, cloud_event, invite

MAX_EVENT_BYTES = 4096


@pytest.fixture
def intake() -> Intake:
    return Intake(ingest_queue="tidings.ingest", max_event_bytes=MAX_EVENT_BYTES)


def invite_event(**overrides: Any) -> dict[str, Any]:
    """A valid team.invite.sent event; ``overrides`` replace top-level attributes."""
    data = invite(["u1"], team_name="Owls", inviter_name="Ada")
    return {**cloud_event("team.invite.sent", data, id="evt-1", source="/teams"), **overrides}


def assert_ingest_message(decoded: dict[str, Any]) -> None:
    assert decoded["queue_name"] == "tidings.ingest"
    assert decoded["actor_name"] == "ingest"
    assert list(decoded["args"]) == []
    assert decoded["options"] == {}
    assert isinstance(decoded["message_id"], str) and decoded["message_id"]
    assert isinstance(decoded["message_timestamp"], int)


def test_a_body_shaped_like_a_dramatiq_message_is_wrapped_like_any_other(intake: Intake) -> None:
    # given: what an attacker with publish rights on the events exchange sends to run an internal actor
    message = dramatiq.Message(
        queue_name="tidings.in_app",
        actor_name="deliver_in_app",
        args=([1, 2, 3],),
        kwargs={},
        options={"eta": 4102444800000},
    )
    data = json.dumps(message.asdict()).encode()

    # when
    decoded = intake.wrap(data)

    # then: it is an ingest message that says why it will be rejected, and names no actor or eta of its own
    assert_ingest_message(decoded)
    assert decoded["kwargs"]["error"] == (
        "the body is shaped like a dramatiq message (actor_name, args, kwargs, "
        "message_id, options, queue_name): only CloudEvents enter through the "
        "events exchange"
    )
    assert decoded["options"] == {} and decoded["args"] == ()


def test_a_cloud_event_is_wrapped_into_an_ingest_message(intake: Intake) -> None:
    # given
    event = invite_event()

    # when
    decoded = intake.wrap(as_body(event))

    # then
    assert_ingest_message(decoded)
    assert decoded["kwargs"] == {"event": event, "envelope": Envelope().as_kwargs()}


def test_the_message_id_is_the_same_for_every_copy_of_one_event(intake: Intake) -> None:
    # given: the same (source, id), published twice, even with other content
    first = as_body(invite_event())
    again = as_body(invite_event(time="2026-05-09T18:30:00Z"))

    # when
    ids = {intake.wrap(first)["message_id"], intake.wrap(again)["message_id"], intake.wrap(first)["message_id"]}

    # then
    assert len(ids) == 1


@pytest.mark.parametrize(
    "other",
    [
        invite_event(id="evt-2"),
        invite_event(source="/matches"),
        invite_event(id="/teams", source="evt-1"),
        invite_event(source="/teamse", id="vt-1"),
    ],
)
def test_the_message_id_differs_for_another_source_or_id(intake: Intake, other: dict[str, Any]) -> None:
    # given
    first = as_body(invite_event())

    # when
    first_id = intake.wrap(first)["message_id"]
    other_id = intake.wrap(as_body(other))["message_id"]

    # then
    assert first_id != other_id


def test_the_message_id_of_an_undecodable_body_depends_only_on_the_bytes(intake: Intake) -> None:
    # given
    garbage, other_garbage = b"not json at all", b"not json either"

    # when
    first, again, other = (intake.wrap(b)["message_id"] for b in (garbage, garbage, other_garbage))

    # then
    assert first == again
    assert first != other


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"not json", "the body is not JSON"),
        (b'{"specversion": "1.0",', "the body is not JSON"),
        (b"", "the body is not JSON"),
        (b"\xff\xfe\xfa garbage", "the body is not UTF-8"),
        (b'{"id": "caf\xe9"}', "the body is not UTF-8"),
        (b"[1, 2, 3]", "the body is JSON but not an object (got list)"),
        (b'"a string"', "the body is JSON but not an object (got str)"),
        (b"null", "the body is JSON but not an object (got NoneType)"),
        (b"[" * 5_000, "the body is not JSON"),
        (json.dumps(invite_event()).encode("utf-16"), "the body is not UTF-8"),
        (json.dumps(invite_event()).encode("utf-32"), "the body is not UTF-8"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_wrapped_with_the_reason(intake: Intake, data: bytes, reason: str) -> None:
    # given / when
    decoded = intake.wrap(data)

    # then
    assert_ingest_message(decoded)
    assert set(decoded["kwargs"]) == {"error", "ids", "envelope"}
    assert decoded["kwargs"]["error"].startswith(reason)


def test_an_event_over_max_event_bytes_is_wrapped_with_an_error(intake: Intake) -> None:
    # given
    data = as_body(invite_event(data={"recipients": ["u1"], "padding": "x" * MAX_EVENT_BYTES}))

    # when
    decoded = intake.wrap(data)

    # then
    assert_ingest_message(decoded)
    assert decoded["kwargs"]["error"] == (
        f"the body is {len(data)} bytes, over the limit of {MAX_EVENT_BYTES} (TIDINGS_MAX_EVENT_BYTES)"
    )
    assert decoded["kwargs"]["ids"] == {"id": "evt-1", "type": "team.invite.sent", "source": "/teams"}


def test_an_event_of_exactly_max_event_bytes_is_accepted(intake: Intake) -> None:
    # given
    event = invite_event(data={"padding": ""})
    event["data"]["padding"] = "x" * (MAX_EVENT_BYTES - len(as_body(event)))
    data = as_body(event)
    assert len(data) == MAX_EVENT_BYTES

    # when
    decoded = intake.wrap(data)

    # then
    assert decoded["kwargs"]["event"] == event


def test_a_huge_body_is_wrapped_with_an_error_without_being_parsed() -> None:
    # given: 10 MB of deeply nested JSON, which a parser would choke on
    intake = Intake(ingest_queue="tidings.ingest", max_event_bytes=256 * 1024)
    data = b"[" * (10 * 1024 * 1024)

    # when
    decoded = intake.wrap(data)

    # then
    assert_ingest_message(decoded)
    assert decoded["kwargs"]["error"] == (
        f"the body is {len(data)} bytes, over the limit of {256 * 1024} (TIDINGS_MAX_EVENT_BYTES)"
    )
    assert decoded["kwargs"]["ids"] == {}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"{",
        b"}",
        b"\xef\xbb\xbf{}",
        b"\x00\x00\x00{",
        b'{"a":' * 50_000,
        b"1e999999",
        b'{"source": 1, "id": null}',
        b"NaN",
        "\ud800".encode("utf-8", "surrogatepass"),
    ],
)
def test_decoding_never_raises(intake: Intake, data: bytes) -> None:
    # given / when
    decoded = intake.wrap(data)

    # then
    assert_ingest_message(decoded)
    assert ("event" in decoded["kwargs"]) != ("error" in decoded["kwargs"])


def test_an_unstorable_body_is_refused_with_the_id_and_source_it_carries(intake: Intake) -> None:
    # given: a NUL character, which PostgreSQL text cannot hold
    data = as_body(invite_event(data={"recipients": ["u1"], "note": "a\u0000b"}))

    # when
    decoded = intake.wrap(data)

    # then
    assert decoded["kwargs"]["error"] == "the body has a NUL character (\\u0000) in a string"
    assert decoded["kwargs"]["ids"] == {"id": "evt-1", "type": "team.invite.sent", "source": "/teams"}


def test_the_envelope_travels_with_the_body(intake: Intake) -> None:
    # given
    envelope = Envelope(
        routing_key="team.invite.sent", content_type="application/cloudevents+json", publisher="teams-service"
    )

    # when
    decoded = intake.wrap(as_body(invite_event()), envelope)

    # then
    assert Envelope(**decoded["kwargs"]["envelope"]) == envelope


def test_a_replay_by_tidings_own_user_keeps_the_first_publisher() -> None:
    # given: `tidings dlq replay` publishes as Tidings (guest) and names the first publisher in a header
    replayed = pika.BasicProperties(user_id="guest", headers={ORIGINAL_PUBLISHER_HEADER: "teams-service"})
    anonymous_first = pika.BasicProperties(user_id="guest", headers={ORIGINAL_PUBLISHER_HEADER: ""})
    forged = pika.BasicProperties(user_id="mallory", headers={ORIGINAL_PUBLISHER_HEADER: "guest"})
    relays = frozenset({"guest"})

    # when
    envelopes = [Envelope.from_amqp("x", p, relays=relays) for p in (replayed, anonymous_first, forged)]

    # then: only Tidings' own user may speak for another; anyone else stays who they are
    assert [e.publisher for e in envelopes] == ["teams-service", None, "mallory"]


@pytest.mark.parametrize(
    "content_type",
    ["application/cloudevents+json", "application/cloudevents+json; charset=utf-8", "Application/CloudEvents+JSON"],
)
def test_structured_mode_content_types_are_accepted(content_type: str) -> None:
    check_content_type(Envelope(content_type=content_type))


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "text/plain",
        "application/xml",
        "application/octet-stream",
        "application/cloudevents+json; charset=latin-1",
        "application/cloudevents-batch+json",
    ],
)
def test_other_content_types_are_rejected_with_the_one_expected(content_type: str | None) -> None:
    with pytest.raises(InvalidEvent, match="content_type 'application/cloudevents\\+json'"):
        check_content_type(Envelope(content_type=content_type))


def test_a_routing_key_other_than_the_type_is_rejected() -> None:
    # given: a command published under a notification's routing key, past topic permissions
    envelope = Envelope(routing_key="match.completed")

    # when / then
    with pytest.raises(InvalidEvent, match="routing key 'match.completed' is not the event's type 'tidings.user"):
        check_routing_key("tidings.user.upsert", envelope)
    check_routing_key("match.completed", envelope)
