"""Bad input at the ingest: whatever a producer publishes is accepted, or rejected with a reason, quickly.

The property tests run the worker's pipeline in-process, the way the ``ingest`` actor does:
the intake's ``wrap``, then ``admit`` (envelope, ``parse_event``, times, authority) and ``ingest_event``. Every step
may reject a body with ``InvalidEvent``; none may raise anything else, because anything else is
retried and then dead-lettered without a reason. One integration test publishes the nastiest
bodies to a real worker and finds each in the dead-letter queue, with its reason in the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.amqp.intake import CONTENT_TYPE, Envelope, Intake
from dispatcher.core.authority import Authority
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import CloudEvent
from dispatcher.core.settings import DEFAULT_MAX_EVENT_BYTES, Settings
from dispatcher.core.timing import check_schedule
from dispatcher.pipeline.admission import admit
from dispatcher.pipeline.ingest import IngestResult, ingest_event
from dispatcher.rankings.notices import INGEST_HOOKS
from dispatcher.storage.models import InboxItem, Rejection
from tests.support.deployment import Deployment
from tests.support.events import INVITE_URL, as_body, cloud_event, invite, parsed_event
from tests.support.publishing import publish
from tests.support.wait import wait_for

SETTINGS = Settings()
AUTHORITY = Authority(SETTINGS.authorised_users)
#: What the fuzzing integration test's producer sends: anonymous, routing key team.invite.sent.
ENVELOPE = Envelope(routing_key="team.invite.sent", content_type=CONTENT_TYPE)
CHANNELS = ["in_app", "email"]
#: A liveness bound, not a benchmark: a call that hangs would otherwise only show as a CI timeout.
LIVENESS_SECONDS = 2.0
MB = 1024 * 1024

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WITH_DATABASE = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


def intake(max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Intake:
    return Intake(ingest_queue="t.ingest", max_event_bytes=max_event_bytes)


def invite_event(**overrides: Any) -> dict[str, Any]:
    """A valid team.invite.sent with every optional attribute, so that removing one means something."""
    data = invite(
        ["ana", "bo"],
        url=INVITE_URL,
        deliver_at="2020-01-01T00:00:00Z",
        topic="team:7",
        cancel_key="invite-7",
    )
    event = cloud_event(
        "team.invite.sent",
        data,
        source="/fuzz",
        datacontenttype="application/json",
        time="2026-05-09T18:30:00Z",
        subject="team/7",
    )
    event.update(overrides)
    return event


def invite_body(**overrides: Any) -> bytes:
    """The body of a valid invite with some attributes changed."""
    return as_body(invite_event(**overrides))


def invite_with_data(**fields: Any) -> bytes:
    """The body of a valid invite with some data fields changed."""
    return invite_body(data={**invite_event()["data"], **fields})


@dataclasses.dataclass(frozen=True)
class Rejected:
    reason: str


def ingest_in_process(
    body: bytes,
    catalog: Catalog,
    *,
    codec: Intake | None = None,
    store: bool = False,
    envelope: Envelope | None = None,
    publisher: str | None = None,
) -> Rejected | CloudEvent | IngestResult:
    """What the ingest actor does with a body, without the broker: why it is rejected, or what it made.

    ``envelope`` defaults to that of a producer (anonymous unless ``publisher``) following the contract:
    routing key = the body's type.
    Only InvalidEvent counts as a rejection; any other exception escapes and fails the test.
    """
    if envelope is None:
        envelope = Envelope(routing_key=own_type(body), content_type=CONTENT_TYPE, publisher=publisher)
    kwargs = (codec or intake()).wrap(body, envelope)["kwargs"]
    if "error" in kwargs:
        return Rejected(kwargs["error"])
    try:
        event, sender = admit(
            kwargs["event"], Envelope(**kwargs["envelope"]), catalog=catalog, settings=SETTINGS, authority=AUTHORITY
        )
        return ingest_event(event, catalog, CHANNELS, sender=sender, hooks=INGEST_HOOKS) if store else event
    except InvalidEvent as e:
        return Rejected(str(e))


def own_type(body: bytes) -> str:
    """The body's type when it is a JSON object with a string type, else team.invite.sent."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return "team.invite.sent"
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else "team.invite.sent"


def assert_accepted_or_rejected_with_a_reason(outcome: object) -> None:
    assert isinstance(outcome, (Rejected, CloudEvent, IngestResult)), outcome
    if isinstance(outcome, Rejected):
        assert outcome.reason.strip()


@contextlib.contextmanager
def finishes_quickly() -> Iterator[None]:
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < LIVENESS_SECONDS, f"took {elapsed:.2f} s (liveness bound {LIVENESS_SECONDS} s)"


# Strategies ------------------------------------------------------------------------------------------

# Every code point, lone surrogates included: json.dumps escapes them, and "surrogatepass" writes them raw.
any_character = st.characters(codec=None, exclude_categories=())
nasty_strings = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\u2028",
        "\u202e",
        "\ud800",
        "\udfff\ud800",
        "NaN",
        "null",
        "tidings.user.upsert",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2026-02-30T00:00:00Z",
        "2026-05-09T18:30:00",
        "9000-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "javascript:alert(1)",
        "https://",
        "x" * 256,
        "é" * 300,
    ]
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(0, 4200).map(lambda digits: -(10**digits))
    | st.floats()
    | st.text(any_character, max_size=40)
    | nasty_strings
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(any_character, max_size=12), children, max_size=6)
    ),
    max_leaves=25,
)
huge_strings = st.builds(
    lambda char, size: char * size,
    st.sampled_from(["x", "é", "😀", "\x00", "\u202e"]),
    st.sampled_from([1021, 100_000, 1_000_000]),
)


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    """A JSON text of ``values``, ASCII-escaped or raw (lone surrogates then make it invalid UTF-8)."""
    ascii_only = draw(st.booleans())
    return json.dumps(draw(json_values), ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


EVENT_FIELDS = [
    ("specversion",),
    ("id",),
    ("source",),
    ("type",),
    ("datacontenttype",),
    ("time",),
    ("subject",),
    ("data",),
    ("data", "recipients"),
    ("data", "recipients", 0),
    ("data", "team_name"),
    ("data", "inviter_name"),
    ("data", "url"),
    ("data", "deliver_at"),
    ("data", "topic"),
    ("data", "cancel_key"),
    ("data", "extra"),
    ("unknown_attribute",),
]


def mutate(value: dict[str, Any], path: tuple[Any, ...], how: str, replacement: Any) -> dict[str, Any]:
    """``value`` with the field at ``path`` replaced by ``replacement`` or removed."""
    value = json.loads(json.dumps(value))
    *parents, last = path
    container: Any = value
    for key in parents:
        container = container[key]
    if how == "remove":
        if isinstance(container, dict):
            container.pop(last, None)
        else:
            del container[last]
    else:
        container[last] = replacement
    return value


@st.composite
def almost_valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid team.invite.sent with one field replaced (by any JSON or a huge string) or removed."""
    path = draw(st.sampled_from(EVENT_FIELDS))
    how = draw(st.sampled_from(["replace", "huge", "remove"]))
    replacement = draw(huge_strings if how == "huge" else json_values) if how != "remove" else None
    return mutate(invite_event(), path, how, replacement)


def command(type_: str, data: dict[str, Any]) -> dict[str, Any]:
    return cloud_event(type_, data, source="/fuzz")


VALID_COMMANDS = [
    command(
        "tidings.user.upsert",
        {
            "id": "ana",
            "email": "ana@example.com",
            "name": "Ana",
            "timezone": "Europe/Paris",
            "locale": "fr",
            "digest_time": "08:00",
            "quiet_start": "22:00",
            "quiet_end": "07:00",
            "discord_webhook_url": "https://discord.example/x",
        },
    ),
    command(
        "tidings.preferences.set",
        {
            "user": "ana",
            "preferences": [{"type": "team.invite.sent", "channel": "email", "enabled": True, "mode": "digest"}],
        },
    ),
    command("tidings.topic.subscribe", {"topic": "team:7", "user": "ana"}),
    command("tidings.topic.unsubscribe", {"topic": "team:7", "user": "ana"}),
    command("tidings.notification.cancel", {"cancel_key": "invite-7", "recipients": ["ana"]}),
    command("tidings.notification.cancel", {"source": "/fuzz", "id": "e1"}),
    command(
        "tidings.webhook.upsert",
        {
            "id": "hook",
            "url": "https://hooks.example/x",
            "types": ["team.*"],
            "secret": "whsec_" + "A" * 44,
            "enabled": True,
            "owner": "ana",
        },
    ),
]


@st.composite
def almost_valid_commands(draw: st.DrawFn) -> dict[str, Any]:
    """A valid control command with one data field (or one preference field) replaced or removed."""
    base = draw(st.sampled_from(VALID_COMMANDS))
    paths = [("data", key) for key in base["data"]] + [("data", "extra")]
    if base["type"] == "tidings.preferences.set":
        paths += [("data", "preferences", 0, key) for key in ("type", "channel", "enabled", "mode")]
    path = draw(st.sampled_from(paths))
    how = draw(st.sampled_from(["replace", "remove"]))
    event = mutate(base, path, how, draw(json_values) if how == "replace" else None)
    event["id"] = str(uuid.uuid4())
    return event


@st.composite
def dramatiq_shaped_bodies(draw: st.DrawFn) -> bytes:
    """A dict with dramatiq's message keys, of any values and maybe one key more."""
    fields = {key: draw(json_values) for key in ("queue_name", "actor_name", "args", "kwargs", "options", "message_id")}
    if draw(st.booleans()):
        fields["message_timestamp"] = draw(json_values)
    if draw(st.booleans()):
        fields[draw(st.text(max_size=10))] = draw(json_values)
    return as_body(fields)


# 1. Properties ---------------------------------------------------------------------------------------


@FAST
@given(body=st.binary(max_size=2000))
def test_any_bytes_are_accepted_or_rejected_with_a_reason(catalog: Catalog, body: bytes) -> None:
    # given any bytes / when / then
    assert_accepted_or_rejected_with_a_reason(ingest_in_process(body, catalog))


@FAST
@given(body=json_bodies())
def test_any_json_value_is_accepted_or_rejected_with_a_reason(catalog: Catalog, body: bytes) -> None:
    # given any JSON text / when / then
    assert_accepted_or_rejected_with_a_reason(ingest_in_process(body, catalog))


@FAST
@given(body=dramatiq_shaped_bodies())
def test_a_body_shaped_like_a_dramatiq_message_always_goes_to_ingest_and_is_rejected(
    catalog: Catalog, body: bytes
) -> None:
    # given a foreign body with dramatiq's keys
    # when
    decoded = intake().wrap(body)
    # then: it names no actor, queue or option of its own, and ingest rejects it with a reason
    assert (decoded["queue_name"], decoded["actor_name"], decoded["args"], decoded["options"]) == (
        "t.ingest",
        "ingest",
        (),
        {},
    )
    assert isinstance(ingest_in_process(body, catalog), Rejected)


@WITH_DATABASE
@given(event=almost_valid_events())
def test_an_almost_valid_event_is_stored_or_rejected_with_a_reason(
    sqlite_db: str, catalog: Catalog, event: dict[str, Any]
) -> None:
    # given a valid event with one field broken / when
    outcome = ingest_in_process(as_body(event), catalog, store=True)
    # then
    assert_accepted_or_rejected_with_a_reason(outcome)


@WITH_DATABASE
@given(event=almost_valid_commands())
def test_an_almost_valid_command_is_applied_or_rejected_with_a_reason(
    sqlite_db: str, catalog: Catalog, event: dict[str, Any]
) -> None:
    # given a valid control command with one field broken, from an authorised user / when
    outcome = ingest_in_process(as_body(event), catalog, store=True, publisher=SETTINGS.broker_user)
    # then
    assert_accepted_or_rejected_with_a_reason(outcome)


@FAST
@given(
    deliver_at=json_values
    | st.builds(
        lambda moment, offset: moment.isoformat() + offset,
        st.datetimes(),
        st.sampled_from(["Z", "+01:00", "-01:00", "+14:00", "-23:59", ""]),
    )
)
def test_check_schedule_only_ever_raises_invalid_event(deliver_at: Any) -> None:
    # given an event whose deliver_at is anything (checked here even where parse_event would refuse it)
    event = parsed_event("team.invite.sent", {"recipients": ["ana"], "deliver_at": deliver_at}, id="s1", source="/fuzz")
    # when / then
    with contextlib.suppress(InvalidEvent):
        check_schedule(event, SETTINGS.schedule_horizon)


# 2. Nasty inputs, one by one ------------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def deep_object_text(depth: int) -> bytes:
    """{"a": {"a": ... 1 ...}} as JSON text, deeper than json.dumps could write it."""
    return b'{"a": ' * depth + b"1" + b"}" * depth


def padded_event(size: int, **overrides: Any) -> bytes:
    """A valid event of exactly ``size`` bytes, padded in data."""
    event = invite_event(**overrides)
    event["data"]["padding"] = ""
    event["data"]["padding"] = "x" * (size - len(as_body(event)))
    body = as_body(event)
    assert len(body) == size
    return body


TEN_MB = 10 * MB
NOT_UTF8, NOT_JSON, TOO_DEEP = "the body is not UTF-8", "the body is not JSON", "the body nests arrays and objects"
RECURSION = "the body is not JSON (maximum recursion depth exceeded"
SURROGATE = "the body has a lone UTF-16 surrogate escape"
NUL = "the body has a NUL character (\\u0000) in a string"
ACCEPTED = None

NASTY = [
    pytest.param(b"[" * 100_000, RECURSION, id="100k-open-brackets"),
    pytest.param(deep_object_text(5000), RECURSION, id="object-5000-deep"),
    pytest.param(invite_with_data(deep=nested(100)), TOO_DEEP, id="data-100-deep"),
    pytest.param(invite_with_data(deep=nested(60)), ACCEPTED, id="data-60-deep"),
    pytest.param(b"{" + b" " * TEN_MB + b"}", f"the body is {TEN_MB + 2} bytes, over the limit", id="10MB-of-spaces"),
    pytest.param(padded_event(TEN_MB), f"the body is {TEN_MB} bytes, over the limit", id="10MB-string-value"),
    pytest.param(b'{"specversion": "1.0", "id": "caf\xe9"}', NOT_UTF8, id="latin-1"),
    pytest.param(b"\xff\xfe\xfd" * 1000, NOT_UTF8, id="invalid-utf8"),
    pytest.param(invite_body().decode().encode("utf-16"), NOT_UTF8, id="utf16-with-bom"),
    pytest.param(b"\xef\xbb\xbf" + invite_body(), "the body is not JSON (Unexpected UTF-8 BOM", id="utf8-bom"),
    pytest.param(invite_with_data(score=float("nan"), max=float("inf")), ACCEPTED, id="NaN-and-Infinity-in-data"),
    pytest.param(invite_body(id=float("nan")), "id must be a non-empty string", id="NaN-id"),
    pytest.param(invite_body(specversion=float("-inf")), 'specversion must be "1.0"', id="Infinity-specversion"),
    pytest.param(
        invite_with_data(recipients=["u"] * 100_000),
        "data.recipients has 100000 entries, over 10000",
        id="100k-recipients",
    ),
    pytest.param(invite_body(id="\x01\x1b[31m\u202e\u200b\x7f\ufeff"), ACCEPTED, id="control-characters-in-id"),
    pytest.param(invite_body(id="a\x00b"), NUL, id="NUL-in-id"),
    pytest.param(invite_with_data(recipients=["a\x00b"]), NUL, id="NUL-in-recipient"),
    pytest.param(invite_body(id="\u2028\t \u3000"), "id must be a non-empty string", id="whitespace-id"),
    pytest.param(invite_body(id="\ud800"), SURROGATE, id="lone-surrogate-id"),
    pytest.param(invite_with_data(recipients=["\udfff"]), SURROGATE, id="lone-surrogate-recipient"),
    pytest.param(invite_body(type="t" * 100_000), "type is longer than 1020 characters", id="100k-char-type"),
    pytest.param(
        invite_body(type="team.invite.sent\x1b"),
        "type 'team.invite.sent\\x1b' is not in the catalog",
        id="escape-in-type",
    ),
    pytest.param(
        invite_body(time="0001-01-01T00:00:00+01:00"),
        "time '0001-01-01T00:00:00+01:00' is out of range in UTC",
        id="time-before-year-1-in-UTC",
    ),
    pytest.param(
        invite_with_data(deliver_at="9999-12-31T23:59:59-01:00"),
        "data.deliver_at '9999-12-31T23:59:59-01:00' is out of range in UTC",
        id="deliver-at-after-9999",
    ),
    pytest.param(
        b'{"id": ' + b"9" * 5000 + b"}",
        "the body is not JSON (Exceeds the limit (4300 digits)",
        id="5000-digit-integer",
    ),
    pytest.param(
        b'{"id": "a", "id": "b", "specversion": "1.0", "specversion": 1}',
        'specversion must be "1.0"',
        id="duplicate-keys",
    ),
    pytest.param(
        as_body(
            {
                "queue_name": "q",
                "actor_name": "ingest",
                "args": [],
                "kwargs": {},
                "options": {},
                "message_id": "m",
                "extra": 1,
            }
        ),
        "the body is shaped like a dramatiq message",
        id="dramatiq-keys-and-one-more",
    ),
    pytest.param(
        as_body({"queue_name": "q", "actor_name": "ingest", "args": 5, "kwargs": {}, "options": {}, "message_id": "m"}),
        "the body is shaped like a dramatiq message",
        id="dramatiq-keys-of-wrong-types",
    ),
]


@pytest.mark.parametrize("body, reason", NASTY)
def test_a_nasty_body_is_rejected_with_a_clear_reason_or_accepted_quickly(
    db: str, catalog: Catalog, body: bytes, reason: str | None
) -> None:
    # given a nasty body, a database of each kind, and a limit that lets the parser see all but the 10 MB ones
    codec = intake(max_event_bytes=MB)
    # when
    with finishes_quickly():
        outcome = ingest_in_process(body, catalog, codec=codec, store=True)
    # then
    if reason is ACCEPTED:
        assert isinstance(outcome, IngestResult) and outcome.outcome == "accepted", outcome
    else:
        assert isinstance(outcome, Rejected), outcome
        assert outcome.reason.startswith(reason), outcome.reason


# Values of the wrong kind in commands and match results (found by fuzzing, fixed since).
WRONG_KINDS = [
    pytest.param(
        command("tidings.user.upsert", {"id": "ana", "timezone": "Europe"}), id="timezone-is-a-tzdata-directory"
    ),
    pytest.param(command("tidings.user.upsert", {"id": "ana", "timezone": "x" * 300}), id="timezone-of-300-bytes"),
    pytest.param(
        command(
            "tidings.preferences.set",
            {"user": "ana", "preferences": [{"type": ["team.invite.sent"], "channel": "email", "enabled": True}]},
        ),
        id="preference-type-is-a-list",
    ),
    pytest.param(
        command(
            "match.completed",
            {
                "recipients": ["ana"],
                "tournament_name": "Cup",
                "winner_name": "Wolves",
                "tournament_id": "cup",
                "participants": [{"team_id": "wolves", "score": 1, "placement": 1, "kills": 0}],
                "winner": [],
            },
        ),
        id="match-winner-is-a-list",
    ),
]


@pytest.mark.parametrize("event", WRONG_KINDS)
def test_a_command_or_match_result_with_a_value_of_the_wrong_kind_is_rejected_with_a_reason(
    sqlite_db: str, catalog: Catalog, event: dict[str, Any]
) -> None:
    # given / when
    outcome = ingest_in_process(as_body(event), catalog, store=True)
    # then
    assert isinstance(outcome, Rejected)


# 3. The limit is a setting ---------------------------------------------------------------------------


def test_the_maximum_event_size_is_read_from_tidings_max_event_bytes() -> None:
    # given / when
    configured = Settings.from_env({"TIDINGS_MAX_EVENT_BYTES": "1000"})
    # then
    assert configured.max_event_bytes == 1000
    assert Settings.from_env({}).max_event_bytes == DEFAULT_MAX_EVENT_BYTES


def test_an_event_one_byte_over_the_configured_limit_is_rejected_and_one_under_is_accepted(catalog: Catalog) -> None:
    # given
    codec = intake(max_event_bytes=1000)
    over, under = padded_event(1001), padded_event(999)
    # when
    rejected, accepted = ingest_in_process(over, catalog, codec=codec), ingest_in_process(under, catalog, codec=codec)
    # then
    assert rejected == Rejected("the body is 1001 bytes, over the limit of 1000 (TIDINGS_MAX_EVENT_BYTES)")
    assert isinstance(accepted, CloudEvent)


# 4. A real worker -------------------------------------------------------------------------------------

WORKER_LIMIT = 65536


def nasty_bodies() -> list[bytes]:
    """Bodies each rejected before the database, every one distinct (so each has its own message id)."""
    return [
        b"[" * 100_000,
        deep_object_text(5000),
        invite_with_data(deep=nested(100)),
        invite_with_data(deep=nested(500)),
        b"{" + b" " * TEN_MB + b"}",
        padded_event(TEN_MB),
        padded_event(WORKER_LIMIT + 1),
        b'{"specversion": "1.0", "id": "caf\xe9"}',
        invite_body().decode().encode("utf-16"),
        invite_body().decode().encode("utf-32"),
        b"\xef\xbb\xbf" + invite_body(),
        invite_body(id=float("nan")),
        invite_body(specversion=float("inf")),
        invite_with_data(recipients=["a"] * 10_001),
        invite_with_data(recipients=["u"] * 100_000),
        invite_body(id="\x01\x1b[31m\u202e", data={"recipients": "ana"}),
        invite_body(id="\ud800"),
        invite_body(type="t" * 10_000),
        invite_body(type="no.such\x00type"),
        invite_body(time="0001-01-01T00:00:00+01:00"),
        invite_with_data(deliver_at="9000-01-01T00:00:00Z"),
        invite_body(data=[1, 2]),
        invite_with_data(url="javascript:alert(1)"),
        invite_body(datacontenttype="text/xml"),
        invite_body(subject=7),
        invite_body(specversion="0.3"),
        b'{"id": ' + b"9" * 5000 + b"}",
        b"",
        b"null",
        b"1e999999",
        b"\x00\x01\x02",
        as_body({"queue_name": "q", "actor_name": "ingest", "args": 5, "kwargs": {}, "options": {}, "message_id": "m"}),
    ]


def dead_letter_count(deployment: Deployment) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(deployment.env["TIDINGS_BROKER_URL"]))
    try:
        queue = connection.channel().queue_declare(deployment.settings.queue("ingest") + ".XQ", passive=True)
        return queue.method.message_count
    finally:
        connection.close()


@pytest.mark.integration
def test_a_worker_dead_letters_every_nasty_body_with_its_reason_and_keeps_serving(
    deployment: Deployment, catalog: Catalog
) -> None:
    # given a worker with a 64 KiB limit, and what it should say of each body
    deployment.configure(TIDINGS_MAX_EVENT_BYTES=str(WORKER_LIMIT))
    worker = deployment.worker().start()
    deployment.use_database()
    bad = nasty_bodies()
    codec = intake(max_event_bytes=WORKER_LIMIT)
    expected = {}
    for body in bad:
        outcome = ingest_in_process(body, catalog, codec=codec, envelope=ENVELOPE)
        assert isinstance(outcome, Rejected), (body[:80], outcome)
        expected[codec.wrap(body)["message_id"]] = outcome.reason
    assert len(expected) == len(bad)
    # when
    publish(deployment, *bad, routing_key=ENVELOPE.routing_key)
    publish(deployment, invite_body(data=invite()), routing_key=ENVELOPE.routing_key)
    # then the valid event gets through, and every bad one is dead-lettered with its reason
    wait_for(lambda: InboxItem.select().count() == 1, timeout=30, what="the valid event after the bad ones")
    wait_for(lambda: Rejection.select().count() == len(bad), timeout=30, interval=0.1, what="a rejection per body")
    wait_for(
        lambda: dead_letter_count(deployment) == len(bad),
        timeout=30,
        interval=0.1,
        what="every bad body in the dead-letter queue",
    )
    assert sorted(deployment.dead_letters()) == sorted(bad)
    assert {r.message_id: r.reason for r in Rejection.select()} == expected
    assert worker.proc is not None and worker.proc.poll() is None
    assert "Failed to decode message" not in worker.log()
