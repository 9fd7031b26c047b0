"""Control commands: user, preference and subscription upserts, ordered by the command's time."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from dispatcher.commands.registry import REDACTED, apply_command
from dispatcher.core import clock
from dispatcher.core.authority import OPERATOR
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidCommand, InvalidEvent
from dispatcher.core.events import CloudEvent
from dispatcher.pipeline.preferences import topic_subscribers
from dispatcher.storage.models import Preference, Subscription, User
from tests.support.events import parsed_event

T0 = dt.datetime(2026, 5, 9, 12, 0, tzinfo=dt.UTC)
_ids = itertools.count()


def command(type_name: str, data: dict[str, Any], *, at: dt.datetime | None = T0) -> CloudEvent:
    return parsed_event(f"tidings.{type_name}", data, id=f"cmd-{next(_ids)}", source="/accounts", time=at)


def later(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def user(user_id: str = "u1") -> User:
    return User.get(User.id == user_id)


def test_a_user_upsert_creates_the_user(db: str, catalog: Catalog) -> None:
    # given
    event = command(
        "user.upsert",
        {"id": "u1", "email": "ada@example.com", "name": "Ada", "timezone": "Europe/Paris", "locale": "fr-FR"},
    )

    # when
    outcome = apply_command(event, catalog)

    # then
    assert outcome == "applied"
    created = user()
    assert (created.email, created.name, created.timezone, created.locale) == (
        "ada@example.com",
        "Ada",
        "Europe/Paris",
        "fr-FR",
    )
    assert created.changed_at == T0.replace(tzinfo=None)


def test_a_new_user_without_a_timezone_gets_utc(db: str, catalog: Catalog) -> None:
    # given
    event = command("user.upsert", {"id": "u1"})

    # when
    apply_command(event, catalog)

    # then
    assert user().timezone == "UTC"
    assert user().email is None


def test_a_later_user_upsert_changes_only_the_given_fields(db: str, catalog: Catalog) -> None:
    # given
    apply_command(
        command("user.upsert", {"id": "u1", "email": "ada@example.com", "name": "Ada", "timezone": "Europe/Paris"}),
        catalog,
    )

    # when
    outcome = apply_command(command("user.upsert", {"id": "u1", "name": "Ada L."}, at=later(1)), catalog)

    # then
    assert outcome == "applied"
    updated = user()
    assert (updated.email, updated.name, updated.timezone) == ("ada@example.com", "Ada L.", "Europe/Paris")
    assert User.select().count() == 1


def test_null_clears_a_user_field_and_resets_the_timezone_to_utc(db: str, catalog: Catalog) -> None:
    # given
    apply_command(
        command("user.upsert", {"id": "u1", "email": "ada@example.com", "name": "Ada", "timezone": "Europe/Paris"}),
        catalog,
    )

    # when
    apply_command(command("user.upsert", {"id": "u1", "email": None, "timezone": None}, at=later(1)), catalog)

    # then
    updated = user()
    assert (updated.email, updated.name, updated.timezone) == (None, "Ada", "UTC")


def test_an_older_user_upsert_does_not_overwrite_a_newer_one(db: str, catalog: Catalog) -> None:
    # given
    apply_command(command("user.upsert", {"id": "u1", "name": "New name"}, at=later(5)), catalog)

    # when
    outcome = apply_command(
        command("user.upsert", {"id": "u1", "name": "Old name", "email": "old@example.com"}, at=later(1)), catalog
    )

    # then
    assert outcome == "stale"
    assert (user().name, user().email) == ("New name", None)
    assert user().changed_at == later(5).replace(tzinfo=None)


def test_the_same_user_upsert_applied_twice_is_harmless(db: str, catalog: Catalog) -> None:
    # given
    event = command("user.upsert", {"id": "u1", "email": "ada@example.com"})
    apply_command(event, catalog)

    # when
    apply_command(event, catalog)

    # then
    assert User.select().count() == 1
    assert (user().email, user().changed_at) == ("ada@example.com", T0.replace(tzinfo=None))


def test_a_command_time_with_an_offset_is_compared_in_utc(db: str, catalog: Catalog) -> None:
    # given: 13:30+02:00 is 11:30 UTC, earlier than T0 (12:00 UTC)
    apply_command(command("user.upsert", {"id": "u1", "name": "At noon UTC"}), catalog)
    paris = dt.timezone(dt.timedelta(hours=2))

    # when
    outcome = apply_command(
        command("user.upsert", {"id": "u1", "name": "Earlier"}, at=dt.datetime(2026, 5, 9, 13, 30, tzinfo=paris)),
        catalog,
    )

    # then
    assert outcome == "stale"
    assert user().name == "At noon UTC"


def test_a_command_without_time_is_stamped_with_the_clock(db: str, catalog: Catalog) -> None:
    # given
    now = dt.datetime(2026, 6, 1, 8, 0)

    # when
    with clock.use_clock(lambda: now):
        apply_command(command("user.upsert", {"id": "u1"}, at=None), catalog)

    # then
    assert user().changed_at == now


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "Europe/../etc/passwd", "", 42])
def test_a_user_upsert_with_a_bad_timezone_is_rejected(db: str, catalog: Catalog, timezone: object) -> None:
    # given
    event = command("user.upsert", {"id": "u1", "timezone": timezone})

    # when / then
    with pytest.raises(InvalidCommand, match="timezone"):
        apply_command(event, catalog)
    assert User.select().count() == 0


@pytest.mark.parametrize(
    "email, message",
    [
        ("not-an-address", "is not a mail address"),
        ("@example.com", "is not a mail address"),
        ("ada@", "is not a mail address"),
        ("a b@example.com", "is not a mail address"),
        ("ada@example@com", "is not a mail address"),
        ("<ada@example.com>", "is not a mail address"),
        ("ada@example.", "is not a mail address"),
        ("ada@example.com\r\nBcc: x@y.z", "is not a mail address"),
        ("x" * 321, "email must be a string of at most 320 characters"),
        (["ada@example.com"], "email must be a string of at most 320 characters"),
    ],
)
def test_a_user_upsert_with_a_bad_email_is_rejected(db: str, catalog: Catalog, email: object, message: str) -> None:
    # given
    event = command("user.upsert", {"id": "u1", "email": email})

    # when / then
    with pytest.raises(InvalidCommand, match=message):
        apply_command(event, catalog)
    assert User.select().count() == 0


def test_a_user_upsert_with_unknown_fields_is_rejected(db: str, catalog: Catalog) -> None:
    # given
    event = command("user.upsert", {"id": "u1", "emial": "ada@example.com", "is_admin": True})

    # when / then
    with pytest.raises(InvalidCommand, match=r"tidings.user.upsert: unknown fields \['emial', 'is_admin'\]"):
        apply_command(event, catalog)


@pytest.mark.parametrize("data", [{}, {"id": ""}, {"id": 7}, {"id": "u" * 256}])
def test_a_user_upsert_without_a_valid_id_is_rejected(db: str, catalog: Catalog, data: dict[str, Any]) -> None:
    # given
    event = command("user.upsert", data)

    # when / then
    with pytest.raises(InvalidCommand, match="data.id must be a user id"):
        apply_command(event, catalog)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("name", "Ada\nBcc: x", "name must be a single-line string"),
        ("name", "x" * 256, "name must be a single-line string of at most 255 characters"),
        ("locale", 12, "locale must be a single-line string"),
        ("discord_webhook_url", "http://discord.com/api/webhooks/1/t", "discord_webhook_url must be an https:// URL"),
    ],
)
def test_a_user_upsert_with_a_malformed_field_is_rejected(
    db: str, catalog: Catalog, field: str, value: object, message: str
) -> None:
    # given
    event = command("user.upsert", {"id": "u1", field: value})

    # when / then
    with pytest.raises(InvalidCommand, match=message):
        apply_command(event, catalog)


def test_an_unknown_control_command_is_rejected(db: str, catalog: Catalog) -> None:
    # given
    event = command("user.delete", {"id": "u1"})

    # when / then
    with pytest.raises(InvalidCommand, match="unknown control command 'tidings.user.delete'; known: "):
        apply_command(event, catalog)


def test_invalid_commands_are_invalid_events() -> None:
    # given / when / then: the ingest actor dead-letters both the same way
    assert issubclass(InvalidCommand, InvalidEvent)


def stored_preferences(user_id: str = "u1") -> dict[tuple[str, str], bool]:
    query = Preference.select().where(Preference.user_id == user_id)
    return {(p.type, p.channel): p.enabled for p in query}


def test_preferences_set_stores_each_setting(db: str, catalog: Catalog) -> None:
    # given
    event = command(
        "preferences.set",
        {
            "user": "u1",
            "preferences": [
                {"type": "team.invite.sent", "channel": "email", "enabled": False},
                {"type": "*", "channel": "discord", "enabled": True},
            ],
        },
    )

    # when
    outcome = apply_command(event, catalog)

    # then
    assert outcome == "applied"
    assert stored_preferences() == {("team.invite.sent", "email"): False, ("*", "discord"): True}


def test_a_later_preferences_set_overrides_and_an_older_one_is_stale(db: str, catalog: Catalog) -> None:
    # given
    setting = {"type": "team.invite.sent", "channel": "email"}
    apply_command(
        command("preferences.set", {"user": "u1", "preferences": [{**setting, "enabled": False}]}, at=later(5)), catalog
    )

    # when
    stale = apply_command(
        command("preferences.set", {"user": "u1", "preferences": [{**setting, "enabled": True}]}, at=later(1)), catalog
    )
    stored_after_stale = stored_preferences()
    newer = apply_command(
        command("preferences.set", {"user": "u1", "preferences": [{**setting, "enabled": True}]}, at=later(9)), catalog
    )

    # then
    assert stale == "stale"
    assert stored_after_stale == {("team.invite.sent", "email"): False}
    assert newer == "applied"
    assert stored_preferences() == {("team.invite.sent", "email"): True}
    assert Preference.select().count() == 1


@pytest.mark.parametrize(
    "preferences, message",
    [
        (None, "preferences must be a non-empty list"),
        ([], "preferences must be a non-empty list"),
        ({"type": "*", "channel": "email", "enabled": True}, "preferences must be a non-empty list"),
        (["email"], "each preference must be an object"),
        (
            [{"type": "team.invite.exploded", "channel": "email", "enabled": True}],
            "type 'team.invite.exploded' is neither \"\\*\" nor in the catalog",
        ),
        ([{"channel": "email", "enabled": True}], "type 'None' is neither"),
        ([{"type": "*", "channel": "sms", "enabled": True}], "channel must be one of in_app, email, discord, webhook"),
        ([{"type": "*", "channel": "email", "enabled": "false"}], "enabled must be true or false"),
        ([{"type": "*", "channel": "email", "enabled": 0}], "enabled must be true or false"),
    ],
)
def test_preferences_set_validates_type_channel_and_enabled(
    db: str, catalog: Catalog, preferences: object, message: str
) -> None:
    # given
    event = command("preferences.set", {"user": "u1", "preferences": preferences})

    # when / then
    with pytest.raises(InvalidCommand, match=message):
        apply_command(event, catalog)
    assert Preference.select().count() == 0


def test_preferences_set_rejects_the_whole_list_when_one_item_is_bad(db: str, catalog: Catalog) -> None:
    # given
    event = command(
        "preferences.set",
        {
            "user": "u1",
            "preferences": [
                {"type": "*", "channel": "email", "enabled": False},
                {"type": "*", "channel": "fax", "enabled": True},
            ],
        },
    )

    # when / then
    with pytest.raises(InvalidCommand):
        apply_command(event, catalog)
    assert Preference.select().count() == 0


def test_preferences_set_needs_a_user(db: str, catalog: Catalog) -> None:
    # given
    event = command("preferences.set", {"preferences": [{"type": "*", "channel": "email", "enabled": False}]})

    # when / then
    with pytest.raises(InvalidCommand, match="data.user must be a user id"):
        apply_command(event, catalog)


def test_subscribe_adds_the_user_to_the_topic(db: str, catalog: Catalog) -> None:
    # given
    event = command("topic.subscribe", {"topic": "team-42", "user": "u1"})

    # when
    outcome = apply_command(event, catalog)

    # then
    assert outcome == "applied"
    assert topic_subscribers("team-42") == ["u1"]


def test_a_later_unsubscribe_removes_the_user_from_the_topic(db: str, catalog: Catalog) -> None:
    # given
    apply_command(command("topic.subscribe", {"topic": "team-42", "user": "u1"}), catalog)

    # when
    outcome = apply_command(command("topic.unsubscribe", {"topic": "team-42", "user": "u1"}, at=later(1)), catalog)

    # then
    assert outcome == "applied"
    assert topic_subscribers("team-42") == []
    assert Subscription.select().count() == 1


def test_an_unsubscribe_older_than_the_subscribe_is_stale(db: str, catalog: Catalog) -> None:
    # given: the commands arrive out of order
    apply_command(command("topic.subscribe", {"topic": "team-42", "user": "u1"}, at=later(5)), catalog)

    # when
    outcome = apply_command(command("topic.unsubscribe", {"topic": "team-42", "user": "u1"}, at=later(1)), catalog)

    # then
    assert outcome == "stale"
    assert topic_subscribers("team-42") == ["u1"]


def test_a_subscribe_older_than_the_unsubscribe_is_stale(db: str, catalog: Catalog) -> None:
    # given: the unsubscribe arrives first
    apply_command(command("topic.unsubscribe", {"topic": "team-42", "user": "u1"}, at=later(5)), catalog)

    # when
    outcome = apply_command(command("topic.subscribe", {"topic": "team-42", "user": "u1"}, at=later(1)), catalog)

    # then
    assert outcome == "stale"
    assert topic_subscribers("team-42") == []


def test_subscribing_twice_keeps_one_subscription(db: str, catalog: Catalog) -> None:
    # given
    event = command("topic.subscribe", {"topic": "team-42", "user": "u1"})
    apply_command(event, catalog)

    # when
    apply_command(event, catalog)

    # then
    assert topic_subscribers("team-42") == ["u1"]
    assert Subscription.select().count() == 1


@pytest.mark.parametrize(
    "data, message",
    [
        ({"user": "u1"}, "topic must be a string of 1 to 255 characters"),
        ({"topic": "", "user": "u1"}, "topic must be a string of 1 to 255 characters"),
        ({"topic": ["team-42"], "user": "u1"}, "topic must be a string of 1 to 255 characters"),
        ({"topic": "t" * 256, "user": "u1"}, "topic must be a string of 1 to 255 characters"),
        ({"topic": "team-42"}, "data.user must be a user id"),
        ({"topic": "team-42", "user": None}, "data.user must be a user id"),
    ],
)
@pytest.mark.parametrize("type_name", ["topic.subscribe", "topic.unsubscribe"])
def test_a_subscription_command_with_bad_data_is_rejected(
    db: str, catalog: Catalog, type_name: str, data: dict[str, Any], message: str
) -> None:
    # given
    event = command(type_name, data)

    # when / then
    with pytest.raises(InvalidCommand, match=message):
        apply_command(event, catalog)
    assert Subscription.select().count() == 0


# --- authority, forged times and stored secrets (the bus is a trust boundary) ------------------------------------


def test_an_operators_command_applies_over_a_record_dated_in_the_future(db: str, catalog: Catalog) -> None:
    # given a user whose record claims a change in 2999, as a forged command left it before admission checked times
    apply_command(
        command("user.upsert", {"id": "u1", "email": "evil@attacker.test"}, at=dt.datetime(2999, 1, 1, tzinfo=dt.UTC)),
        catalog,
    )

    # when the owner corrects it on the bus, then the operator at the command line
    on_the_bus = apply_command(command("user.upsert", {"id": "u1", "email": "ana@example.com"}, at=later(1)), catalog)
    at_the_cli = apply_command(
        command("user.upsert", {"id": "u1", "email": "ana@example.com"}, at=later(1)), catalog, OPERATOR
    )

    # then only the operator's applies, and the record's time comes back to the operator's
    assert (on_the_bus, at_the_cli) == ("stale", "applied")
    assert (user().email, user().changed_at) == ("ana@example.com", later(1).replace(tzinfo=None))


def test_an_operators_webhook_disable_applies_over_an_endpoint_dated_in_the_future(db: str, catalog: Catalog) -> None:
    # given an endpoint taken over by a command dated 2999
    from dispatcher.commands.endpoints import new_secret
    from dispatcher.storage.models import WebhookEndpoint

    apply_command(
        command(
            "webhook.upsert",
            {"id": "partner", "url": "https://evil.test/hook", "secret": new_secret(), "types": ["*"]},
            at=dt.datetime(2999, 1, 1, tzinfo=dt.UTC),
        ),
        catalog,
    )

    # when
    outcome = apply_command(command("webhook.upsert", {"id": "partner", "enabled": False}), catalog, OPERATOR)

    # then
    assert outcome == "applied"
    assert WebhookEndpoint.get_by_id("partner").enabled is False


def test_a_commands_secrets_and_addresses_are_not_kept_in_the_events_table(db: str, catalog: Catalog) -> None:
    # given
    from dispatcher.commands.endpoints import new_secret
    from dispatcher.pipeline.ingest import ingest_event
    from dispatcher.storage.models import Event

    secret = new_secret()
    commands = [
        command(
            "webhook.upsert",
            {"id": "p", "url": "https://h.test/hook?token=abc", "secret": secret, "types": ["match.*"]},
        ),
        command(
            "user.upsert",
            {
                "id": "u1",
                "email": "ana@example.com",
                "name": "Ana",
                "discord_webhook_url": "https://discord.com/api/webhooks/1/TOKEN",
            },
        ),
    ]

    # when
    for event in commands:
        ingest_event(event, catalog, [])

    # then the commands applied, and the events table holds none of their secrets
    stored = [Event.get(Event.event_id == event.id).data for event in commands]
    assert stored[0] == {"id": "p", "url": REDACTED, "secret": REDACTED, "types": ["match.*"]}
    assert stored[1] == {"id": "u1", "email": REDACTED, "name": "Ana", "discord_webhook_url": REDACTED}
    assert user().email == "ana@example.com"


@pytest.mark.parametrize("name", ["Ana\u202eevil", "Ana\u000bSmith", "Ana\u2028Smith", "Ana\x00", "Ana\u200b"])
def test_a_name_with_control_or_format_characters_is_rejected(db: str, catalog: Catalog, name: str) -> None:
    with pytest.raises(InvalidCommand, match="without control or format characters"):
        apply_command(command("user.upsert", {"id": "u1", "name": name}), catalog)


def test_a_rejected_email_is_not_quoted_in_the_reason(db: str, catalog: Catalog) -> None:
    with pytest.raises(InvalidCommand) as raised:
        apply_command(command("user.upsert", {"id": "u1", "email": "mallory@@evil.test"}), catalog)
    assert "mallory" not in str(raised.value) and str(raised.value) == "email is not a mail address"
