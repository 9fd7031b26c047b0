"""Log levels: pika's narration of its connection workflow is quiet unless TIDINGS_LOG_LEVEL is debug."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pika
import pika.exceptions
import pytest
import structlog

from dispatcher.core.logs import configure_logging
from tests.support.services import free_port


@pytest.fixture
def restored() -> Iterator[None]:
    """Put back structlog's configuration and pika's logger level after the test."""
    saved, level = structlog.get_config(), logging.getLogger("pika").level
    yield
    structlog.configure(**saved)
    logging.getLogger("pika").setLevel(level)


def connect_to_a_closed_port() -> None:
    parameters = pika.ConnectionParameters(host="127.0.0.1", port=free_port(), connection_attempts=1, socket_timeout=2)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(parameters)


def pika_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("pika") and r.levelno == level]


@pytest.mark.parametrize("level", ["info", "warning"])
def test_pikas_info_lines_are_hidden_at_the_default_levels_and_its_warnings_kept(
    restored: None, caplog: pytest.LogCaptureFixture, level: str
) -> None:
    # given
    configure_logging("console", level)
    caplog.set_level(logging.DEBUG)  # the root logger and the capturing handler let everything through

    # when a connection attempt fails, which pika narrates step by step
    connect_to_a_closed_port()

    # then
    assert pika_records(caplog, logging.INFO) == []
    assert pika_records(caplog, logging.DEBUG) == []
    assert logging.getLogger("pika.adapters.utils.connection_workflow").isEnabledFor(logging.WARNING)


def test_pikas_info_lines_are_shown_at_debug(restored: None, caplog: pytest.LogCaptureFixture) -> None:
    # given
    configure_logging("console", "debug")
    caplog.set_level(logging.DEBUG)

    # when
    connect_to_a_closed_port()

    # then
    assert pika_records(caplog, logging.INFO), "pika's connection workflow should be visible at debug"


def test_at_error_pikas_warnings_are_hidden_too(restored: None) -> None:
    # when
    configure_logging("json", "error")

    # then
    assert not logging.getLogger("pika").isEnabledFor(logging.WARNING)
    assert logging.getLogger("pika").isEnabledFor(logging.ERROR)
