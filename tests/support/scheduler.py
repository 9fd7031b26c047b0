"""The scheduler's release job, and the passing of time it waits for, for tests with real worker processes.

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


def run_release_job(deployment: Deployment) -> None:
    """What the scheduler runs every minute: release the held deliveries due within its window."""
    subprocess.run(
        [sys.executable, "-c", "import schedules; schedules.release_held_deliveries()"],
        cwd=PROJECT_ROOT,
        env=deployment.env,
        check=True,
        timeout=60,
    )
