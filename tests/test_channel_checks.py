"""The start-up check of the SMTP server: one warning at worker boot when it cannot be reached, never a stop."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator

import pytest
import structlog
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from channels.email import SmtpChannel
from dispatcher.core.settings import Settings
from dispatcher.runtime.checks import ChannelCheckMiddleware, check_channels
from tests.support.deployment import Deployment
from tests.support.services import free_port
from tests.support.smtp import SmtpServer


def closed_port_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, smtp_url=f"smtp://127.0.0.1:{free_port()}")


def warnings(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [line for line in logs if line["event"] == "channel_unreachable"]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (an SMTP server that hangs)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def boot_worker(broker: StubBroker, settings: Settings, queues: set[str] | None) -> list[dict[str, object]]:
    """Start a worker on ``queues`` with the check, as dispatcher/worker.py adds it; the lines it logged."""
    broker.add_middleware(ChannelCheckMiddleware(settings, timeout=2.0))
    worker = Worker(broker, queues=queues, worker_timeout=100, worker_threads=1)
    with structlog.testing.capture_logs() as logs:
        worker.start()
    worker.stop()
    return logs


def test_a_worker_serving_the_email_queue_warns_once_when_nothing_listens_on_the_smtp_port(
    stub_broker: StubBroker, stub_settings: Settings
) -> None:
    # given
    settings = closed_port_settings(stub_settings)
    # when
    logs = boot_worker(stub_broker, settings, {settings.queue("email"), settings.queue("in_app")})
    # then
    [warning] = warnings(logs)
    assert warning["log_level"] == "warning" and warning["channel"] == "email"
    assert "cannot be reached" in str(warning["reason"]) and "ConnectionRefusedError" in str(warning["reason"])
    assert f"127.0.0.1:{settings.smtp_url.rsplit(':', 1)[1]}" in str(warning["reason"])


def test_a_worker_serving_every_queue_checks_the_smtp_server_too(
    stub_broker: StubBroker, stub_settings: Settings
) -> None:
    logs = boot_worker(stub_broker, closed_port_settings(stub_settings), None)
    assert [w["channel"] for w in warnings(logs)] == ["email"]


def test_a_worker_that_does_not_serve_the_email_queue_does_not_check_the_smtp_server(
    stub_broker: StubBroker, stub_settings: Settings
) -> None:
    settings = closed_port_settings(stub_settings)
    logs = boot_worker(stub_broker, settings, {settings.queue("ingest"), settings.queue("discord")})
    assert warnings(logs) == []


def test_a_reachable_smtp_server_gives_no_warning(stub_settings: Settings, smtp_server: SmtpServer) -> None:
    # given
    settings = dataclasses.replace(stub_settings, smtp_url=f"smtp://127.0.0.1:{smtp_server.port}")
    # when
    with structlog.testing.capture_logs() as logs:
        unreachable = check_channels(settings, None)
    # then
    assert unreachable == [] and warnings(logs) == []
    assert smtp_server.messages == []  # it only greeted and quit


def test_a_server_that_never_answers_is_given_up_on_within_the_timeout(silent_port: int) -> None:
    # given
    settings = Settings(smtp_url=f"smtp://127.0.0.1:{silent_port}", smtp_timeout=30.0)
    # when
    started = time.monotonic()
    reason = SmtpChannel.unreachable(settings, timeout=0.5)
    # then
    assert reason is not None and "timed out" in reason
    assert time.monotonic() - started < 5


def test_the_reason_never_shows_the_smtp_password(stub_settings: Settings) -> None:
    settings = dataclasses.replace(stub_settings, smtp_url=f"smtp://mailer:s3cret@127.0.0.1:{free_port()}")
    reason = SmtpChannel.unreachable(settings, timeout=1.0)
    assert reason is not None and "s3cret" not in reason and "mailer:***@127.0.0.1" in reason


@pytest.mark.integration
def test_the_worker_starts_with_no_smtp_server_and_says_so_once(deployment: Deployment) -> None:
    # given nothing listening where TIDINGS_SMTP_URL points
    deployment.configure(TIDINGS_SMTP_URL=f"smtp://127.0.0.1:{free_port()}", TIDINGS_LOG_FORMAT="json")
    # when the real worker (every queue, the email one included) starts
    worker = deployment.worker(processes=1, threads=1).start(timeout=60)
    # then it is up, and it said so once, at start
    log = worker.log()
    assert "Worker process is ready for action" in log
    assert log.count('"event": "channel_unreachable"') == 1
    assert "cannot start" not in log


@pytest.mark.integration
def test_the_worker_with_its_smtp_server_up_says_nothing_about_it(deployment: Deployment) -> None:
    deployment.configure(TIDINGS_LOG_FORMAT="json")
    worker = deployment.worker(processes=1, threads=1).start(timeout=60)
    assert "channel_unreachable" not in worker.log()
