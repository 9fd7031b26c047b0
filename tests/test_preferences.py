"""Who gets what where: resolve_channels, and the preference and subscription queries."""

from __future__ import annotations

import datetime as dt

import pytest

from dispatcher.core.catalog import NotificationType
from dispatcher.pipeline.preferences import load_preferences, resolve_channels, topic_subscribers
from dispatcher.storage.models import Preference, Subscription

CHANNELS = ["in_app", "email", "discord", "webhook"]
T0 = dt.datetime(2026, 5, 9, 12, 0)

INVITE = NotificationType(name="team.invite.sent", description="", channels=frozenset({"in_app", "email"}))
PAYOUT = NotificationType(
    name="payout.received", description="", channels=frozenset({"in_app", "email"}), critical=True
)


def test_without_preferences_a_user_gets_the_catalog_defaults() -> None:
    # given / when
    chosen = resolve_channels(INVITE, {}, CHANNELS)

    # then
    assert chosen == ["in_app", "email"]


def test_only_the_offered_channels_are_considered_in_their_order() -> None:
    # given / when
    chosen = resolve_channels(INVITE, {}, ["email", "discord"])

    # then
    assert chosen == ["email"]


def test_a_wildcard_setting_beats_the_catalog_default() -> None:
    # given
    preferences = {("*", "email"): False, ("*", "discord"): True}

    # when
    chosen = resolve_channels(INVITE, preferences, CHANNELS)

    # then
    assert chosen == ["in_app", "discord"]


def test_a_type_setting_beats_a_wildcard_setting() -> None:
    # given
    preferences = {
        ("*", "email"): False,
        ("team.invite.sent", "email"): True,
        ("*", "discord"): True,
        ("team.invite.sent", "discord"): False,
    }

    # when
    chosen = resolve_channels(INVITE, preferences, CHANNELS)

    # then
    assert chosen == ["in_app", "email"]


def test_a_type_setting_beats_the_catalog_default() -> None:
    # given
    preferences = {("team.invite.sent", "in_app"): False}

    # when
    chosen = resolve_channels(INVITE, preferences, CHANNELS)

    # then
    assert chosen == ["email"]


def test_settings_for_other_types_do_not_apply() -> None:
    # given
    preferences = {("match.started", "email"): False, ("match.started", "webhook"): True}

    # when
    chosen = resolve_channels(INVITE, preferences, CHANNELS)

    # then
    assert chosen == ["in_app", "email"]


def test_a_critical_type_keeps_its_default_channels_even_when_switched_off() -> None:
    # given
    preferences = {("*", "in_app"): False, ("*", "email"): False, ("payout.received", "email"): False}

    # when
    chosen = resolve_channels(PAYOUT, preferences, CHANNELS)

    # then
    assert chosen == ["in_app", "email"]


def test_a_critical_type_can_gain_extra_channels() -> None:
    # given
    preferences = {("payout.received", "discord"): True, ("*", "webhook"): True, ("*", "email"): False}

    # when
    chosen = resolve_channels(PAYOUT, preferences, CHANNELS)

    # then
    assert chosen == ["in_app", "email", "discord", "webhook"]


def test_a_user_can_switch_off_every_channel_of_a_non_critical_type() -> None:
    # given
    preferences = {("*", "in_app"): False, ("*", "email"): False}

    # when
    chosen = resolve_channels(INVITE, preferences, CHANNELS)

    # then
    assert chosen == []


def set_preference(user_id: str, type_name: str, channel: str, enabled: bool) -> None:
    Preference.create(user_id=user_id, type=type_name, channel=channel, enabled=enabled, changed_at=T0)


def test_load_preferences_returns_the_type_and_wildcard_settings_of_the_given_users(db: str) -> None:
    # given
    set_preference("u1", "team.invite.sent", "email", False)
    set_preference("u1", "*", "discord", True)
    set_preference("u1", "match.started", "email", True)  # another type: irrelevant
    set_preference("u2", "*", "email", False)
    set_preference("u3", "team.invite.sent", "email", True)  # not asked for

    # when
    found = load_preferences(["u1", "u2", "u4"], "team.invite.sent")

    # then
    assert dict(found) == {
        "u1": {("team.invite.sent", "email"): False, ("*", "discord"): True},
        "u2": {("*", "email"): False},
    }
    assert found["u4"] == {}


def test_load_preferences_handles_more_users_than_one_query_chunk(db: str) -> None:
    # given
    users = [f"u{i}" for i in range(1201)]
    Preference.insert_many(
        [
            {"user_id": u, "type": "*", "channel": "email", "enabled": i % 2 == 0, "changed_at": T0}
            for i, u in enumerate(users)
        ]
    ).execute()

    # when
    found = load_preferences(users, "team.invite.sent")

    # then
    assert len(found) == 1201
    assert found["u0"] == {("*", "email"): True}
    assert found["u1200"] == {("*", "email"): True}
    assert found["u1199"] == {("*", "email"): False}


def test_topic_subscribers_are_the_active_members_oldest_subscription_first(db: str) -> None:
    # given
    for user_id, topic, active in [
        ("u3", "team-42", True),
        ("u1", "team-42", True),
        ("u2", "team-42", False),
        ("u4", "team-7", True),
        ("u5", "team-42", True),
    ]:
        Subscription.create(topic=topic, user_id=user_id, active=active, changed_at=T0)

    # when
    subscribers = topic_subscribers("team-42")

    # then
    assert subscribers == ["u3", "u1", "u5"]


@pytest.mark.parametrize("topic", ["team-9", "team-4", ""])
def test_a_topic_without_active_subscribers_has_none(db: str, topic: str) -> None:
    # given
    Subscription.create(topic="team-42", user_id="u1", active=True, changed_at=T0)

    # when / then
    assert topic_subscribers(topic) == []
