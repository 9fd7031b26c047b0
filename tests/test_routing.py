"""Routing in one place: plan_deliveries, table-driven.

Each row of the table is a user's stored settings, their quiet hours and a type (critical,
internal or not) on the registered channels; the expected plan is what ingest inserts and
`tidings prefs show` prints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest

from dispatcher.core.catalog import NotificationType
from dispatcher.pipeline.routing import PlannedDelivery, plan_deliveries
from dispatcher.storage.db import database
from dispatcher.storage.models import DeliveryStatus, Preference, User, WebhookEndpoint

NOW = dt.datetime(2026, 5, 9, 12, 0)  # naive UTC
QUIET_END = dt.datetime(2026, 5, 9, 13, 0)
CHANNELS = ["in_app", "email", "discord", "webhook"]

INVITE = NotificationType(name="team.invite.sent", description="", channels=frozenset({"in_app", "email"}))
PAYOUT = NotificationType(
    name="payout.received", description="", channels=frozenset({"in_app", "email"}), critical=True
)
DIGEST = NotificationType(name="digest.daily", description="", channels=frozenset({"email"}), internal=True)
SCHEDULED = NotificationType(name="match.scheduled", description="", channels=frozenset({"in_app"}))


def planned(channel: str, *flags: str, target: str = "u1") -> PlannedDelivery:
    """A delivery to ``target`` due now; flags: "digest", "quiet" (due at QUIET_END, so held), "locked"."""
    due = QUIET_END if "quiet" in flags else NOW
    status = DeliveryStatus.DIGEST if "digest" in flags else DeliveryStatus.PENDING
    return PlannedDelivery(
        target, channel, status, due, held=due > NOW, locked="locked" in flags, quiet="quiet" in flags
    )


@dataclasses.dataclass(frozen=True)
class Row:
    kind: NotificationType
    preferences: tuple[tuple[str, str, bool | None, str | None], ...] = ()  # (type or "*", channel, enabled, mode)
    quiet: tuple[str, str] | None = None  # the user's quiet hours, local "HH:MM" in UTC
    channels: tuple[str, ...] = tuple(CHANNELS)
    expected: tuple[PlannedDelivery, ...] = ()


def on(type_name: str, channel: str, mode: str = "immediate") -> tuple[str, str, bool, str]:
    return (type_name, channel, True, mode)


def off(type_name: str, channel: str, mode: str = "immediate") -> tuple[str, str, bool, str]:
    return (type_name, channel, False, mode)


def mode_only(type_name: str, channel: str, mode: str) -> tuple[str, str, None, str]:
    """A setting whose command named only the mode."""
    return (type_name, channel, None, mode)


def enabled_only(type_name: str, channel: str, enabled: bool) -> tuple[str, str, bool, None]:
    """A setting whose command named only enabled."""
    return (type_name, channel, enabled, None)


TABLE = {
    # which channels: the user's (type, channel) setting, else ("*", channel), else the catalog default
    "no settings: the catalog defaults": Row(INVITE, expected=(planned("in_app"), planned("email"))),
    "only the offered channels, in their order": Row(
        INVITE, channels=("email", "discord"), expected=(planned("email"),)
    ),
    "a wildcard setting beats the default": Row(
        INVITE, (off("*", "email"), on("*", "discord")), expected=(planned("in_app"), planned("discord"))
    ),
    "a type setting beats a wildcard setting": Row(
        INVITE,
        (off("*", "email"), on(INVITE.name, "email"), on("*", "discord"), off(INVITE.name, "discord")),
        expected=(planned("in_app"), planned("email")),
    ),
    "a type setting beats the default": Row(INVITE, (off(INVITE.name, "in_app"),), expected=(planned("email"),)),
    "settings of other types do not apply": Row(
        INVITE,
        (off("match.started", "email"), on("match.started", "discord")),
        expected=(planned("in_app"), planned("email")),
    ),
    "every channel of a non-critical type can be switched off": Row(
        INVITE, (off("*", "in_app"), off("*", "email")), expected=()
    ),
    "a user's setting never reaches the channel that addresses endpoints": Row(
        INVITE, (on("*", "webhook"),), expected=(planned("in_app"), planned("email"))
    ),
    # critical: its default channels are locked on; it may gain others
    "critical: the default channels stay on, switched off": Row(
        PAYOUT,
        (off("*", "in_app"), off("*", "email"), off(PAYOUT.name, "email")),
        expected=(planned("in_app", "locked"), planned("email", "locked")),
    ),
    "critical: extra channels can be switched on": Row(
        PAYOUT,
        (on(PAYOUT.name, "discord"), off("*", "email")),
        expected=(planned("in_app", "locked"), planned("email", "locked"), planned("discord")),
    ),
    # digest mode: on the channel with digests, from the same setting that enables it
    "digest mode: the email waits for the digest": Row(
        INVITE, (on("*", "email", "digest"),), expected=(planned("in_app"), planned("email", "digest"))
    ),
    "digest mode: a type setting beats the wildcard's mode": Row(
        INVITE,
        (on("*", "email", "digest"), on(INVITE.name, "email")),
        expected=(planned("in_app"), planned("email")),
    ),
    # a setting may leave enabled or mode unset: each is then looked up further, on its own
    "a mode alone for every type: digests where email is on by default": Row(
        INVITE, (mode_only("*", "email", "digest"),), expected=(planned("in_app"), planned("email", "digest"))
    ),
    "a mode alone for every type switches on no email a type does not send by default": Row(
        SCHEDULED, (mode_only("*", "email", "digest"),), expected=(planned("in_app"),)
    ),
    "a mode alone for a type switches nothing on either": Row(
        SCHEDULED, (mode_only(SCHEDULED.name, "email", "digest"),), expected=(planned("in_app"),)
    ),
    "a mode alone takes its enabled from the wildcard's": Row(
        INVITE,
        (off("*", "email"), mode_only(INVITE.name, "email", "digest")),
        expected=(planned("in_app"),),
    ),
    "a type switched on without a mode takes the wildcard's mode": Row(
        SCHEDULED,
        (mode_only("*", "email", "digest"), enabled_only(SCHEDULED.name, "email", True)),
        expected=(planned("in_app"), planned("email", "digest")),
    ),
    "a wildcard switched on without a mode, a type's mode alone: digest": Row(
        INVITE,
        (enabled_only("*", "email", True), mode_only(INVITE.name, "email", "digest")),
        expected=(planned("in_app"), planned("email", "digest")),
    ),
    "digest mode of a switched-off channel: nothing": Row(
        INVITE, (off("*", "email", "digest"),), expected=(planned("in_app"),)
    ),
    "digest mode: not for a critical type": Row(
        PAYOUT,
        (on("*", "email", "digest"),),
        expected=(planned("in_app", "locked"), planned("email", "locked")),
    ),
    "digest mode: not for an internal type (the digest itself)": Row(
        DIGEST, (on("*", "email", "digest"),), expected=(planned("email"),)
    ),
    # quiet hours: email and Discord wait for their end, in-app never does
    "quiet hours now: email and Discord are due at their end": Row(
        INVITE,
        (on("*", "discord"),),
        quiet=("11:00", "13:00"),
        expected=(planned("in_app"), planned("email", "quiet"), planned("discord", "quiet")),
    ),
    "quiet hours spanning midnight, outside them now: due now": Row(
        INVITE, quiet=("22:00", "07:00"), expected=(planned("in_app"), planned("email"))
    ),
    "quiet hours: not for a critical type": Row(
        PAYOUT, quiet=("11:00", "13:00"), expected=(planned("in_app", "locked"), planned("email", "locked"))
    ),
    "quiet hours and digest mode: the digest item is not delayed": Row(
        INVITE,
        (on("*", "email", "digest"),),
        quiet=("11:00", "13:00"),
        expected=(planned("in_app"), planned("email", "digest")),
    ),
}


@pytest.mark.parametrize("row", TABLE.values(), ids=TABLE.keys())
def test_plan_deliveries_decides_channels_digest_quiet_hours_and_locks(sqlite_db: str, row: Row) -> None:
    # given
    quiet_start, quiet_end = row.quiet or (None, None)
    User.create(id="u1", timezone="UTC", quiet_start=quiet_start, quiet_end=quiet_end, changed_at=NOW)
    for type_name, channel, enabled, mode in row.preferences:
        Preference.create(user_id="u1", type=type_name, channel=channel, enabled=enabled, mode=mode, changed_at=NOW)

    # when
    plan = plan_deliveries(row.kind, ["u1"], list(row.channels), due=NOW, now=NOW)

    # then
    assert plan == list(row.expected)


def test_quiet_hours_are_read_in_the_users_time_zone(sqlite_db: str) -> None:
    # given: 12:00 UTC is 14:00 in Paris, inside 13:30-15:00 there
    User.create(id="u1", timezone="Europe/Paris", quiet_start="13:30", quiet_end="15:00", changed_at=NOW)

    # when
    plan = plan_deliveries(INVITE, ["u1"], ["email"], due=NOW, now=NOW)

    # then
    assert [(p.due, p.quiet, p.held) for p in plan] == [(dt.datetime(2026, 5, 9, 13, 0), True, True)]


def test_a_scheduled_event_is_due_at_its_time_and_held_when_later_than_a_minute(sqlite_db: str) -> None:
    # given
    soon, later = NOW + dt.timedelta(seconds=30), NOW + dt.timedelta(hours=2)

    # when
    plans = [plan_deliveries(INVITE, ["u1"], ["in_app"], due=due, now=NOW) for due in (soon, later)]

    # then
    assert [(p.due, p.held) for plan in plans for p in plan] == [(soon, False), (later, True)]


def test_endpoints_whose_patterns_match_are_planned_after_the_users_whatever_the_preferences(sqlite_db: str) -> None:
    # given
    for endpoint_id, types, enabled in [
        ("scores", ["team.*"], True),
        ("all", ["*"], True),
        ("other", ["match.*"], True),
        ("off", ["*"], False),
    ]:
        WebhookEndpoint.create(
            id=endpoint_id, url="https://example.com/hook", secret="s", types=types, enabled=enabled, changed_at=NOW
        )
    Preference.create(user_id="u1", type="*", channel="webhook", enabled=False, changed_at=NOW)
    User.create(id="u1", timezone="UTC", quiet_start="11:00", quiet_end="13:00", changed_at=NOW)

    # when
    plan = plan_deliveries(INVITE, ["u1"], ["in_app", "webhook"], due=NOW, now=NOW)

    # then: endpoints in id order, due with the event (no quiet hours)
    assert plan == [planned("in_app"), planned("webhook", target="all"), planned("webhook", target="scores")]


def test_recipients_keep_their_order_each_on_the_channels_in_theirs(sqlite_db: str) -> None:
    # given
    Preference.create(user_id="u2", type="*", channel="email", enabled=False, changed_at=NOW)

    # when
    plan = plan_deliveries(INVITE, ["u3", "u2", "u1"], ["email", "in_app"], due=NOW, now=NOW)

    # then
    assert [(p.target, p.channel) for p in plan] == [
        ("u3", "email"),
        ("u3", "in_app"),
        ("u2", "in_app"),
        ("u1", "email"),
        ("u1", "in_app"),
    ]


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """The SQL statements the database runs during the test."""
    seen: list[str] = []
    run = database.obj.execute_sql

    def counting(sql: str, *args: object, **kwargs: object) -> object:
        seen.append(sql)
        return run(sql, *args, **kwargs)

    database.obj.execute_sql = counting
    yield seen
    del database.obj.execute_sql


def test_one_query_of_preferences_and_one_of_users_plan_many_recipients(sqlite_db: str, statements: list[str]) -> None:
    # given 400 users, every other one with quiet hours now and email in the digest
    users = [f"u{i}" for i in range(400)]
    User.insert_many(
        [
            {"id": u, "timezone": "UTC", "quiet_start": "11:00", "quiet_end": "13:00", "changed_at": NOW}
            for u in users[::2]
        ]
    ).execute()
    Preference.insert_many(
        [
            {"user_id": u, "type": "*", "channel": "email", "enabled": True, "mode": "digest", "changed_at": NOW}
            for u in users[::2]
        ]
    ).execute()
    statements.clear()

    # when
    plan = plan_deliveries(INVITE, users, ["in_app", "email", "discord"], due=NOW, now=NOW)

    # then
    assert len(plan) == 800
    by_target = {(p.target, p.channel): p for p in plan}
    assert by_target[("u0", "email")] == planned("email", "digest", target="u0")
    assert by_target[("u1", "email")] == planned("email", target="u1")
    assert [s.split(" FROM ")[1].split()[0] for s in statements] == ['"preference"', '"user"']


def test_more_recipients_than_one_query_takes_are_read_in_chunks(sqlite_db: str) -> None:
    # given
    users = [f"u{i}" for i in range(1201)]
    User.insert_many(
        [{"id": u, "timezone": "UTC", "quiet_start": "11:00", "quiet_end": "13:00", "changed_at": NOW} for u in users]
    ).execute()
    Preference.insert_many(
        [
            {"user_id": u, "type": "*", "channel": "email", "enabled": i % 2 == 0, "changed_at": NOW}
            for i, u in enumerate(users)
        ]
    ).execute()

    # when
    plan = plan_deliveries(INVITE, users, ["email"], due=NOW, now=NOW)

    # then
    assert [p.target for p in plan] == users[::2]
    assert all(p.quiet and p.due == QUIET_END for p in plan)


def test_without_recipients_nothing_is_read_for_users(sqlite_db: str, statements: list[str]) -> None:
    # when
    plan = plan_deliveries(INVITE, [], ["in_app", "email"], due=NOW, now=NOW)

    # then
    assert plan == [] and statements == []
