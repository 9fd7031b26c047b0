"""When a delivery is due: scheduled times, the horizon, quiet hours and digest times.

Pure functions of an instant, a user's IANA time zone and "HH:MM" settings;
daylight-saving changes are handled by zoneinfo (a local time that does not
exist is taken after the gap, one that occurs twice at its first occurrence).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from dispatcher.core import clock
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import CloudEvent

UTC = dt.UTC
#: A delivery due later than this waits in the database (``held``) for the release job, not in a
#: delayed message: RabbitMQ requeues messages a worker holds unacknowledged past its consumer timeout.
MAX_MESSAGE_DELAY = 60.0
#: The release job runs every minute and sends what falls due within this window, each with its
#: exact remaining delay: longer than the job's period, so nothing is released late.
RELEASE_WINDOW = 90.0


def parse_hhmm(value: str) -> dt.time:
    """A local time of day written "HH:MM"; ValueError otherwise."""
    hours, sep, minutes = value.partition(":")
    if not sep or len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError(f"{value!r} is not a time written HH:MM")
    return dt.time(int(hours), int(minutes))


def check_time(event: CloudEvent, max_skew: float) -> None:
    """Reject an event dated further ahead than ``max_skew`` seconds (TIDINGS_MAX_CLOCK_SKEW).

    A control command's time decides which of two commands wins: one dated in the
    future would make every later correction look stale.
    """
    if event.time is None:
        return
    limit = clock.now().replace(tzinfo=UTC) + dt.timedelta(seconds=max_skew)
    if event.time > limit:
        raise InvalidEvent(
            f"time {event.time.isoformat()} is more than {max_skew:g} s ahead of Tidings' clock "
            "(TIDINGS_MAX_CLOCK_SKEW): fix the producer's clock"
        )


def check_schedule(event: CloudEvent, horizon: float) -> None:
    """Reject a deliver_at further ahead than ``horizon`` seconds."""
    deliver_at = event.deliver_at
    if deliver_at is None:
        return
    limit = clock.now().replace(tzinfo=UTC) + dt.timedelta(seconds=horizon)
    if deliver_at > limit:
        days = horizon / 86400
        raise InvalidEvent(
            f"data.deliver_at {event.data['deliver_at']} is more than {days:g} days ahead (TIDINGS_SCHEDULE_HORIZON)"
        )


def due_time(event: CloudEvent) -> dt.datetime:
    """When the event's deliveries are due (naive UTC): its deliver_at, or now if absent or past."""
    now = clock.now()
    deliver_at = event.deliver_at
    return max(now, clock.to_utc_naive(deliver_at)) if deliver_at else now


def _local(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    return moment.replace(tzinfo=UTC).astimezone(zone)


def _utc(local_date: dt.date, time_of_day: dt.time, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """A local wall-clock time as naive UTC; in a DST gap, the instant just after it."""
    local = dt.datetime.combine(local_date, time_of_day, tzinfo=zone)
    round_trip = local.astimezone(UTC).astimezone(zone)
    if round_trip.replace(tzinfo=None) != local.replace(tzinfo=None):  # it did not exist (spring forward)
        local = local.replace(fold=1)
    return local.astimezone(UTC).replace(tzinfo=None)


def quiet_until(moment: dt.datetime, timezone: str, start: str | None, end: str | None) -> dt.datetime | None:
    """If naive-UTC ``moment`` falls in the user's quiet hours, when they end (naive UTC); else None.

    A window whose start is after its end spans midnight (22:00 to 07:00).
    """
    if not start or not end or start == end:
        return None
    zone = zoneinfo.ZoneInfo(timezone)
    local = _local(moment, zone)
    start_t, end_t, now_t = parse_hhmm(start), parse_hhmm(end), local.time().replace(second=0, microsecond=0)
    if start_t < end_t:
        inside = start_t <= now_t < end_t
        end_date = local.date()
    else:
        inside = now_t >= start_t or now_t < end_t
        end_date = local.date() + dt.timedelta(days=1) if now_t >= start_t else local.date()
    return _utc(end_date, end_t, zone) if inside else None


def digest_slot(now: dt.datetime, timezone: str, digest_time: str) -> dt.date | None:
    """The local date whose digest is due at naive-UTC ``now``, or None before the user's digest time."""
    zone = zoneinfo.ZoneInfo(timezone)
    local = _local(now, zone)
    due = _utc(local.date(), parse_hhmm(digest_time), zone)
    return local.date() if now >= due else None
