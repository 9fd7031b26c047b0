"""schemathesis against the live /openapi.json: every operation, no 5xx, every response as its schema says.

Run with the stock schemathesis CLI against the real web process: once with a user token (the /v1/me
operations), once with an API key of every scope (the rest). The SSE stream is left out: it never ends.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.api.auth import mint_user_token
from dispatcher.core import api_keys
from dispatcher.core.settings import PROJECT_ROOT
from tests.support.deployment import USER_TOKEN_SECRET, Deployment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "schemathesis-key-0123456789abcdefghijklmnop"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
STREAM = r"/v1/me/notifications/stream$"


def schemathesis(url: str, token: str, *filters: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        "15",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--seed",
        "20261202",
        "--exclude-path-regex",
        STREAM,
        "--no-color",
        *filters,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.fixture
def web_url(deployment: Deployment) -> Iterator[str]:
    keys = f"fuzz:{'+'.join(api_keys.SCOPES)}:{API_KEY}"
    with deployment.web(TIDINGS_API_KEYS=keys, TIDINGS_HTTP_RATE_LIMIT="1000000").start() as web:
        yield web.url


def operations(user: bool) -> int:
    """How many operations of docs/openapi.json one run must test: the /v1/me ones or the rest, less the stream."""
    document = json.loads((PROJECT_ROOT / "docs" / "openapi.json").read_text())
    return sum(
        len(methods)
        for path, methods in document["paths"].items()
        if path.startswith("/v1/me/") == user and not re.search(STREAM, path)
    )


def assert_every_operation_passed(result: subprocess.CompletedProcess[str], expected: int) -> None:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested is not None and int(tested.group(1)) == expected, result.stdout[-3000:]


def test_the_user_operations_answer_as_the_document_says(web_url: str) -> None:
    token = mint_user_token(USER_TOKEN_SECRET, "fuzzed-user", ttl=3600)
    result = schemathesis(web_url, token, "--include-path-regex", r"^/v1/me/")
    assert_every_operation_passed(result, operations(user=True))


def test_the_service_and_public_operations_answer_as_the_document_says(web_url: str) -> None:
    result = schemathesis(web_url, API_KEY, "--exclude-path-regex", r"^/v1/me/")
    assert_every_operation_passed(result, operations(user=False))
