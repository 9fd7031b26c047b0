"""The embedded mode's scheduler: at each minute, send the periodic actors whose cron spec matches it.

The periodiq CLI does this in production from a process of its own (it waits with SIGALRM, which only a
main thread may use); here a thread does the same, in UTC, with the ``scheduled_at`` option periodiq's
middleware reads, so a job that waited too long is skipped as it would be there.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence

import dramatiq
import structlog

log = structlog.get_logger("tidings.ticker")


def due_actors(actors: Sequence[dramatiq.Actor], minute: dt.datetime) -> list[dramatiq.Actor]:
    """The periodic actors whose cron spec matches ``minute`` (UTC)."""
    return [actor for actor in actors if actor.options["periodic"].validate(minute)]


def next_minute(now: dt.datetime) -> dt.datetime:
    """The start of the minute after ``now``."""
    return now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


class Ticker:
    """A daemon thread sending ``actors`` (each declared with ``periodic=cron(...)``) on time."""

    def __init__(
        self,
        actors: Sequence[dramatiq.Actor],
        *,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.actors = list(actors)
        self.now = now
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tidings-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def tick(self, minute: dt.datetime) -> list[str]:
        """Send the actors due at ``minute``; their names."""
        sent = []
        for actor in due_actors(self.actors, minute):
            actor.send_with_options(scheduled_at=minute.isoformat())
            sent.append(actor.actor_name)
        return sent

    def _run(self) -> None:
        while True:
            minute = next_minute(self.now())
            if self._stopping.wait(max(0.0, (minute - self.now()).total_seconds())):
                return
            try:
                sent = self.tick(minute)
            except Exception:  # a broker error must not stop the clock
                log.exception("periodic_jobs_not_sent", minute=minute.isoformat())
                continue
            if sent:
                log.debug("periodic_jobs_sent", minute=minute.isoformat(), jobs=sent)
