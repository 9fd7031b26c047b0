"""What users chose: their stored preference settings, and their topic subscriptions.

These are the queries; what the settings mean for a delivery is decided in one place,
dispatcher/pipeline/routing.py.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from typing import cast

from dispatcher.core.catalog import WILDCARD
from dispatcher.storage.models import Preference, Subscription

#: Users per query: SQLite allows a limited number of bound parameters.
QUERY_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class Setting:
    """One stored choice for a (type or "*", channel): on or off, and "immediate" or "digest".

    None: not chosen in this setting (a command named only the other field); routing looks further.
    """

    enabled: bool | None
    mode: str | None = None


#: (type or "*", channel) -> the user's setting
UserPreferences = dict[tuple[str, str], Setting]


def load_preferences(user_ids: list[str], type_name: str) -> dict[str, UserPreferences]:
    """Every stored setting that bears on ``type_name`` for these users, in one query per 500 users."""
    found: dict[str, UserPreferences] = defaultdict(dict)
    for start in range(0, len(user_ids), QUERY_CHUNK):
        chunk = user_ids[start : start + QUERY_CHUNK]
        query = Preference.select(
            Preference.user_id, Preference.type, Preference.channel, Preference.enabled, Preference.mode
        ).where(Preference.user_id.in_(chunk), Preference.type.in_([type_name, WILDCARD]))
        # cast: peewee's stubs type the rows of .tuples() as model instances
        rows = cast(Iterable[tuple[str, str, str, bool | None, str | None]], query.tuples())
        for user_id, type_, channel, enabled, mode in rows:
            found[user_id][(type_, channel)] = Setting(enabled, mode)
    return found


def topic_subscribers(topic: str) -> list[str]:
    """The users currently subscribed to ``topic``, oldest subscription first."""
    query = (
        Subscription.select(Subscription.user_id)
        .where(Subscription.topic == topic, Subscription.active == True)  # noqa: E712 - peewee expression
        .order_by(Subscription.id)
    )
    return [user_id for (user_id,) in cast(Iterable[tuple[str]], query.tuples())]
