"""Starting processes: a bad setting stops them at once with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher.core.settings import PROJECT_ROOT
from tests.support.deployment import Deployment


def run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dramatiq", "dispatcher.worker", "--processes", "1", "--threads", "1"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TIDINGS_SMTP_URL", "mail.example.com", "tidings: configuration error: TIDINGS_SMTP_URL must be a URL"),
        (
            "TIDINGS_BROKER_URL",
            "amqp://127.0.0.1:notaport/",
            "tidings: configuration error: TIDINGS_BROKER_URL has an invalid port",
        ),
        (
            "TIDINGS_SMTP_TIMOUT",
            "5",
            "tidings: configuration error: TIDINGS_SMTP_TIMOUT is not a Tidings setting "
            "(did you mean TIDINGS_SMTP_TIMEOUT?)",
        ),
    ],
)
def test_the_worker_refuses_to_start_with_a_bad_setting_and_says_why_in_one_line(
    deployment: Deployment, name: str, value: str, message: str
) -> None:
    # when
    result = run_worker({**deployment.env, name: value})
    # then
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert [line for line in output.splitlines() if line.startswith("tidings:")] == [
        message + line_rest(output, message)
    ]
    assert "Traceback" not in output


def line_rest(output: str, prefix: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith(prefix))
    return line[len(prefix) :]


def test_the_worker_refuses_to_start_when_the_database_cannot_be_opened(deployment: Deployment) -> None:
    # given a database URL naming a directory that does not exist
    env = {**deployment.env, "TIDINGS_DATABASE_URL": "sqlite:////nonexistent/dir/tidings.db"}
    # when
    result = run_worker(env)
    # then
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "tidings: cannot start: OperationalError: unable to open database file" in output
    assert "Traceback" not in output


def test_the_scheduler_refuses_to_start_with_a_bad_setting_and_says_why_in_one_line(deployment: Deployment) -> None:
    # when
    result = subprocess.run(
        [str(Path(sys.executable).parent / "periodiq"), "schedules"],
        cwd=PROJECT_ROOT,
        env={**deployment.env, "TIDINGS_LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # then
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert [line for line in output.splitlines() if line.startswith("tidings:")] == [
        "tidings: configuration error: TIDINGS_LOG_FORMAT must be one of console, json"
    ]
    assert "Traceback" not in output


@pytest.mark.integration
def test_worker_groups_starting_together_on_a_new_sqlite_file_both_start(deployment: Deployment) -> None:
    # given four groups (as the Procfile's, more of them), started together on a database file not made yet
    groups = [deployment.worker(processes=2, threads=2) for _ in range(4)]
    # when
    for group in groups:
        group.start_async()
    # then every process migrates or waits for the others, and all eight become ready
    for group in groups:
        group.wait_ready(timeout=60)
    logs = "".join(group.log() for group in groups)
    assert "cannot start" not in logs
    assert logs.count("migrated_from=0") + logs.count('"migrated_from": 0') == 1
