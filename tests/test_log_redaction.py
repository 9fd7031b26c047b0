"""Log redaction: no email address, webhook secret or unsubscribe token reaches a written log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from dispatcher.core.logs import RedactRecords, configure_logging, redact, redact_text

ADDRESS = "mallory@evil.test"


@pytest.fixture
def configured() -> Iterator[None]:
    """Restore the process's structlog configuration after a test that calls configure_logging."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_the_processor_redacts_addresses_in_the_event_and_in_nested_values() -> None:
    # given
    event = {
        "event": f"refused {ADDRESS}",
        "error": f"550 5.1.1 <{ADDRESS}>: unknown",
        "nested": {"to": [ADDRESS, ("Mallory", f"{ADDRESS.upper()}")], "count": 2},
        "quoted": '"mallory evil"@evil.test',
        "attempts": 3,
        "permanent": True,
        "missing": None,
    }

    # when
    redacted = redact(None, "warning", event)

    # then
    assert ADDRESS not in repr(redacted).lower() and "mallory evil" not in repr(redacted)
    assert redacted["event"] == "refused <address>"
    assert redacted["error"] == "550 5.1.1 <<address>>: unknown"
    assert redacted["nested"] == {"to": ["<address>", ("Mallory", "<address>")], "count": 2}
    assert (redacted["attempts"], redacted["permanent"], redacted["missing"]) == (3, True, None)


def test_the_processor_redacts_objects_as_they_would_be_rendered() -> None:
    # given: the renderers would print an exception value with repr()
    event = {"event": "delivery_error", "error": ValueError(f"bad address {ADDRESS}")}

    # when
    redacted = redact(None, "error", event)

    # then
    assert redacted["error"] == "ValueError('bad address <address>')"


def test_webhook_secrets_and_unsubscribe_tokens_are_redacted_too() -> None:
    # given
    text = "secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw= link https://n.example/unsubscribe/eyJhIjoxfQ.c2ln-_x"

    # when / then
    assert redact_text(text) == "secret whsec_<secret> link https://n.example/unsubscribe/<token>"


@pytest.mark.parametrize("text", ["delivery_sent", "amqp://guest:***@rabbit.internal:5672", "5 @ 3", "@here"])
def test_text_without_an_address_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_written_line_holds_no_address_in_either_format(
    configured: None, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    # given
    configure_logging(log_format, "info")
    log = structlog.get_logger("tidings.test")

    # when
    log.warning(
        f"delivery_failed for {ADDRESS}", error=f"550 <{ADDRESS}> unknown", details={"to": [ADDRESS]}, delivery_id=7
    )

    # then
    written = capsys.readouterr().err
    assert "delivery_failed" in written and "delivery_id" in written
    assert ADDRESS not in written and "<address>" in written
    if log_format == "json":
        line = json.loads(written)
        assert line["event"] == "delivery_failed for <address>"
        assert line["error"] == "550 <<address>> unknown"
        assert line["details"] == {"to": ["<address>"]}


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_logged_traceback_holds_no_address(
    configured: None, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    # given
    configure_logging(log_format, "info")
    log = structlog.get_logger("tidings.test")

    # when
    try:
        raise ValueError(f"cannot send to {ADDRESS}")
    except ValueError:
        log.exception("delivery_error", delivery_id=7)

    # then
    written = capsys.readouterr().err
    assert "ValueError: cannot send to <address>" in written.replace("\\n", "\n")
    assert ADDRESS not in written


def test_stdlib_records_as_dramatiq_logs_them_hold_no_address() -> None:
    # given a logger like dramatiq's worker loggers, with the filter hide_message_payloads installs
    stream = io.StringIO()
    logger = logging.getLogger("tests.log_redaction")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.addFilter(RedactRecords())
    logger.propagate = False
    try:
        # when
        try:
            raise RuntimeError(f"DETAIL: Key (email)=({ADDRESS}) already exists")
        except RuntimeError:
            logger.exception("Failed to process message %s for %s", "deliver(message_id=m-1)", ADDRESS)
    finally:
        logger.removeHandler(handler)

    # then
    written = stream.getvalue()
    assert "Failed to process message deliver(message_id=m-1) for <address>" in written
    assert "RuntimeError: DETAIL: Key (email)=(<address>) already exists" in written
    assert ADDRESS not in written
