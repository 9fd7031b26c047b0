"""Create or upgrade the schema, safely when several processes start at once."""

from __future__ import annotations

import time
from collections.abc import Callable

import peewee
import playhouse.migrate
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator

from dispatcher.core import clock
from dispatcher.core.catalog import CONTROL_PREFIX
from dispatcher.core.errors import ConfigError
from dispatcher.core.events import redact_secrets
from dispatcher.storage import models
from dispatcher.storage.db import database, is_sqlite, transaction


def _create_initial_schema() -> None:
    version_1 = [
        models.SchemaVersion,
        models.User,
        models.Preference,
        models.Subscription,
        models.Event,
        models.Delivery,
        models.InboxItem,
    ]
    database.create_tables(version_1, safe=True)  # today's models: later columns included


def _http_channels() -> None:
    """Version 2: Discord and signed webhooks (disabled targets, endpoints, held retries)."""
    if "held" not in _columns("delivery"):
        migrator = SqliteMigrator(database) if is_sqlite() else PostgresqlMigrator(database)
        playhouse.migrate.migrate(migrator.add_column("delivery", "held", peewee.BooleanField(default=False)))
    # New tables, and the new index on delivery (CREATE INDEX IF NOT EXISTS).
    database.create_tables([models.DisabledTarget, models.WebhookEndpoint, models.Delivery], safe=True)


def _time_features() -> None:
    """Version 3: scheduling and cancel keys, digests, quiet hours, rankings, periodic job slots."""
    new_columns = [
        ("event", "cancel_key", peewee.CharField(max_length=255, null=True)),
        ("preference", "mode", peewee.CharField(max_length=16, default="immediate")),
        ("user", "digest_time", peewee.CharField(max_length=5, default="08:00")),
        ("user", "quiet_start", peewee.CharField(max_length=5, null=True)),
        ("user", "quiet_end", peewee.CharField(max_length=5, null=True)),
    ]
    migrator = SqliteMigrator(database) if is_sqlite() else PostgresqlMigrator(database)
    steps = [
        migrator.add_column(table, name, field) for table, name, field in new_columns if name not in _columns(table)
    ]
    if steps:
        playhouse.migrate.migrate(*steps)
    database.create_tables([models.Event, models.MatchResult, models.RankingSnapshot, models.JobRun], safe=True)


def _rejections() -> None:
    """Version 4: the reason of each dead-lettered event, for `tidings dlq`."""
    database.create_tables([models.Rejection], safe=True)


def _bus_authority() -> None:
    """Version 5: each event's publisher; no secrets kept in command data; no record dated in the future.

    Before version 5 a command dated far ahead (2999) made every later change look stale:
    such times are brought back to now. Commands' secrets and addresses are removed from the
    events table, as ingest now stores them.
    """
    if "publisher" not in _columns("event"):
        migrator = SqliteMigrator(database) if is_sqlite() else PostgresqlMigrator(database)
        publisher = peewee.CharField(max_length=255, null=True)
        playhouse.migrate.migrate(migrator.add_column("event", "publisher", publisher))
    now = clock.now()
    for model in (models.User, models.Preference, models.Subscription, models.WebhookEndpoint):
        model.update(changed_at=now).where(model.changed_at > now).execute()
    commands = models.Event.select(models.Event.id, models.Event.data).where(
        models.Event.type.startswith(CONTROL_PREFIX)
    )
    for row in commands:
        data = row.data if isinstance(row.data, dict) else {}
        kept = redact_secrets(data)
        if kept != data:
            models.Event.update(data=kept).where(models.Event.id == row.id).execute()


def _inbox_states() -> None:
    """Version 6: an inbox row is also seen or archived; a user's rows are indexed by id (the API's paging),
    and those not archived by partial indexes (the default list and the counts)."""
    columns = _columns("inbox_item")
    migrator = SqliteMigrator(database) if is_sqlite() else PostgresqlMigrator(database)
    steps = [
        migrator.add_column("inbox_item", name, peewee.DateTimeField(null=True))
        for name in ("seen_at", "archived_at")
        if name not in columns
    ]
    if steps:
        playhouse.migrate.migrate(*steps)
    database.create_tables([models.InboxItem], safe=True)  # its new indexes (CREATE INDEX IF NOT EXISTS)


def _periodic_runs() -> None:
    """Version 7: the last run of each periodic job, for `tidings status`."""
    database.create_tables([models.PeriodicRun], safe=True)


def _preference_fields_unset() -> None:
    """Version 8: a preference's ``enabled`` and ``mode`` may be unset (NULL), so that a command setting only
    one of them (a digest mode for "*") leaves the other to the "*" row or the default."""
    migrator = SqliteMigrator(database) if is_sqlite() else PostgresqlMigrator(database)
    steps = [
        migrator.drop_not_null("preference", column.name)
        for column in database.get_columns("preference")
        if column.name in ("enabled", "mode") and not column.null
    ]
    if steps:
        playhouse.migrate.migrate(*steps)


def _series_and_overrides() -> None:
    """Version 9: a match result's series (series_id, best_of, forfeit); placement overrides and their audit trail."""
    columns = _columns("match_result")
    migrator = SqliteMigrator(database) if is_sqlite() else PostgresqlMigrator(database)
    new_columns = [
        ("series_id", peewee.CharField(max_length=255, null=True)),
        ("best_of", peewee.IntegerField(null=True)),
        ("forfeit", peewee.CharField(max_length=255, null=True)),
    ]
    steps = [migrator.add_column("match_result", name, field) for name, field in new_columns if name not in columns]
    if steps:
        playhouse.migrate.migrate(*steps)
    # the series_id index (CREATE INDEX IF NOT EXISTS), and the new tables
    database.create_tables([models.MatchResult, models.PlacementOverride, models.OverrideEntry], safe=True)


def _columns(table: str) -> set[str]:
    return {column.name for column in database.get_columns(table)}


#: Version -> the step that brings the schema from the version before to it.
MIGRATIONS: dict[int, Callable[[], None]] = {
    1: _create_initial_schema,
    2: _http_channels,
    3: _time_features,
    4: _rejections,
    5: _bus_authority,
    6: _inbox_states,
    7: _periodic_runs,
    8: _preference_fields_unset,
    9: _series_and_overrides,
}
SCHEMA_VERSION = max(MIGRATIONS)


def current_version() -> int:
    """The schema version of the connected database (0: empty)."""
    if not models.SchemaVersion.table_exists():  # type: ignore[no-untyped-call]  # unannotated in peewee's stubs
        return 0
    row = models.SchemaVersion.select().order_by(models.SchemaVersion.version.desc()).first()
    return row.version if row else 0


def migrate(progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Apply the missing steps; return (version before, version after).

    One transaction under a lock (SQLite's write lock, a PostgreSQL advisory
    lock), so two workers starting together cannot both run a step.
    ``progress(done, total)`` is told after each step (`tidings migrate` shows it).
    """
    with transaction():
        if not is_sqlite():
            database.execute_sql("SELECT pg_advisory_xact_lock(hashtext('tidings.migrate'))")
        before = current_version()
        if before > SCHEMA_VERSION:
            raise ConfigError(
                f"the database schema is at version {before}, newer than this Tidings ({SCHEMA_VERSION}): "
                "upgrade Tidings"
            )
        for version in range(before + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version]()
            models.SchemaVersion.delete().execute()
            models.SchemaVersion.create(version=version)
            if progress is not None:
                progress(version - before, SCHEMA_VERSION - before)
        return before, SCHEMA_VERSION


def migrate_when_free(
    *, attempts: int = 20, run: Callable[[], tuple[int, int]] = migrate, sleep: Callable[[float], None] = time.sleep
) -> tuple[int, int]:
    """migrate(), waiting for another process starting at the same moment to finish its own.

    A new SQLite file must be switched to WAL, which needs it to itself; under load SQLite can
    answer "database is locked" to a process starting beside another (the Procfile's worker
    and sender groups). Then this closes the connection and tries again, a little later.
    """
    for attempt in range(1, attempts + 1):
        try:
            return run()
        except peewee.OperationalError as e:
            if "locked" not in str(e) or attempt == attempts:
                raise
            database.close()
            sleep(0.1 * attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")
