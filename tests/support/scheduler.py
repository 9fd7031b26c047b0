"""The scheduler's jobs, and the passing of time they wait for, for tests with real worker processes.

A worker process reads the real clock, so a test cannot move its time; instead time passes for the
stored rows: every pending delivery's due time moves back by that much.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

from dispatcher.core.settings import PROJECT_ROOT
from dispatcher.storage.db import transaction
from dispatcher.storage.models import Delivery, DeliveryStatus

from .deployment import Deployment


def time_passes(seconds: float) -> None:
    """As if ``seconds`` had passed for the pending deliveries (call deployment.use_database() first)."""
    with transaction():  # one write transaction from the start: SQLite refuses to upgrade a read one under load
        pending = list(Delivery.select().where(Delivery.status == DeliveryStatus.PENDING))
        for delivery in pending:
            Delivery.update(next_attempt_at=delivery.next_attempt_at - dt.timedelta(seconds=seconds)).where(
                Delivery.id == delivery.id
            ).execute()


def run_schedules(deployment: Deployment, call: str) -> None:
    """Run ``schedules.<call>`` in a process of its own with the deployment's environment, as the scheduler does:
    ``run_schedules(deployment, "recompute_rankings()")``."""
    subprocess.run(
        [sys.executable, "-c", f"import schedules; schedules.{call}"],
        cwd=PROJECT_ROOT,
        env=deployment.env,
        check=True,
        timeout=60,
    )


def run_release_job(deployment: Deployment) -> None:
    """What the scheduler runs every minute: release the held deliveries due within its window."""
    run_schedules(deployment, "release_held_deliveries()")
