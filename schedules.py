"""Periodic actors and their cron specs, run by the stock ``periodiq`` CLI.

    periodiq schedules                        # the scheduler: enqueues these on time (run it with TZ=UTC)
    dramatiq dispatcher.worker schedules      # the worker runs them

Each job only does quick, idempotent work (periodiq skips a message processed
late, retries included), calling functions that live in dispatcher/. Two
schedulers started by mistake enqueue everything twice; each job is safe
against that: release and digests by keys in the rows they change, the daily
jobs by a (job, slot) key.
"""

from __future__ import annotations

import dramatiq
import structlog
from periodiq import cron

from dispatcher.core import clock
from dispatcher.jobs.cleanup import cleanup
from dispatcher.jobs.digests import due_digests, make_digest
from dispatcher.jobs.maintenance import release_due_deliveries, stale_deliveries
from dispatcher.jobs.slots import claim_slot
from dispatcher.rankings.ledger import ANNOUNCE_WINDOW, announce, recompute
from dispatcher.runtime.actors import enqueue_deliveries
from dispatcher.runtime.broker import catalog, settings

log = structlog.get_logger("tidings.schedules")
MAINTENANCE = settings.queue("maintenance")


@dramatiq.actor(periodic=cron("* * * * *"), queue_name=MAINTENANCE, max_retries=0)
def release_held_deliveries() -> None:
    """Every minute: send what waited in the database (schedules, retries, quiet hours) and falls due
    within the next 90 s, each in a message delayed to its exact time."""
    released, due = release_due_deliveries()
    enqueue_deliveries(released, due)
    if released:
        log.info("held_deliveries_released", count=len(released))


@dramatiq.actor(periodic=cron("*/15 * * * *"), queue_name=MAINTENANCE, max_retries=0)
def send_digests() -> None:
    """Every 15 minutes: the digests of the users whose local digest time has come today."""
    for user_id, local_date in due_digests():
        enqueue_deliveries(make_digest(user_id, local_date, catalog, settings))


@dramatiq.actor(periodic=cron("*/5 * * * *"), queue_name=MAINTENANCE, max_retries=0)
def requeue_stale_deliveries() -> None:
    """Every 5 minutes: re-enqueue deliveries whose message was lost.

    Enqueueing a delivery twice is harmless: it is claimed once.
    """
    stale = stale_deliveries(stale_after=settings.stale_after)
    enqueue_deliveries(stale)
    if stale:
        log.warning("stale_deliveries_requeued", count=len(stale))


@dramatiq.actor(periodic=cron("17 3 * * *"), queue_name=MAINTENANCE, max_retries=0)
def clean_up() -> None:
    """Daily at 03:17 UTC: drop what the retention settings no longer keep."""
    if claim_slot("clean_up", clock.now().date().isoformat()):
        counts = cleanup(retention_days=settings.retention_days, dedup_days=settings.dedup_days)
        log.info("cleanup_done", **counts)


@dramatiq.actor(periodic=cron("7 4 * * *"), queue_name=MAINTENANCE, max_retries=0)
def rankings_tick() -> None:
    """Daily at 04:07 UTC: have the rankings recomputed (once, however many schedulers)."""
    if claim_slot("rankings", clock.now().date().isoformat()):
        recompute_rankings.send()


@dramatiq.actor(queue_name=MAINTENANCE, max_retries=5)
def recompute_rankings() -> None:
    """Recompute the standings; announce the rank changes of the last two days (each once, by id)."""
    changes = recompute()
    announced = announce(settings, since=clock.now() - ANNOUNCE_WINDOW)
    log.info("rankings_recomputed", changes=len(changes), announced=announced)
