"""Reaching the real services: skip locally when one is down, fail in CI."""

from __future__ import annotations

import os
import socket

import pytest

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
#: The same RabbitMQ's management API (.ci/run enables the plugin); guest/guest come from RABBITMQ_URL.
RABBITMQ_API_URL = os.environ.get("TEST_RABBITMQ_API_URL", "http://127.0.0.1:15672")
POSTGRES_ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(name: str, host: str, port: int) -> None:
    """Skip the test when the service is down, unless running in CI, where that is a failure."""
    if not reachable(host, port):
        absent(f"{name} is not reachable at {host}:{port}", ci="CI must have it running")


def absent(message: str, *, ci: str) -> None:
    """What a test does without something it needs: skip locally, fail in CI (``ci`` says what CI owes it)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} ({ci})", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
