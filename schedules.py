"""The periodic jobs' entry point, run by the stock ``periodiq`` CLI (their code: dispatcher/runtime/periodic.py).

    periodiq schedules                        # the scheduler: enqueues these on time (run it with TZ=UTC)
    dramatiq dispatcher.worker schedules      # the worker runs them

Importing it builds what dispatcher.worker builds (once per process), then declares the periodic actors.
"""

from __future__ import annotations

from dispatcher.runtime.periodic import declare_periodic_jobs
from dispatcher.worker import actors, broker, catalog, settings

jobs = declare_periodic_jobs(broker, settings, catalog, actors)
release_held_deliveries = jobs.release_held_deliveries
send_digests = jobs.send_digests
requeue_stale_deliveries = jobs.requeue_stale_deliveries
clean_up = jobs.clean_up
rankings_tick = jobs.rankings_tick
recompute_rankings = jobs.recompute_rankings
