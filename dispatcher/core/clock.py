"""Time, behind one seam so that tests move it instead of sleeping.

The database stores naive UTC datetimes; :func:`now` returns one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator

Clock = Callable[[], dt.datetime]


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


_clock: Clock = system_clock


def now() -> dt.datetime:
    """The current time as a naive UTC datetime."""
    return _clock()


def to_utc_naive(value: dt.datetime) -> dt.datetime:
    """An aware datetime as the naive UTC form the database stores."""
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[None]:
    """Replace the clock for the duration of a ``with`` block."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield
    finally:
        _clock = previous
