"""Control commands (``tidings.*`` events): users, preferences, topic subscriptions.

Each is an upsert guarded by the command's time, so applying one twice is
harmless and an older command never overwrites a newer one. An operator's
command (the `tidings` CLI) always applies. Who may send which command is
decided before, by admission (authority.py).
"""

from __future__ import annotations

import unicodedata
import zoneinfo
from collections.abc import Callable
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Any

import peewee

from dispatcher.commands.base import Command
from dispatcher.commands.cancel import cancel_notification
from dispatcher.commands.endpoints import upsert_endpoint
from dispatcher.commands.overrides import override_placement
from dispatcher.core import clock
from dispatcher.core.authority import Sender
from dispatcher.core.catalog import WILDCARD, Catalog
from dispatcher.core.errors import InvalidCommand
from dispatcher.core.events import MAX_ID_LENGTH, CloudEvent, redact_secrets
from dispatcher.core.events import REDACTED as REDACTED  # re-exported: tests compare stored data with it
from dispatcher.core.timing import parse_hhmm
from dispatcher.storage.models import Preference, Subscription, User

USER_FIELDS = ("email", "name", "timezone", "locale", "discord_webhook_url", "digest_time", "quiet_start", "quiet_end")
DELIVERY_MODES = ("immediate", "digest")
#: Who a command comes from unless the caller says: an anonymous producer, the least authority.
ANONYMOUS = Sender()


def apply_command(event: CloudEvent, catalog: Catalog, sender: Sender = ANONYMOUS) -> str:
    """Apply one control command; return a word for the log ("applied", "stale", or "unchanged": it asked
    for what already was).

    Admission decided whether ``sender`` may send it at all; here ``sender`` decides what a
    cancel may reach and whether a command applies over a newer record (an operator's does).
    """
    handler = HANDLERS.get(event.type)
    if handler is None:
        raise InvalidCommand(f"unknown control command {event.type[:100]!r}; known: {', '.join(sorted(HANDLERS))}")
    changed_at = clock.to_utc_naive(event.time) if event.time else clock.now()
    return handler(Command(event.data, changed_at, catalog, sender, event.source))


def stored_data(event: CloudEvent) -> dict[str, Any]:
    """What the events table keeps of an event's data: a command's secrets and addresses are left out."""
    return redact_secrets(event.data) if event.is_command else event.data


def _upsert(
    model: type[User | Preference | Subscription],
    key: list[peewee.Field[Any]],
    row: dict[str, Any],
    update: dict[peewee.Field[Any], Any],
    command: Command,
) -> str:
    """Insert ``row``, or update the existing one if this command is not older than it (an operator's always)."""
    newer = None if command.sender.operator else (model.changed_at <= peewee.EXCLUDED.changed_at)
    query = model.insert(**row).on_conflict(conflict_target=key, update=update, where=newer)
    return "applied" if query.as_rowcount().execute() else "stale"


def upsert_user(command: Command) -> str:
    data, changed_at = command.data, command.changed_at
    user_id = _user_id(data, "id")
    unknown = set(data) - {"id", *USER_FIELDS}
    if unknown:
        raise InvalidCommand(f"tidings.user.upsert: unknown fields {sorted(unknown)[:10]}")
    fields = {name: CHECKS[name](data[name]) for name in USER_FIELDS if name in data}
    if fields.get("timezone", "") is None:
        fields["timezone"] = "UTC"
    if fields.get("digest_time", "") is None:
        fields["digest_time"] = "08:00"
    if ("quiet_start" in fields) != ("quiet_end" in fields) or (fields.get("quiet_start") is None) != (
        fields.get("quiet_end") is None
    ):
        raise InvalidCommand("quiet_start and quiet_end go together: both HH:MM, or both null")
    update: dict[peewee.Field[Any], Any] = {getattr(User, name): value for name, value in fields.items()}
    update[User.changed_at] = changed_at
    return _upsert(User, [User.id], {"id": user_id, **fields, "changed_at": changed_at}, update, command)


def set_preferences(command: Command) -> str:
    data, changed_at = command.data, command.changed_at
    user_id = _user_id(data, "user")
    items = data.get("preferences")
    if not isinstance(items, list) or not items:
        raise InvalidCommand("tidings.preferences.set: preferences must be a non-empty list")
    rows = [_preference(item, command.catalog) for item in items]
    outcomes = []
    for type_name, channel, chosen in rows:
        # What the item leaves out stays as stored; on a new row it is unset (None): routing then
        # looks at the "*" row, then the default, so a mode alone never switches a channel on.
        row: dict[str, Any] = {"user_id": user_id, "type": type_name, "channel": channel, "enabled": None, "mode": None}
        row |= {**chosen, "changed_at": changed_at}
        update: dict[peewee.Field[Any], Any] = {getattr(Preference, name): value for name, value in chosen.items()}
        update[Preference.changed_at] = changed_at
        key: list[peewee.Field[Any]] = [Preference.user_id, Preference.type, Preference.channel]
        outcomes.append(_upsert(Preference, key, row, update, command))
    return "applied" if "applied" in outcomes else "stale"


def _preference(item: object, catalog: Catalog) -> tuple[str, str, dict[str, Any]]:
    """(type, channel, the fields the item sets: "enabled", "mode" or both)."""
    if not isinstance(item, dict):
        raise InvalidCommand("tidings.preferences.set: each preference must be an object")
    type_name, channel = item.get("type"), item.get("channel")
    if type_name != WILDCARD and (not isinstance(type_name, str) or type_name not in catalog):
        raise InvalidCommand(
            f'tidings.preferences.set: type {str(type_name)[:100]!r} is neither "*" nor in the catalog'
        )
    known = catalog.channels  # the registered channels, which the catalog was loaded with
    if not isinstance(channel, str) or channel not in known:
        raise InvalidCommand(f"tidings.preferences.set: channel must be one of {', '.join(known)}")
    chosen = {name: item[name] for name in ("enabled", "mode") if name in item}
    if not chosen:
        raise InvalidCommand("tidings.preferences.set: each preference sets enabled, mode or both")
    if "enabled" in chosen and not isinstance(chosen["enabled"], bool):
        raise InvalidCommand("tidings.preferences.set: enabled must be true or false")
    digests = [name for name, facts in known.items() if facts.digests]
    mode = chosen.get("mode", "immediate")
    if mode not in DELIVERY_MODES or (mode == "digest" and channel not in digests):
        raise InvalidCommand(
            f'tidings.preferences.set: mode must be "immediate", or "digest" for the {" or ".join(digests)} channel'
        )
    return type_name, channel, chosen


def _subscription(active: bool) -> Callable[[Command], str]:
    def handle(command: Command) -> str:
        data, changed_at = command.data, command.changed_at
        topic = data.get("topic")
        if not isinstance(topic, str) or not 0 < len(topic) <= MAX_ID_LENGTH:
            raise InvalidCommand(f"topic must be a string of 1 to {MAX_ID_LENGTH} characters")
        user_id = _user_id(data, "user")
        row = {"topic": topic, "user_id": user_id, "active": active, "changed_at": changed_at}
        update: dict[peewee.Field[Any], Any] = {Subscription.active: active, Subscription.changed_at: changed_at}
        return _upsert(Subscription, [Subscription.topic, Subscription.user_id], row, update, command)

    return handle


def _user_id(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise InvalidCommand(f"data.{key} must be a user id: a string of 1 to {MAX_ID_LENGTH} characters")
    return value


def _optional_text(name: str, limit: int) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > limit or any(_is_control(ch) for ch in value):
            raise InvalidCommand(
                f"{name} must be a single-line string of at most {limit} characters without "
                "control or format characters, or null"
            )
        return value

    return check


def _is_control(ch: str) -> bool:
    """Control (Cc), format (Cf: bidi overrides, zero-width) and line/paragraph separators (Zl, Zp)."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def check_email(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 320:
        raise InvalidCommand("email must be a string of at most 320 characters, or null")
    try:
        address = Address(addr_spec=value)
    except (ValueError, IndexError, TypeError, HeaderParseError):
        raise InvalidCommand("email is not a mail address") from None  # the value is not quoted: it is personal
    if not address.username or not address.domain or any(_is_control(ch) for ch in value):
        raise InvalidCommand("email is not a mail address")
    return value


def check_timezone(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidCommand('timezone must be an IANA name such as "Europe/Paris"')
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a directory
        raise InvalidCommand(f"timezone {value[:60]!r} is not an IANA time zone name") from None
    return value


def check_webhook_url(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("https://") or len(value) > 2048:
        raise InvalidCommand("discord_webhook_url must be an https:// URL, or null")
    return value


def _optional_hhmm(name: str) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if value is None:
            return None
        text = value if isinstance(value, str) else ""  # anything else fails as "" does
        try:
            parse_hhmm(text)
        except ValueError:
            raise InvalidCommand(f'{name} must be a local time written HH:MM, such as "08:00", or null') from None
        return text

    return check


CHECKS: dict[str, Callable[[object], str | None]] = {
    "email": check_email,
    "name": _optional_text("name", 255),
    "timezone": check_timezone,
    "locale": _optional_text("locale", 35),
    "discord_webhook_url": check_webhook_url,
    "digest_time": _optional_hhmm("digest_time"),
    "quiet_start": _optional_hhmm("quiet_start"),
    "quiet_end": _optional_hhmm("quiet_end"),
}

HANDLERS: dict[str, Callable[[Command], str]] = {
    "tidings.user.upsert": upsert_user,
    "tidings.webhook.upsert": upsert_endpoint,
    "tidings.notification.cancel": cancel_notification,
    "tidings.preferences.set": set_preferences,
    "tidings.topic.subscribe": _subscription(active=True),
    "tidings.topic.unsubscribe": _subscription(active=False),
    "tidings.standings.override": override_placement,
}
