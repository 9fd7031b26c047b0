"""The baseline's database: plain sqlite3 or psycopg2, one connection per (worker) process."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2

SCHEMA = (
    """CREATE TABLE events (
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (source, id)
    )""",
    """CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT,
        name TEXT
    )""",
    # No row for (user, type) means both channels are on.
    """CREATE TABLE preferences (
        user_id TEXT NOT NULL REFERENCES users (id),
        type TEXT NOT NULL,
        in_app BOOLEAN NOT NULL,
        email BOOLEAN NOT NULL,
        PRIMARY KEY (user_id, type)
    )""",
    """CREATE TABLE inbox (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id),
        event_source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        read_at DOUBLE PRECISION
    )""",
    "CREATE INDEX inbox_user_created ON inbox (user_id, created_at)",
)

#: The same pragmas as Tidings' own SQLite connections (dispatcher/storage/db.py).
SQLITE_PRAGMAS = ("PRAGMA busy_timeout = 15000", "PRAGMA journal_mode = wal", "PRAGMA synchronous = normal")


class Database:
    """One connection; ``transaction()`` yields a cursor and commits, or rolls back on an exception.

    SQL is written with ``%s`` placeholders (psycopg2's); for SQLite they become ``?``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite:")
        if self.sqlite:
            # sqlite:///relative.db or sqlite:////absolute/path.db, as SQLAlchemy spells them
            self.connection: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=15)
            for pragma in SQLITE_PRAGMAS:
                self.connection.execute(pragma)
        elif url.startswith(("postgresql:", "postgres:")):
            self.connection = psycopg2.connect(url)
        else:
            raise ValueError(f"unsupported database URL: {url!r} (sqlite:///... or postgresql://...)")

    def sql(self, query: str) -> str:
        return query.replace("%s", "?") if self.sqlite else query

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        cursor = self.connection.cursor()
        if self.sqlite:
            cursor.execute("BEGIN IMMEDIATE")  # take the write lock now: no deadlocked lock upgrade later
        try:
            yield cursor
        except BaseException:
            self.connection.rollback()
            raise
        else:
            self.connection.commit()
        finally:
            cursor.close()

    def close(self) -> None:
        self.connection.close()


_connection: tuple[int, Database] | None = None


def database() -> Database:
    """This process's connection to BENCH_DATABASE_URL, opened on first use (after the prefork fork)."""
    global _connection
    if _connection is None or _connection[0] != os.getpid():
        _connection = (os.getpid(), Database(os.environ["BENCH_DATABASE_URL"]))
    return _connection[1]


def setup_database(url: str, users: list[dict[str, str]]) -> None:
    """Create the schema in an empty database and insert ``users`` (dicts with id, email and name)."""
    db = Database(url)
    try:
        with db.transaction() as cursor:
            for statement in SCHEMA:
                cursor.execute(statement)
            for user in users:
                cursor.execute(
                    db.sql("INSERT INTO users (id, email, name) VALUES (%s, %s, %s)"),
                    (user["id"], user["email"], user["name"]),
                )
    finally:
        db.close()
