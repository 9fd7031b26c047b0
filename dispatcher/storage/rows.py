"""Multi-row inserts for the ingest path, without building peewee's query tree for each one.

peewee composes every statement from expression nodes, which costs more than running it when a worker
ingests hundreds of events a second (bench/README.md has the profile). :func:`insert_rows` writes the
same INSERT as ``Model.insert_many(rows).returning(...)`` would, from a cached text per shape (table,
columns, row count, RETURNING), with each value converted by its field's ``db_value`` as peewee does.
It speaks the SQL SQLite (3.35 and later) and PostgreSQL share: ``ON CONFLICT DO NOTHING`` and
``RETURNING``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import peewee

from dispatcher.storage.db import database


def insert_rows(
    model: type[peewee.Model],
    rows: Sequence[Mapping[str, Any]],
    *,
    returning: Sequence[str] = (),
    ignore_conflicts: bool = False,
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (field name -> value; every row the same fields) in one statement.

    Returns the ``returning`` fields of each inserted row (a row ignored on a conflict returns nothing),
    converted back as peewee would. A field a row leaves out gets nothing from Python: give every
    field that has a Python-side default.
    """
    if not rows:
        return []
    names = tuple(rows[0])
    fields = [model._meta.fields[name] for name in names]
    sql = _statement(model, names, len(rows), tuple(returning), ignore_conflicts, database.param)
    params = [field.db_value(row[name]) for row in rows for name, field in zip(names, fields, strict=True)]
    cursor = database.execute_sql(sql, params)
    if not returning:
        return []
    back = [model._meta.fields[name] for name in returning]
    return [tuple(f.python_value(v) for f, v in zip(back, row, strict=True)) for row in cursor.fetchall()]


@functools.lru_cache(maxsize=256)
def _statement(
    model: type[peewee.Model],
    names: tuple[str, ...],
    count: int,
    returning: tuple[str, ...],
    ignore_conflicts: bool,
    param: str,
) -> str:
    meta = model._meta
    columns = ", ".join(_quoted(meta.fields[name].column_name) for name in names)
    values = "(" + ", ".join([param] * len(names)) + ")"
    sql = f"INSERT INTO {_quoted(meta.table_name)} ({columns}) VALUES {', '.join([values] * count)}"
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning:
        sql += " RETURNING " + ", ".join(_quoted(meta.fields[name].column_name) for name in returning)
    return sql


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
