"""CloudEventEncoder: dramatiq's own messages pass through; anything else becomes an ingest message."""

from __future__ import annotations

import json
from typing import Any

import dramatiq
import pytest

from dispatcher.encoder import CloudEventEncoder

MAX_EVENT_BYTES = 4096


@pytest.fixture
def encoder() -> CloudEventEncoder:
    return CloudEventEncoder(ingest_queue="tidings.ingest", max_event_bytes=MAX_EVENT_BYTES)


def cloud_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/teams",
        "type": "team.invite.sent",
        "data": {"recipients": ["u1"], "team_name": "Owls", "inviter_name": "Ada"},
    }
    event.update(overrides)
    return event


def body(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


def assert_ingest_message(decoded: dict[str, Any]) -> None:
    assert decoded["queue_name"] == "tidings.ingest"
    assert decoded["actor_name"] == "ingest"
    assert list(decoded["args"]) == []
    assert decoded["options"] == {}
    assert isinstance(decoded["message_id"], str) and decoded["message_id"]
    assert isinstance(decoded["message_timestamp"], int)


def test_a_dramatiq_message_round_trips_unchanged(encoder: CloudEventEncoder) -> None:
    # given
    message = dramatiq.Message(queue_name="tidings.email", actor_name="deliver_email", args=(42,),
                               kwargs={"note": "x"}, options={"retries": 3})
    data = encoder.encode(message.asdict())

    # when
    decoded = encoder.decode(data)

    # then
    assert decoded == json.loads(data)
    assert dramatiq.Message(**{**decoded, "args": tuple(decoded["args"])}) == message


def test_a_cloud_event_is_wrapped_into_an_ingest_message(encoder: CloudEventEncoder) -> None:
    # given
    event = cloud_event()

    # when
    decoded = encoder.decode(body(event))

    # then
    assert_ingest_message(decoded)
    assert decoded["kwargs"] == {"event": event}


def test_the_message_id_is_the_same_for_every_copy_of_one_event(encoder: CloudEventEncoder) -> None:
    # given: the same (source, id), published twice, even with other content
    first = body(cloud_event())
    again = body(cloud_event(time="2026-05-09T18:30:00Z"))

    # when
    ids = {encoder.decode(first)["message_id"], encoder.decode(again)["message_id"], encoder.decode(first)["message_id"]}

    # then
    assert len(ids) == 1


@pytest.mark.parametrize("other", [cloud_event(id="evt-2"), cloud_event(source="/matches"),
                                   cloud_event(id="/teams", source="evt-1"),
                                   cloud_event(source="/teamse", id="vt-1")])
def test_the_message_id_differs_for_another_source_or_id(encoder: CloudEventEncoder, other: dict[str, Any]) -> None:
    # given
    first = body(cloud_event())

    # when
    first_id = encoder.decode(first)["message_id"]
    other_id = encoder.decode(body(other))["message_id"]

    # then
    assert first_id != other_id


def test_the_message_id_of_an_undecodable_body_depends_only_on_the_bytes(encoder: CloudEventEncoder) -> None:
    # given
    garbage, other_garbage = b"not json at all", b"not json either"

    # when
    first, again, other = (encoder.decode(b)["message_id"] for b in (garbage, garbage, other_garbage))

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
        (b"[" * 50_000, "the body is not JSON"),
        (json.dumps(cloud_event()).encode("utf-16"), "the body is not UTF-8"),
        (json.dumps(cloud_event()).encode("utf-32"), "the body is not UTF-8"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_wrapped_with_the_reason(
    encoder: CloudEventEncoder, data: bytes, reason: str
) -> None:
    # given / when
    decoded = encoder.decode(data)

    # then
    assert_ingest_message(decoded)
    assert list(decoded["kwargs"]) == ["error"]
    assert decoded["kwargs"]["error"].startswith(reason)


def test_an_event_over_max_event_bytes_is_wrapped_with_an_error(encoder: CloudEventEncoder) -> None:
    # given
    data = body(cloud_event(data={"recipients": ["u1"], "padding": "x" * MAX_EVENT_BYTES}))

    # when
    decoded = encoder.decode(data)

    # then
    assert_ingest_message(decoded)
    assert decoded["kwargs"] == {
        "error": f"the body is {len(data)} bytes, over the limit of {MAX_EVENT_BYTES} (TIDINGS_MAX_EVENT_BYTES)"
    }


def test_an_event_of_exactly_max_event_bytes_is_accepted(encoder: CloudEventEncoder) -> None:
    # given
    event = cloud_event(data={"padding": ""})
    event["data"]["padding"] = "x" * (MAX_EVENT_BYTES - len(body(event)))
    data = body(event)
    assert len(data) == MAX_EVENT_BYTES

    # when
    decoded = encoder.decode(data)

    # then
    assert decoded["kwargs"] == {"event": event}


def test_a_huge_body_is_wrapped_with_an_error_without_being_parsed() -> None:
    # given: 10 MB of deeply nested JSON, which a parser would choke on
    encoder = CloudEventEncoder(ingest_queue="tidings.ingest", max_event_bytes=256 * 1024)
    data = b"[" * (10 * 1024 * 1024)

    # when
    decoded = encoder.decode(data)

    # then
    assert_ingest_message(decoded)
    assert decoded["kwargs"] == {
        "error": f"the body is {len(data)} bytes, over the limit of {256 * 1024} (TIDINGS_MAX_EVENT_BYTES)"
    }


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"{", b"}", b"\xef\xbb\xbf{}", b"\x00\x00\x00{", b'{"a":' * 50_000, b"1e999999",
     b'{"source": 1, "id": null}', b"NaN", "\ud800".encode("utf-8", "surrogatepass")],
)
def test_decoding_never_raises(encoder: CloudEventEncoder, data: bytes) -> None:
    # given / when
    decoded = encoder.decode(data)

    # then
    assert_ingest_message(decoded)
    assert set(decoded["kwargs"]) <= {"event", "error"} and len(decoded["kwargs"]) == 1


def test_dramatiq_decodes_messages_through_the_encoder_when_it_is_set() -> None:
    # given
    encoder = CloudEventEncoder(ingest_queue="tidings.ingest", max_event_bytes=MAX_EVENT_BYTES)
    previous = dramatiq.get_encoder()
    dramatiq.set_encoder(encoder)
    try:
        own = dramatiq.Message(queue_name="tidings.in_app", actor_name="deliver_in_app", args=(7,), kwargs={},
                               options={})

        # when
        foreign = dramatiq.Message.decode(body(cloud_event()))
        undecodable = dramatiq.Message.decode(b"\xff not an event")
        round_tripped = dramatiq.Message.decode(own.encode())
    finally:
        dramatiq.set_encoder(previous)

    # then
    assert dramatiq.get_encoder() is previous
    assert (foreign.queue_name, foreign.actor_name, foreign.args) == ("tidings.ingest", "ingest", ())
    assert foreign.kwargs == {"event": cloud_event()}
    assert undecodable.kwargs == {"error": "the body is not UTF-8"}
    assert round_tripped == own
