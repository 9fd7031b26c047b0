"""Start-up checks of the services a worker process delivers through: said once, as a warning, never a stop.

Without them, an SMTP server that is not there shows only as one retry warning per delivery. A process
checks only the channels whose queues it consumes (the Procfile's ``sender`` group serves email), so it
runs at worker boot, when dramatiq knows the process's ``--queues``.
"""

from __future__ import annotations

from collections.abc import Collection

import structlog
from dramatiq import Broker, Middleware, Worker

from channels import channel_classes
from dispatcher.core.settings import Settings

#: Seconds a check may wait for a service (TIDINGS_SMTP_TIMEOUT when shorter): it delays the start.
CHECK_TIMEOUT = 3.0

log = structlog.get_logger("tidings")


def check_channels(settings: Settings, queues: Collection[str] | None, *, timeout: float = CHECK_TIMEOUT) -> list[str]:
    """Log a ``channel_unreachable`` warning for each channel served here whose service cannot be reached;
    return those channels' names. ``queues``: the queues this process consumes (None: every queue)."""
    unreachable = []
    for name, cls in channel_classes().items():
        if queues is not None and settings.queue(name) not in queues:
            continue
        reason = cls.unreachable(settings, timeout=timeout)
        if reason is not None:
            unreachable.append(name)
            log.warning(
                "channel_unreachable",
                channel=name,
                reason=reason,
                consequence="this process starts anyway; its deliveries are retried until the service answers",
            )
    return unreachable


class ChannelCheckMiddleware(Middleware):
    """Runs :func:`check_channels` once, when the worker of this process has started."""

    def __init__(self, settings: Settings, *, timeout: float = CHECK_TIMEOUT) -> None:
        self.settings = settings
        self.timeout = timeout

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        check_channels(self.settings, worker.consumer_whitelist or None, timeout=self.timeout)
