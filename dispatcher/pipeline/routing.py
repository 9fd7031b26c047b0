"""Routing: which deliveries one event makes, with what status, and when they are due.

The one home of the rule, for each recipient and each channel that addresses users:

- **enabled**: the user's (type, channel) setting, else their ("*", channel) setting, else the
  catalog default (the type lists the channel). A critical type always reaches its default
  channels: they are *locked*, whatever the settings say.
- **digest**: the mode, found the same way (else "immediate"), says "digest" on a channel with
  digests (email): the delivery waits with status "digest" for the user's daily digest. Never for a
  critical or an internal type (the digest itself).

  Each of the two is looked up on its own: a setting that leaves one unset (a command named only
  the other) passes it on to the next. So ``{"type": "*", "channel": "email", "mode": "digest"}``
  makes digests of the emails a user gets, and switches email on for no type.
- **quiet hours**: on a channel where they apply (email, Discord), a delivery due inside the
  user's quiet hours is due at their end instead. Never for a critical type, nor for a digest item.
- **held**: due later than MAX_MESSAGE_DELAY, it waits in the database for the release job.

A channel that addresses endpoints (signed webhooks) ignores preferences and quiet hours: every
enabled endpoint whose patterns match the type gets a delivery, due with the event.

The channels' facts come from their classes (channels/base.py), through the registry. ingest
inserts the plan; ``tidings prefs show`` prints it for one user.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from channels import channel_class
from channels.base import Channel
from dispatcher.commands.endpoints import endpoints_for
from dispatcher.core import clock
from dispatcher.core.catalog import WILDCARD, NotificationType
from dispatcher.core.timing import MAX_MESSAGE_DELAY, quiet_until
from dispatcher.pipeline.preferences import QUERY_CHUNK, Setting, UserPreferences, load_preferences
from dispatcher.storage.models import DeliveryStatus, User

DIGEST_MODE = "digest"
IMMEDIATE_MODE = "immediate"


@dataclasses.dataclass(frozen=True)
class PlannedDelivery:
    """One delivery to make: to whom, on which channel, with which status, due when."""

    target: str  # a user id, or an endpoint id on a channel that addresses endpoints
    channel: str
    status: str  # DeliveryStatus.PENDING, or DeliveryStatus.DIGEST: waiting for the daily digest
    due: dt.datetime  # naive UTC
    held: bool  # due too late for a delayed message: the release job sends it
    locked: bool = False  # a critical type's default channel: preferences cannot switch it off
    quiet: bool = False  # due at the end of the user's quiet hours, not with the event


def locked(kind: NotificationType, channel: str) -> bool:
    """Whether preferences cannot switch ``channel`` off for ``kind``: a critical type's default channels."""
    return kind.critical and channel in kind.channels


def can_unsubscribe(kind: NotificationType) -> bool:
    """Whether a user may switch ``kind`` off, so whether its notifications carry an unsubscribe link."""
    return not kind.critical


def plan_deliveries(
    kind: NotificationType,
    recipients: Sequence[str],
    channels: Sequence[str],
    *,
    due: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> list[PlannedDelivery]:
    """The deliveries of an event of ``kind`` on ``channels`` (registered names), due at ``due`` (naive UTC).

    Recipients first, each on the channels that address users in the order given, then the
    endpoints. One query of the recipients' preferences and one of their quiet hours (per 500
    recipients); ``now`` (default: the clock) decides what is held.
    """
    now = now or clock.now()
    due = due or now
    classes = {name: channel_class(name) for name in channels}
    for_users = [name for name, cls in classes.items() if cls.addresses == "user"]
    plan: list[PlannedDelivery] = []
    if for_users and recipients:
        preferences = load_preferences(list(recipients), kind.name)
        quiet = any(classes[name].quiet_hours for name in for_users) and not kind.critical
        users = _with_quiet_hours(list(recipients)) if quiet else {}
        for user_id in recipients:
            settings = preferences.get(user_id, {})
            for name in for_users:
                planned = _route(kind, user_id, users.get(user_id), settings, name, classes[name], due, now)
                if planned is not None:
                    plan.append(planned)
    for name, cls in classes.items():
        if cls.addresses == "endpoint":
            held = _held(due, now)
            plan.extend(
                PlannedDelivery(target, name, DeliveryStatus.PENDING, due, held) for target in endpoints_for(kind.name)
            )
    return plan


def _route(
    kind: NotificationType,
    user_id: str,
    user: User | None,
    settings: UserPreferences,
    name: str,
    cls: type[Channel],
    due: dt.datetime,
    now: dt.datetime,
) -> PlannedDelivery | None:
    """One user (``user``: their row if they have quiet hours) on one channel: the delivery, or None if off."""
    found: tuple[Setting | None, ...] = (settings.get((kind.name, name)), settings.get((WILDCARD, name)))
    chosen = [setting for setting in found if setting is not None]
    is_locked = locked(kind, name)
    enabled = next((s.enabled for s in chosen if s.enabled is not None), name in kind.channels)
    if not (enabled or is_locked):
        return None
    mode = next((s.mode for s in chosen if s.mode is not None), IMMEDIATE_MODE)
    status, when = DeliveryStatus.PENDING, due
    if cls.digests and mode == DIGEST_MODE and not (kind.critical or kind.internal):
        status = DeliveryStatus.DIGEST
    elif cls.quiet_hours and user is not None and not kind.critical:
        when = quiet_until(due, user.timezone, user.quiet_start, user.quiet_end) or due
    return PlannedDelivery(user_id, name, status, when, _held(when, now), locked=is_locked, quiet=when != due)


def _held(due: dt.datetime, now: dt.datetime) -> bool:
    return (due - now).total_seconds() > MAX_MESSAGE_DELAY


def _with_quiet_hours(user_ids: list[str]) -> dict[str, User]:
    """The users among ``user_ids`` that have quiet hours, in one query per 500 users."""
    found: dict[str, User] = {}
    for start in range(0, len(user_ids), QUERY_CHUNK):
        query = User.select(User.id, User.timezone, User.quiet_start, User.quiet_end).where(
            User.id.in_(user_ids[start : start + QUERY_CHUNK]), User.quiet_start.is_null(False)
        )
        found.update((user.id, user) for user in query)
    return found
