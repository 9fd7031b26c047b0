"""migrate(): creates the schema once, is a no-op when current, refuses a newer database."""

from __future__ import annotations

import pytest

from dispatcher.core.errors import ConfigError
from dispatcher.storage.db import database
from dispatcher.storage.migrate import SCHEMA_VERSION, current_version, migrate
from dispatcher.storage.models import ALL_MODELS, SchemaVersion, User


def test_migrating_an_empty_database_creates_the_schema(db: str) -> None:
    # given
    database.drop_tables(ALL_MODELS)
    assert current_version() == 0

    # when
    result = migrate()

    # then
    assert result == (0, SCHEMA_VERSION)
    assert current_version() == SCHEMA_VERSION
    assert all(model.table_exists() for model in ALL_MODELS)
    assert [row.version for row in SchemaVersion.select()] == [SCHEMA_VERSION]


def test_migrating_a_current_database_changes_nothing(db: str) -> None:
    # given
    database.drop_tables(ALL_MODELS)
    migrate()
    User.create(id="u1", changed_at="2026-05-09 12:00:00")

    # when
    result = migrate()

    # then
    assert result == (SCHEMA_VERSION, SCHEMA_VERSION)
    assert SchemaVersion.select().count() == 1
    assert User.select().count() == 1


def test_a_database_newer_than_this_tidings_is_refused(db: str) -> None:
    # given
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=SCHEMA_VERSION + 1)

    # when / then
    with pytest.raises(
        ConfigError,
        match=f"schema is at version {SCHEMA_VERSION + 1}, newer than this Tidings "
        f"\\({SCHEMA_VERSION}\\): upgrade Tidings",
    ):
        migrate()
    assert current_version() == SCHEMA_VERSION + 1


def test_processes_migrating_at_the_same_moment_apply_each_step_once(db: str) -> None:
    # given an empty database and four workers starting together
    import threading

    database.drop_tables(ALL_MODELS)
    database.close()
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def boot() -> None:
        try:
            start.wait()
            results.append(migrate())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            database.close()

    # when
    threads = [threading.Thread(target=boot) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then exactly one of them created the schema
    assert errors == []
    assert sorted(results) == [(0, SCHEMA_VERSION)] + [(SCHEMA_VERSION, SCHEMA_VERSION)] * 3
    assert [row.version for row in SchemaVersion.select()] == [SCHEMA_VERSION]


def test_a_version_1_database_is_upgraded_in_place_keeping_its_rows(db: str) -> None:
    # given a database as version 1 left it: no HTTP-channel tables, no delivery.held column
    from dispatcher.storage.models import DisabledTarget, WebhookEndpoint

    database.drop_tables([DisabledTarget, WebhookEndpoint])
    database.execute_sql('DROP INDEX "delivery_held_next_attempt_at"')
    database.execute_sql('ALTER TABLE "delivery" DROP COLUMN "held"')
    SchemaVersion.update(version=1).execute()
    User.create(id="u1", changed_at="2026-05-09 12:00:00")

    # when
    result = migrate()

    # then
    assert result == (1, SCHEMA_VERSION)
    assert "held" in {column.name for column in database.get_columns("delivery")}
    assert DisabledTarget.table_exists() and WebhookEndpoint.table_exists()
    assert User.select().count() == 1


def test_a_version_2_database_gains_the_time_features_in_place(db: str) -> None:
    # given a database as version 2 left it
    from dispatcher.storage.models import JobRun, MatchResult, RankingSnapshot

    database.drop_tables([MatchResult, RankingSnapshot, JobRun])
    database.execute_sql('DROP INDEX "event_cancel_key"')
    for table, column in (
        ("event", "cancel_key"),
        ("preference", "mode"),
        ("user", "digest_time"),
        ("user", "quiet_start"),
        ("user", "quiet_end"),
    ):
        database.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    SchemaVersion.update(version=2).execute()
    # when
    result = migrate()
    # then
    assert result == (2, SCHEMA_VERSION)
    assert {"cancel_key"} <= {c.name for c in database.get_columns("event")}
    assert {"digest_time", "quiet_start", "quiet_end"} <= {c.name for c in database.get_columns("user")}
    assert MatchResult.table_exists() and RankingSnapshot.table_exists() and JobRun.table_exists()


def test_a_start_beside_another_process_holding_the_database_tries_again_then_migrates(sqlite_db: str) -> None:
    # given a database that answers "locked" twice, as SQLite can to a process starting beside another
    import peewee

    from dispatcher.storage.migrate import migrate_when_free

    answers: list[object] = [peewee.OperationalError("database is locked")] * 2 + [(3, SCHEMA_VERSION)]
    waits: list[float] = []

    def run() -> tuple[int, int]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    # when / then
    assert migrate_when_free(run=run, sleep=waits.append) == (3, SCHEMA_VERSION)
    assert waits == [0.1, 0.2]
    with pytest.raises(peewee.OperationalError, match="no such table"):
        migrate_when_free(
            run=lambda: (_ for _ in ()).throw(peewee.OperationalError("no such table: x")), sleep=waits.append
        )


def test_a_version_4_database_gains_publishers_and_loses_future_times_and_stored_secrets(db: str) -> None:
    # given a database as version 4 left it, with a record a forged command dated 2999 and a stored secret
    from dispatcher.storage.models import Event

    database.execute_sql('ALTER TABLE "event" DROP COLUMN "publisher"')
    SchemaVersion.update(version=4).execute()
    User.create(id="u1", changed_at="2999-01-01 00:00:00")
    database.execute_sql(
        'INSERT INTO "event" (source, event_id, type, data, received_at) VALUES '
        "('/x', 'c1', 'tidings.webhook.upsert', '{\"id\": \"p\", \"secret\": \"whsec_abc\"}', "
        "'2026-05-09 12:00:00')"
    )

    # when
    result = migrate()

    # then
    assert result == (4, SCHEMA_VERSION)
    assert "publisher" in {c.name for c in database.get_columns("event")}
    assert User.get_by_id("u1").changed_at.year < 2999
    assert Event.get(Event.event_id == "c1").data == {"id": "p", "secret": "<redacted>"}


def test_a_version_7_database_lets_a_preference_leave_enabled_and_mode_unset_keeping_its_rows(db: str) -> None:
    # given the preference table as version 7 left it: enabled and mode NOT NULL, one row
    import datetime as dt

    import peewee

    from dispatcher.storage.models import Preference

    class OldPreference(peewee.Model):
        user_id = peewee.CharField(max_length=255)
        type = peewee.CharField(max_length=255)
        channel = peewee.CharField(max_length=32)
        enabled = peewee.BooleanField()
        mode = peewee.CharField(max_length=16, default="immediate")
        changed_at = peewee.DateTimeField()

        class Meta:
            database = database
            table_name = "preference"
            indexes = ((("user_id", "type", "channel"), True),)

    database.drop_tables([Preference])
    database.create_tables([OldPreference])
    at = dt.datetime(2026, 5, 9, 12, 0)
    OldPreference.create(user_id="u1", type="*", channel="email", enabled=False, mode="digest", changed_at=at)
    SchemaVersion.update(version=7).execute()
    # when
    result = migrate()
    # then
    assert result == (7, SCHEMA_VERSION)
    assert {c.name: c.null for c in database.get_columns("preference") if c.name in ("enabled", "mode")} == {
        "enabled": True,
        "mode": True,
    }
    [kept] = Preference.select()
    assert (kept.user_id, kept.enabled, kept.mode) == ("u1", False, "digest")
    Preference.create(user_id="u2", type="*", channel="email", enabled=None, mode="digest", changed_at=at)
    with pytest.raises(peewee.IntegrityError), database.atomic():  # the unique key survived
        Preference.create(user_id="u2", type="*", channel="email", enabled=True, mode=None, changed_at=at)


def test_a_version_8_database_gains_series_and_placement_overrides_keeping_its_results(db: str) -> None:
    # given the ledger as version 8 left it: match results without series columns, no override tables
    import datetime as dt

    from dispatcher.storage.models import Event, MatchResult, OverrideEntry, PlacementOverride

    database.drop_tables([OverrideEntry, PlacementOverride])
    database.execute_sql('DROP INDEX "match_result_series_id"')
    for column in ("series_id", "best_of", "forfeit"):
        database.execute_sql(f'ALTER TABLE "match_result" DROP COLUMN "{column}"')
    at = dt.datetime(2026, 5, 9, 12, 0)
    event = Event.create(source="/m", event_id="e1", type="match.completed", data={}, time=at)
    # (fields without a default are left out of an INSERT: this one names only version 8's columns)
    MatchResult.insert(event=event.id, tournament_id="t1", participants=[], completed_at=at).execute()
    SchemaVersion.update(version=8).execute()
    # when
    result = migrate()
    # then
    assert result == (8, SCHEMA_VERSION)
    assert {"series_id", "best_of", "forfeit"} <= {c.name for c in database.get_columns("match_result")}
    assert PlacementOverride.table_exists() and OverrideEntry.table_exists()
    [kept] = MatchResult.select()
    assert (kept.tournament_id, kept.series_id, kept.best_of) == ("t1", None, None)
