"""The database handle: opened from TIDINGS_DATABASE_URL, shared by every model."""

from __future__ import annotations

import urllib.parse
from typing import cast

import peewee
from playhouse.db_url import connect

from dispatcher.core.errors import ConfigError

#: Models bind to this proxy; :func:`init_database` points it at a real database.
database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "busy_timeout": 15_000,  # first: the pragmas after it may wait for another process's lock
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
}


def open_database(url: str) -> peewee.Database:
    """A peewee database for ``url``; PostgreSQL URLs get a connection pool."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        url = url.replace(f"{scheme}://", "postgresql+pool://", 1)
    try:
        # cast: playhouse has no type information
        if scheme == "sqlite":
            return cast(peewee.Database, connect(url, pragmas=SQLITE_PRAGMAS, timeout=15))
        return cast(peewee.Database, connect(url, max_connections=64, stale_timeout=300, timeout=10))
    except (ValueError, RuntimeError) as e:
        raise ConfigError(f"TIDINGS_DATABASE_URL cannot be used: {e}") from None


def init_database(url: str) -> peewee.Database:
    """Open ``url`` and bind every model to it."""
    db = open_database(url)
    database.initialize(db)
    return db


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


def transaction() -> peewee._atomic:
    """A write transaction; on SQLite it takes the write lock up front.

    SQLite under threads fails read-then-write transactions with "database is
    locked" unless they begin IMMEDIATE.
    """
    if is_sqlite():
        return database.atomic("IMMEDIATE")
    return database.atomic()
