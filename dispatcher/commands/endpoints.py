"""Signed-webhook endpoints: the tidings.webhook.upsert command, and which endpoints take a type.

An endpoint receives every event whose type matches one of its glob patterns,
whatever the users' preferences.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fnmatch
import secrets
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from dispatcher.commands.base import Command
from dispatcher.core import clock
from dispatcher.core.errors import InvalidCommand
from dispatcher.core.events import MAX_ID_LENGTH
from dispatcher.storage.db import is_sqlite
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, WebhookEndpoint

SECRET_PREFIX = "whsec_"
FIELDS = ("url", "secret", "types", "enabled", "owner")
MAX_PATTERNS = 100


def new_secret() -> str:
    """A Standard Webhooks secret: "whsec_" + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a "whsec_…" secret stands for."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def check_secret(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(SECRET_PREFIX):
        raise InvalidCommand('secret must be "whsec_" followed by base64 (24 to 64 random bytes)')
    try:
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCommand("secret: the part after whsec_ is not base64") from None
    if not 24 <= len(key) <= 64:
        raise InvalidCommand(f"secret must hold 24 to 64 bytes, not {len(key)}")
    return value


#: Hosts an endpoint may reach over plain http://: this machine's own receivers (the embedded mode's, a test's).
#: Tidings refuses them anyway unless TIDINGS_ALLOW_PRIVATE_NETWORKS lets it reach loopback.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def check_url(value: object) -> str:
    """An https:// URL, or an http:// one to a loopback host, of at most 2048 characters."""
    if not isinstance(value, str) or len(value) > 2048 or " " in value:
        raise InvalidCommand("url must be an https:// URL of at most 2048 characters")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return value
    raise InvalidCommand("url must be an https:// URL (http:// is allowed only to 127.0.0.1, ::1 or localhost)")


def check_types(value: object) -> list[str]:
    if (
        not isinstance(value, list)
        or not 0 < len(value) <= MAX_PATTERNS
        or not all(isinstance(p, str) and 0 < len(p) <= 255 for p in value)
    ):
        raise InvalidCommand(f'types must be a list of 1 to {MAX_PATTERNS} glob patterns such as "match.*"')
    return list(dict.fromkeys(value))


def check_owner(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH):
        raise InvalidCommand("owner must be a user id, or null")
    return value


def check_enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidCommand("enabled must be true or false")
    return value


CHECKS = {
    "url": check_url,
    "secret": check_secret,
    "types": check_types,
    "enabled": check_enabled,
    "owner": check_owner,
}


def upsert_endpoint(command: Command) -> str:
    """Create or change an endpoint; fields absent are kept. A new secret starts a rotation.

    An operator's command (the CLI) always applies, whatever time the endpoint claims.
    """
    data, changed_at = command.data, command.changed_at
    endpoint_id = data.get("id")
    if not isinstance(endpoint_id, str) or not 0 < len(endpoint_id) <= MAX_ID_LENGTH:
        raise InvalidCommand(f"data.id must be an endpoint id: a string of 1 to {MAX_ID_LENGTH} characters")
    unknown = set(data) - {"id", *FIELDS}
    if unknown:
        raise InvalidCommand(f"tidings.webhook.upsert: unknown fields {sorted(unknown)[:10]}")
    values: dict[str, Any] = {name: CHECKS[name](data[name]) for name in FIELDS if name in data}
    query = WebhookEndpoint.select().where(WebhookEndpoint.id == endpoint_id)
    existing = query.first() if is_sqlite() else query.for_update().first()  # SQLite: the transaction locks
    if existing is None:
        missing = [name for name in ("url", "secret", "types") if name not in values]
        if missing:
            raise InvalidCommand(f"tidings.webhook.upsert: a new endpoint needs {', '.join(missing)}")
        WebhookEndpoint.create(id=endpoint_id, changed_at=changed_at, **values)
        return "applied"
    if existing.changed_at > changed_at and not command.sender.operator:
        return "stale"
    if values.get("secret", existing.secret) != existing.secret:
        values.update(previous_secret=existing.secret, rotated_at=changed_at)
    if values.get("enabled") is False and existing.enabled:
        values["disabled_reason"] = "disabled by tidings.webhook.upsert"
    if (values.get("enabled") is True and not existing.enabled) or values.get("url", existing.url) != existing.url:
        values.update(disabled_reason=None, failing_since=None)
    WebhookEndpoint.update(changed_at=changed_at, **values).where(WebhookEndpoint.id == endpoint_id).execute()
    return "applied"


def endpoints_for(type_name: str) -> list[str]:
    """The ids of the enabled endpoints with a pattern matching ``type_name``."""
    query = WebhookEndpoint.select(WebhookEndpoint.id, WebhookEndpoint.types).where(
        WebhookEndpoint.enabled == True  # noqa: E712 - peewee expression
    )
    return [
        endpoint.id
        for endpoint in query.order_by(WebhookEndpoint.id)
        if any(fnmatch.fnmatchcase(type_name, pattern) for pattern in endpoint.types)
    ]


#: How many deliveries one statement of replay_deliveries makes due (SQLite allows 32766 parameters at most).
REPLAY_CHUNK = 500


def replay_deliveries(
    channels: Sequence[str],
    *,
    event_id: str | None = None,
    source: str | None = None,
    since: dt.datetime | None = None,
    endpoint: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Make webhook deliveries due again, to be sent with their original webhook-id; return how many.

    One event's (``event_id``, and ``source`` when several share it), or every failed one updated
    since ``since`` (naive UTC); to ``endpoint`` only, if given. ``channels`` are the channels that
    address endpoints. A delivery being sent right now is left alone. The scheduler's release job
    sends them (within a minute). `tidings webhooks replay` and ``POST /v1/webhooks/{id}/replay``.
    They are updated REPLAY_CHUNK at a time; ``progress(done, total)`` is told after each chunk.
    """
    if (event_id is None) == (since is None):
        raise InvalidCommand("name an event id, or a since time for every failed webhook since then (not both)")
    query = Delivery.select(Delivery.id).join(Event).where(Delivery.channel.in_(list(channels)))
    if event_id is not None:
        query = query.where(Event.event_id == event_id)
        if source is not None:
            query = query.where(Event.source == source)
    else:
        query = query.where(Delivery.status == DeliveryStatus.FAILED, Delivery.updated_at >= since)
    if endpoint is not None:
        query = query.where(Delivery.user_id == endpoint)
    # cast: peewee's stubs type the rows of .tuples() as model instances
    ids = [delivery_id for (delivery_id,) in cast(Iterable[tuple[int]], query.tuples())]
    now = clock.now()
    replayed = 0
    for start in range(0, len(ids), REPLAY_CHUNK):
        chunk = ids[start : start + REPLAY_CHUNK]
        replay = Delivery.update(
            status=DeliveryStatus.PENDING,
            attempts=0,
            held=True,
            next_attempt_at=now,
            last_error=None,
            claimed_by=None,
            updated_at=now,
        )
        replayed += int(replay.where(Delivery.id.in_(chunk), Delivery.status != DeliveryStatus.SENDING).execute())
        if progress is not None:
            progress(start + len(chunk), len(ids))
    return replayed
