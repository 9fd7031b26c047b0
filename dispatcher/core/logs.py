"""structlog set-up: console lines for people, JSON lines when TIDINGS_LOG_FORMAT=json.

Every line passes through :func:`redact` last, so that an email address, a webhook
secret or an unsubscribe token that reached a log event (in text an SMTP server
echoed, say) is replaced before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
#: Libraries whose INFO lines narrate their own work (pika: each step of every connection's workflow):
#: shown from WARNING up, unless TIDINGS_LOG_LEVEL is debug.
CHATTY_LIBRARIES = ("pika",)

ADDRESS_PLACEHOLDER = "<address>"
SECRET_PLACEHOLDER = "whsec_<secret>"
TOKEN_PLACEHOLDER = "/unsubscribe/<token>"
#: One pass finds all three. Lengths are bounded (RFC 5321: 64 for a local part, 63 per label)
#: so a long line without a match costs linear time. "*" is left out of local parts so that
#: redact_url's "user:***@host" stays readable.
_SENSITIVE = re.compile(
    r"(?P<address>(?:\"[^\"\r\n]{0,64}\"|[\w.!#$%&'+/=?^`{|}~-]{1,64})"
    r"@(?:\[[^\]\s]{1,64}\]|[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}))"
    r"|(?P<secret>whsec_[A-Za-z0-9+/=]+)"
    r"|(?P<token>/unsubscribe/[\w.=-]+)"
)
_PLACEHOLDERS = {"address": ADDRESS_PLACEHOLDER, "secret": SECRET_PLACEHOLDER, "token": TOKEN_PLACEHOLDER}


def redact_text(text: str) -> str:
    """``text`` with email addresses, webhook secrets and unsubscribe tokens replaced by placeholders."""
    if "@" not in text and "whsec_" not in text and "/unsubscribe/" not in text:
        return text  # nearly every string: skip the regex
    return _SENSITIVE.sub(lambda match: _PLACEHOLDERS[match.lastgroup or "address"], text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if type(value) in (list, tuple, set, frozenset):
        return type(value)(_redact_value(item) for item in value)
    # Anything else (an exception, a datetime) would be rendered with repr(): redact that.
    return redact_text(repr(value))


def redact(logger: Any, method_name: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """structlog processor: redact every string in the event (``event`` and nested values included).

    The last line of defence: callers should not log addresses in the first place. Put it after
    ``format_exc_info``, so a traceback's text is redacted too, and just before the renderer.
    """
    return {key: _redact_value(value) for key, value in event_dict.items()}


def configure_logging(log_format: str = "console", level: str = "info") -> None:
    """Configure structlog for this process, and quiet chatty libraries' loggers; call once, at start."""
    library_level = logging.DEBUG if level == "debug" else max(logging.WARNING, LEVELS[level])
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(library_level)
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
            redact,
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


class RedactRecords(logging.Filter):
    """The stdlib side of :func:`redact`: an actor's exception, as dramatiq logs it, may quote an address.

    Formats the record's message and traceback once, then redacts them with :func:`redact_text`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_text(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def hide_message_payloads() -> None:
    """Install :class:`HideMessagePayloads`, then :class:`RedactRecords`, on dramatiq's loggers that print messages."""
    for name in ("dramatiq.worker.WorkerThread", "dramatiq.worker.ConsumerThread", "dramatiq.worker.Worker"):
        logger = logging.getLogger(name)
        logger.addFilter(HideMessagePayloads())
        logger.addFilter(RedactRecords())


def _stderr_logger(*args: object) -> structlog.WriteLogger:
    # One write per line: dramatiq's own log lines share the stream, and a line written in two
    # pieces (print's text, then its newline) could be split by another thread's line.
    return structlog.WriteLogger(sys.stderr)
