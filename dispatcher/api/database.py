"""A database connection around each piece of a handler's work.

peewee keeps one connection per thread, and FastAPI runs a sync handler in a worker thread of its
own choosing, so a handler opens its connection where it works (``with session():``) and gives
it back when done: a pooled PostgreSQL connection returns to the pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dispatcher.storage.db import database


@contextlib.contextmanager
def session() -> Iterator[None]:
    """A connection for the ``with`` block, and one transaction: all of the block applies, or none."""
    with database.connection_context(), database.atomic():
        yield
