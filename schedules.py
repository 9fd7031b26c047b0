"""Periodic actors and their cron specs, run by the stock ``periodiq`` CLI.

    periodiq schedules        # the scheduler: enqueues these on time
    dramatiq dispatcher.worker schedules   # the worker runs them

Each job only does quick, idempotent work (periodiq skips a message processed
late, retries included), calling functions that live in dispatcher/.
"""

from __future__ import annotations

import dramatiq
import structlog
from periodiq import cron

from dispatcher.actors import enqueue_deliveries
from dispatcher.broker import settings
from dispatcher.maintenance import release_due_deliveries, stale_deliveries

log = structlog.get_logger("tidings.schedules")


@dramatiq.actor(periodic=cron("*/5 * * * *"), queue_name=settings.queue("maintenance"), max_retries=0)
def requeue_stale_deliveries() -> None:
    """Every 5 minutes: re-enqueue deliveries whose message was lost.

    Enqueueing a delivery twice is harmless: it is claimed once.
    """
    stale = stale_deliveries(stale_after=settings.stale_after)
    enqueue_deliveries(stale)
    if stale:
        log.warning("stale_deliveries_requeued", count=len(stale))


@dramatiq.actor(periodic=cron("* * * * *"), queue_name=settings.queue("maintenance"), max_retries=0)
def release_held_deliveries() -> None:
    """Every minute: send what waited in the database (schedules, retries, quiet hours) and falls due
    within the next 90 s, each in a message delayed to its exact time."""
    released, due = release_due_deliveries()
    enqueue_deliveries(released, due)
    if released:
        log.info("held_deliveries_released", count=len(released))
