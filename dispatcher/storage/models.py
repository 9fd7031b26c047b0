"""Storage models. Times are naive UTC (see clock.py).

Every side effect is keyed in the database so that redeliveries are harmless:
``Event`` on (source, event_id), ``Delivery`` on (event, user_id, channel),
``InboxItem`` on its delivery.
"""

from __future__ import annotations

import json
from typing import Any

import peewee

from dispatcher.core import clock
from dispatcher.storage.db import database


class JSONField(peewee.TextField):
    """JSON stored as text, the same on SQLite and PostgreSQL."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class SchemaVersion(BaseModel):
    """The schema version `tidings migrate` last brought the database to."""

    id = peewee.AutoField()  # peewee adds it when no field is the primary key; spelled out for mypy
    version = peewee.IntegerField()


class User(BaseModel):
    """Someone who can be notified; written by tidings.user.upsert."""

    id = peewee.CharField(max_length=255, primary_key=True)
    email = peewee.CharField(max_length=320, null=True)
    name = peewee.CharField(max_length=255, null=True)
    timezone = peewee.CharField(max_length=64, default="UTC")
    locale = peewee.CharField(max_length=35, null=True)
    discord_webhook_url = peewee.TextField(null=True)
    digest_time = peewee.CharField(max_length=5, default="08:00")  # local "HH:MM"
    quiet_start = peewee.CharField(max_length=5, null=True)  # local "HH:MM"; with quiet_end
    quiet_end = peewee.CharField(max_length=5, null=True)
    changed_at = peewee.DateTimeField()
    created_at = peewee.DateTimeField(default=clock.now)


class Preference(BaseModel):
    """A user's choice for one (type or "*", channel)."""

    id = peewee.AutoField()  # peewee adds it when no field is the primary key; spelled out for mypy
    user_id = peewee.CharField(max_length=255)
    type = peewee.CharField(max_length=255)
    channel = peewee.CharField(max_length=32)
    # Each None where the user's command did not set it: routing then takes the "*" row's, else the default.
    enabled = peewee.BooleanField(null=True)
    mode = peewee.CharField(max_length=16, null=True)  # "immediate" or "digest" (a channel with digests)
    changed_at = peewee.DateTimeField()

    class Meta:
        indexes = ((("user_id", "type", "channel"), True),)


class Subscription(BaseModel):
    """A user's membership of a topic; kept when inactive so that order holds."""

    id = peewee.AutoField()  # peewee adds it when no field is the primary key; spelled out for mypy
    topic = peewee.CharField(max_length=255)
    user_id = peewee.CharField(max_length=255)
    active = peewee.BooleanField()
    changed_at = peewee.DateTimeField()

    class Meta:
        indexes = ((("topic", "user_id"), True),)


class Event(BaseModel):
    """An accepted event; its (source, event_id) key makes processing happen once."""

    id = peewee.AutoField()  # peewee adds it when no field is the primary key; spelled out for mypy
    source = peewee.CharField(max_length=1020)
    event_id = peewee.CharField(max_length=1020)
    type = peewee.CharField(max_length=255, index=True)
    subject = peewee.TextField(null=True)
    cancel_key = peewee.CharField(max_length=255, null=True, index=True)  # data.cancel_key
    time = peewee.DateTimeField(null=True)
    data = JSONField()  # a command's secrets and addresses are not kept (commands.stored_data)
    received_at = peewee.DateTimeField(default=clock.now, index=True)
    publisher = peewee.CharField(max_length=255, null=True)  # the RabbitMQ user that published it; None: anonymous

    class Meta:
        indexes = ((("source", "event_id"), True),)


class DeliveryStatus:
    PENDING = "pending"
    SENDING = "sending"  # claimed by a worker; the side effect may be under way
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"

    CANCELLED = "cancelled"
    DIGEST = "digest"  # waiting for the user's daily digest
    DIGESTED = "digested"  # sent as part of a digest

    FINAL = (SENT, SKIPPED, FAILED, CANCELLED, DIGESTED)


class Delivery(BaseModel):
    """One event to one user on one channel, with its outcome."""

    id = peewee.AutoField()  # peewee adds it when no field is the primary key; spelled out for mypy
    event = peewee.ForeignKeyField(Event, backref="deliveries", on_delete="CASCADE")
    user_id = peewee.CharField(max_length=255, index=True)
    channel = peewee.CharField(max_length=32)
    status = peewee.CharField(max_length=16, default=DeliveryStatus.PENDING)
    attempts = peewee.IntegerField(default=0)
    last_error = peewee.TextField(null=True)
    #: When the next attempt is due: creation, or the end of a retry's backoff.
    next_attempt_at = peewee.DateTimeField(default=clock.now)
    #: True while a retry waits in the database (too far ahead for a delayed message).
    held = peewee.BooleanField(default=False)
    claimed_by = peewee.CharField(max_length=64, null=True)
    claimed_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=clock.now)
    updated_at = peewee.DateTimeField(default=clock.now)
    sent_at = peewee.DateTimeField(null=True)
    #: The recipient's row, when a query joined it (pipeline/delivery.claim_many) or ingest set it; not a column.
    user: User | None

    class Meta:
        indexes = (
            (("event", "user_id", "channel"), True),
            (("status", "next_attempt_at"), False),
            (("held", "next_attempt_at"), False),
        )


class InboxItem(BaseModel):
    """An in-app notification: what the user sees in the product's inbox."""

    id = peewee.AutoField()  # peewee adds it when no field is the primary key; spelled out for mypy
    delivery = peewee.ForeignKeyField(Delivery, unique=True, on_delete="CASCADE")
    user_id = peewee.CharField(max_length=255)
    type = peewee.CharField(max_length=255)
    title = peewee.TextField()
    body = peewee.TextField()
    url = peewee.TextField(null=True)
    data = JSONField()
    created_at = peewee.DateTimeField(default=clock.now)
    seen_at = peewee.DateTimeField(null=True)
    read_at = peewee.DateTimeField(null=True)
    archived_at = peewee.DateTimeField(null=True)

    class Meta:
        # (user_id, id): a user's inbox, newest first, paged by id (keyset, no OFFSET); the partial
        # indexes below serve the default list (not archived) and the counts (dispatcher/commands/inbox.py).
        indexes = ((("user_id", "created_at"), False), (("user_id", "id"), False))


def _inbox_indexes() -> None:
    """Partial indexes of the items not archived: all, unread, unseen (each count reads only its own rows)."""
    active = InboxItem.archived_at.is_null()
    for name, where in (
        ("inbox_item_active", active),
        ("inbox_item_unread", active & InboxItem.read_at.is_null()),
        ("inbox_item_unseen", active & InboxItem.seen_at.is_null()),
    ):
        InboxItem.add_index(InboxItem.index(InboxItem.user_id, InboxItem.id, name=name, where=where))


_inbox_indexes()


class DisabledTarget(BaseModel):
    """An HTTP target that told us it is gone (Discord 404/401): never called again.

    Keyed by a hash of the URL, so a user who sets a new webhook URL is served again.
    """

    key = peewee.CharField(max_length=64, primary_key=True)  # sha256 hex of the URL
    channel = peewee.CharField(max_length=32)
    description = peewee.CharField(max_length=255)  # the URL without its secret part
    reason = peewee.TextField()
    disabled_at = peewee.DateTimeField(default=clock.now)


class WebhookEndpoint(BaseModel):
    """A receiver of signed webhooks (Standard Webhooks), written by tidings.webhook.upsert."""

    id = peewee.CharField(max_length=255, primary_key=True)
    url = peewee.TextField()
    secret = peewee.CharField(max_length=255)
    previous_secret = peewee.CharField(max_length=255, null=True)  # still signs until rotated_at + overlap
    rotated_at = peewee.DateTimeField(null=True)
    types = JSONField()  # glob patterns such as "match.*"
    enabled = peewee.BooleanField(default=True)
    disabled_reason = peewee.TextField(null=True)
    owner = peewee.CharField(max_length=255, null=True)  # a user id told when it is disabled
    failing_since = peewee.DateTimeField(null=True)
    changed_at = peewee.DateTimeField()
    created_at = peewee.DateTimeField(default=clock.now)


class MatchResult(BaseModel):
    """One match.completed event, as the rankings ledger keeps it."""

    id = peewee.AutoField()  # peewee adds it when no field is the primary key; spelled out for mypy
    event = peewee.ForeignKeyField(Event, unique=True, on_delete="CASCADE")
    tournament_id = peewee.CharField(max_length=255, index=True)
    match_id = peewee.CharField(max_length=255, null=True)
    winner = peewee.CharField(max_length=255, null=True)  # a team id
    participants = JSONField()  # [{team_id, score, placement, kills}]
    completed_at = peewee.DateTimeField()
    series_id = peewee.CharField(max_length=255, null=True, index=True)  # with best_of: a game of a series
    best_of = peewee.IntegerField(null=True)
    forfeit = peewee.CharField(max_length=255, null=True)  # the team that forfeited the series with this game


class RankingSnapshot(BaseModel):
    """Standings as one recompute left them; the previous versions are kept."""

    id = peewee.AutoField()  # peewee adds it when no field is the primary key; spelled out for mypy
    scope = peewee.CharField(max_length=255)  # "overall" or "tournament:<id>"
    version = peewee.IntegerField()
    standings = JSONField()  # [{team_id, rank, points, ...}], best first
    computed_at = peewee.DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("scope", "version"), True),)


class PlacementOverride(BaseModel):
    """A final rank set by tournament staff, applied over the computed standings of its scope."""

    id = peewee.AutoField()  # peewee adds it when no field is the primary key; spelled out for mypy
    scope = peewee.CharField(max_length=255)  # "tournament:<id>"
    team_id = peewee.CharField(max_length=255)
    rank = peewee.IntegerField()
    reason = peewee.TextField()
    actor = peewee.CharField(max_length=255)  # who decided it, as the command names them
    changed_at = peewee.DateTimeField()  # the command's time

    class Meta:
        indexes = ((("scope", "team_id"), True),)


class OverrideEntry(BaseModel):
    """The audit trail of placement overrides: one row per override set, changed or revoked."""

    id = peewee.AutoField()  # peewee adds it when no field is the primary key; spelled out for mypy
    scope = peewee.CharField(max_length=255, index=True)
    team_id = peewee.CharField(max_length=255)
    action = peewee.CharField(max_length=16)  # "set" or "revoke"
    old_rank = peewee.IntegerField(null=True)  # the rank before: overridden or computed (None: unranked)
    new_rank = peewee.IntegerField(null=True)  # the rank after
    reason = peewee.TextField()
    actor = peewee.CharField(max_length=255)
    via = peewee.CharField(max_length=1020)  # how it came: the command's source, and its publisher
    at = peewee.DateTimeField()  # the command's time


class JobRun(BaseModel):
    """A periodic job's run for one slot (its scheduled time): two schedulers cannot both run it."""

    id = peewee.AutoField()  # peewee adds it when no field is the primary key; spelled out for mypy
    job = peewee.CharField(max_length=64)
    slot = peewee.CharField(max_length=32)  # e.g. "2026-11-23T08:15"
    started_at = peewee.DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("job", "slot"), True),)


class PeriodicRun(BaseModel):
    """The last run of each periodic job (schedules.py), for `tidings status`: one row per job, overwritten."""

    job = peewee.CharField(max_length=64, primary_key=True)
    started_at = peewee.DateTimeField()
    finished_at = peewee.DateTimeField()
    outcome = peewee.CharField(max_length=16)  # "ok" or "failed"
    error = peewee.TextField(null=True)  # the exception's type and message, cut short


class Rejection(BaseModel):
    """Why an incoming message was dead-lettered, by the message id the encoder gives its body."""

    message_id = peewee.CharField(max_length=64, primary_key=True)
    reason = peewee.TextField()
    event_id = peewee.CharField(max_length=1020, null=True)
    type = peewee.CharField(max_length=255, null=True)
    source = peewee.CharField(max_length=1020, null=True)
    rejected_at = peewee.DateTimeField(default=clock.now)


ALL_MODELS: list[type[BaseModel]] = [
    SchemaVersion,
    User,
    Preference,
    Subscription,
    Event,
    Delivery,
    InboxItem,
    DisabledTarget,
    WebhookEndpoint,
    MatchResult,
    RankingSnapshot,
    PlacementOverride,
    OverrideEntry,
    JobRun,
    Rejection,
    PeriodicRun,
]
