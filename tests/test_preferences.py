"""The preference and subscription queries. What the settings decide is tested in test_routing.py (its table
holds the cases that tested resolve_channels here)."""

from __future__ import annotations

import datetime as dt

import pytest

from dispatcher.pipeline.preferences import Setting, load_preferences, topic_subscribers
from dispatcher.storage.models import Preference, Subscription

T0 = dt.datetime(2026, 5, 9, 12, 0)


def set_preference(user_id: str, type_name: str, channel: str, enabled: bool | None, mode: str | None = None) -> None:
    Preference.create(user_id=user_id, type=type_name, channel=channel, enabled=enabled, mode=mode, changed_at=T0)


def test_load_preferences_returns_the_type_and_wildcard_settings_of_the_given_users(db: str) -> None:
    # given
    set_preference("u1", "team.invite.sent", "email", False)
    set_preference("u1", "*", "email", True, "digest")
    set_preference("u1", "*", "discord", True)
    set_preference("u1", "match.started", "email", True)  # another type: irrelevant
    set_preference("u2", "*", "email", False)
    set_preference("u3", "team.invite.sent", "email", True)  # not asked for

    # when
    found = load_preferences(["u1", "u2", "u4"], "team.invite.sent")

    # then
    assert dict(found) == {
        "u1": {
            ("team.invite.sent", "email"): Setting(False),
            ("*", "email"): Setting(True, "digest"),
            ("*", "discord"): Setting(True),
        },
        "u2": {("*", "email"): Setting(False)},
    }
    assert found["u4"] == {}


def test_load_preferences_keeps_a_field_no_command_set_as_none(db: str) -> None:
    # given a mode set alone for every type, and a type switched on without a mode
    set_preference("u1", "*", "email", None, "digest")
    set_preference("u1", "team.invite.sent", "email", True, None)

    # when
    found = load_preferences(["u1"], "team.invite.sent")

    # then routing can tell "not chosen here" from a choice
    assert found["u1"] == {("*", "email"): Setting(None, "digest"), ("team.invite.sent", "email"): Setting(True, None)}


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
    assert found["u0"] == {("*", "email"): Setting(True)}
    assert found["u1200"] == {("*", "email"): Setting(True)}
    assert found["u1199"] == {("*", "email"): Setting(False)}


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
