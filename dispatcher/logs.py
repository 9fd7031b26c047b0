"""structlog set-up: console lines for people, JSON lines when TIDINGS_LOG_FORMAT=json."""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(log_format: str = "console", level: str = "info") -> None:
    """Configure structlog for this process; call once, at start."""
    renderer: structlog.typing.Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=_stderr_logger,
        # Not cached: each line goes to the sys.stderr of the moment (tests swap it).
        cache_logger_on_first_use=False,
    )


class HideMessagePayloads(logging.Filter):
    """dramatiq logs a failed message with its arguments; an event's data may hold personal data.

    Replaces each message in a record's arguments by its actor and id.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_describe(arg) for arg in record.args)
        return True


def _describe(arg: object) -> object:
    message = getattr(arg, "_message", arg)  # dramatiq's MessageProxy wraps a Message
    if hasattr(message, "actor_name") and hasattr(message, "message_id"):
        return f"{message.actor_name}(message_id={message.message_id})"
    return arg


def hide_message_payloads() -> None:
    """Install :class:`HideMessagePayloads` on the dramatiq loggers that print messages."""
    for name in ("dramatiq.worker.WorkerThread", "dramatiq.worker.ConsumerThread", "dramatiq.worker.Worker"):
        logging.getLogger(name).addFilter(HideMessagePayloads())


def _stderr_logger(*args: object) -> structlog.WriteLogger:
    # One write per line: dramatiq's own log lines share the stream, and a line written in two
    # pieces (print's text, then its newline) could be split by another thread's line.
    return structlog.WriteLogger(sys.stderr)
