"""A worker group's metrics port: dramatiq's Prometheus middleware, when the group's line asks for it.

dramatiq's middleware keeps every worker process's values in files in one directory (``dramatiq_prom_db``)
and serves their sum from a process forked by the group's main process on ``dramatiq_prom_port``
(``dramatiq_prom_host``). Tidings' own counters (dispatcher/core/metrics.py) go into the same files, so the
group's port serves both. The Procfile gives each group its own port and directory (docs/metrics.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import dramatiq
from dramatiq.middleware.prometheus import Prometheus

#: Set on a group's line (the Procfile's): without it a dramatiq process binds no port.
PORT_VARIABLE = "dramatiq_prom_port"
_PID = re.compile(r"_(\d+)\.db$")


class GroupMetrics(Prometheus):
    """dramatiq's Prometheus middleware, which also forgets the live gauges of processes that died.

    A SIGKILLed worker never marks itself dead: its in-progress gauge would count forever.
    """

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        super().after_process_boot(broker)  # type: ignore[no-untyped-call]  # unannotated in dramatiq
        from prometheus_client import multiprocess

        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        for pid in {int(m.group(1)) for path in Path(directory).glob("*.db") if (m := _PID.search(path.name))}:
            if not _alive(pid):
                multiprocess.mark_process_dead(pid, directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def add_group_metrics(broker: dramatiq.Broker, environ: Mapping[str, str] = os.environ) -> bool:
    """Add GroupMetrics to ``broker`` when the process's line sets dramatiq_prom_port; True if added."""
    if PORT_VARIABLE not in environ:
        return False
    broker.add_middleware(GroupMetrics())
    return True
