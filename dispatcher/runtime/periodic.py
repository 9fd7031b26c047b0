"""The periodic actors and their cron specs, declared by a function (schedules.py is their entry point).

Each job only does quick, idempotent work (periodiq skips a message processed
late, retries included), calling functions that live in dispatcher/jobs and
dispatcher/rankings. Two schedulers started by mistake enqueue everything twice;
each job is safe against that: release and digests by keys in the rows they
change, the daily jobs by a (job, slot) key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import dramatiq
import structlog
from periodiq import cron

from dispatcher.core import clock
from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import Settings
from dispatcher.jobs.cleanup import cleanup
from dispatcher.jobs.digests import due_digests, make_digest
from dispatcher.jobs.maintenance import release_due_deliveries, stale_deliveries
from dispatcher.jobs.slots import claim_slot
from dispatcher.rankings.ledger import recompute
from dispatcher.rankings.notices import ANNOUNCE_WINDOW, announce
from dispatcher.runtime.actors import Actors

log = structlog.get_logger("tidings.schedules")

#: Each periodic job's cron spec (UTC); `tidings status` reads it to tell a job that is overdue.
SCHEDULE: dict[str, str] = {
    "release_held_deliveries": "* * * * *",
    "send_digests": "*/15 * * * *",
    "requeue_stale_deliveries": "*/5 * * * *",
    "clean_up": "17 3 * * *",
    "rankings_tick": "7 4 * * *",
}


@dataclasses.dataclass(frozen=True)
class PeriodicJobs:
    """The actors schedules.py exposes; each can also be called directly (tests, `python -c`)."""

    release_held_deliveries: dramatiq.Actor
    send_digests: dramatiq.Actor
    requeue_stale_deliveries: dramatiq.Actor
    clean_up: dramatiq.Actor
    rankings_tick: dramatiq.Actor
    recompute_rankings: dramatiq.Actor


def declare_periodic_jobs(
    broker: dramatiq.Broker, settings: Settings, catalog: Catalog, actors: Actors
) -> PeriodicJobs:
    """Declare the periodic actors on ``broker``, on the <namespace>.maintenance queue."""
    queue = settings.queue("maintenance")

    def periodic(spec: str) -> dict[str, Any]:
        return {"periodic": cron(spec), "queue_name": queue, "max_retries": 0, "broker": broker}

    @dramatiq.actor(**periodic(SCHEDULE["release_held_deliveries"]))
    def release_held_deliveries() -> None:
        """Every minute: send what waited in the database (schedules, retries, quiet hours) and falls due
        within the next 90 s, each in a message delayed to its exact time."""
        released, due = release_due_deliveries()
        actors.enqueue_deliveries(released, due)
        if released:
            log.info("held_deliveries_released", count=len(released))

    @dramatiq.actor(**periodic(SCHEDULE["send_digests"]))
    def send_digests() -> None:
        """Every 15 minutes: the digests of the users whose local digest time has come today."""
        for user_id, local_date in due_digests():
            actors.enqueue_deliveries(make_digest(user_id, local_date, catalog, settings))

    @dramatiq.actor(**periodic(SCHEDULE["requeue_stale_deliveries"]))
    def requeue_stale_deliveries() -> None:
        """Every 5 minutes: re-enqueue deliveries whose message was lost.

        Enqueueing a delivery twice is harmless: it is claimed once.
        """
        stale = stale_deliveries(stale_after=settings.stale_after)
        actors.enqueue_deliveries(stale)
        if stale:
            log.warning("stale_deliveries_requeued", count=len(stale))

    @dramatiq.actor(**periodic(SCHEDULE["clean_up"]))
    def clean_up() -> None:
        """Daily at 03:17 UTC: drop what the retention settings no longer keep."""
        if claim_slot("clean_up", clock.now().date().isoformat()):
            counts = cleanup(retention_days=settings.retention_days, dedup_days=settings.dedup_days)
            log.info("cleanup_done", **counts)

    @dramatiq.actor(**periodic(SCHEDULE["rankings_tick"]))
    def rankings_tick() -> None:
        """Daily at 04:07 UTC: have the rankings recomputed (once, however many schedulers)."""
        if claim_slot("rankings", clock.now().date().isoformat()):
            recompute_rankings.send()

    @dramatiq.actor(queue_name=queue, max_retries=5, broker=broker)
    def recompute_rankings() -> None:
        """Recompute the standings; announce the rank changes of the last two days (each once, by id)."""
        changes = recompute()
        announced = announce(settings, since=clock.now() - ANNOUNCE_WINDOW)
        log.info("rankings_recomputed", changes=len(changes), announced=announced)

    return PeriodicJobs(
        release_held_deliveries=release_held_deliveries,
        send_digests=send_digests,
        requeue_stale_deliveries=requeue_stale_deliveries,
        clean_up=clean_up,
        rankings_tick=rankings_tick,
        recompute_rankings=recompute_rankings,
    )
