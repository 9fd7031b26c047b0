"""Who gets a notification on which channel.

Resolution, per user and channel: the user's (type, channel) setting, else the
user's ("*", channel) setting, else the catalog default. A critical type always
reaches its default channels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from dispatcher.core.catalog import NotificationType
from dispatcher.storage.models import Preference, Subscription

WILDCARD = "*"
#: (type or "*", channel) -> enabled
UserPreferences = Mapping[tuple[str, str], bool]


def resolve_channels(kind: NotificationType, preferences: UserPreferences, channels: Iterable[str]) -> list[str]:
    """The channels, among ``channels``, that one user gets ``kind`` on."""
    chosen = []
    for channel in channels:
        default = channel in kind.channels
        enabled = preferences.get((kind.name, channel), preferences.get((WILDCARD, channel), default))
        if enabled or (kind.critical and default):
            chosen.append(channel)
    return chosen


def load_preferences(user_ids: list[str], type_name: str) -> dict[str, dict[tuple[str, str], bool]]:
    """Every stored setting that bears on ``type_name`` for these users, in one query per 500 users."""
    found: dict[str, dict[tuple[str, str], bool]] = defaultdict(dict)
    for start in range(0, len(user_ids), 500):
        chunk = user_ids[start : start + 500]
        query = Preference.select(Preference.user_id, Preference.type, Preference.channel, Preference.enabled).where(
            Preference.user_id.in_(chunk), Preference.type.in_([type_name, WILDCARD])
        )
        for row in query.tuples():
            user_id, type_, channel, enabled = row
            found[user_id][(type_, channel)] = enabled
    return found


def topic_subscribers(topic: str) -> list[str]:
    """The users currently subscribed to ``topic``, oldest subscription first."""
    query = (
        Subscription.select(Subscription.user_id)
        .where(Subscription.topic == topic, Subscription.active == True)  # noqa: E712 - peewee expression
        .order_by(Subscription.id)
    )
    return [user_id for (user_id,) in query.tuples()]


def digest_users(user_ids: list[str], type_name: str) -> set[str]:
    """The users who get ``type_name`` by email in their daily digest (a type setting beats "*")."""
    modes: dict[str, dict[str, str]] = defaultdict(dict)
    for start in range(0, len(user_ids), 500):
        query = Preference.select(Preference.user_id, Preference.type, Preference.mode).where(
            Preference.user_id.in_(user_ids[start : start + 500]),
            Preference.channel == "email",
            Preference.type.in_([type_name, WILDCARD]),
        )
        for user_id, type_, mode in query.tuples():
            modes[user_id][type_] = mode
    return {user for user, by_type in modes.items() if by_type.get(type_name, by_type.get(WILDCARD)) == "digest"}
