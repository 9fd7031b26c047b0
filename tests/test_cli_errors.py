"""How `tidings` fails: one line on stderr and exit status 1, never a traceback; quietly when its reader has gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher.core.settings import PROJECT_ROOT, Settings
from dispatcher.storage.db import init_database
from dispatcher.storage.migrate import migrate
from dispatcher.storage.models import User
from tests.support.cli import run
from tests.support.services import free_port

ANNOUNCEMENT = '{"recipients": ["ana"], "title": "Hi", "message": "Hello"}'


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # a broker nobody listens on: nothing here may reach RabbitMQ
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'cli.db'}",
        broker_url=f"amqp://guest:s3cret@127.0.0.1:{free_port()}/%2F",
    )


# --- publish: files and data -------------------------------------------------------------------------------------


def test_publish_of_a_missing_file_is_an_error_without_a_traceback(capsys, settings: Settings) -> None:
    code, out, err = run(capsys, settings, "publish", "--file", "/nonexistent.json")
    assert (code, out, err) == (1, "", "tidings: error: cannot read /nonexistent.json: No such file or directory\n")


def test_publish_of_a_directory_is_an_error_without_a_traceback(capsys, settings: Settings, tmp_path: Path) -> None:
    code, _, err = run(capsys, settings, "publish", "--file", str(tmp_path))
    assert (code, err) == (1, f"tidings: error: cannot read {tmp_path}: Is a directory\n")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"specversion": ', "is not JSON: Expecting value: line 1 column 17 (char 16)"),
        (b"\xff\xfe\xfa", "is not UTF-8 text"),
        (b"[1, 2]", "is JSON but not an object (it is a list)"),
    ],
)
def test_publish_of_a_file_without_a_json_object_names_the_file_and_why(
    capsys, settings: Settings, tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "event.json"
    path.write_bytes(content)
    code, _, err = run(capsys, settings, "publish", "--file", str(path))
    assert (code, err) == (1, f"tidings: error: {path} {reason}\n")


def test_publish_with_data_that_is_not_a_json_object_says_so(capsys, settings: Settings) -> None:
    code, _, err = run(capsys, settings, "publish", "system.announcement", "--data", "{nope")
    assert code == 1 and err.startswith("tidings: error: --data is not JSON: Expecting property name")


def test_publish_of_a_file_with_a_type_as_well_is_refused(capsys, settings: Settings, tmp_path: Path) -> None:
    code, _, err = run(capsys, settings, "publish", "system.announcement", "--file", str(tmp_path / "e.json"))
    assert code == 1 and "give either it, or a TYPE with --data" in err


# --- RabbitMQ unreachable ----------------------------------------------------------------------------------------


def test_publish_with_rabbitmq_down_names_the_url_without_its_password_and_the_cause(
    capsys, settings: Settings
) -> None:
    # when
    code, out, err = run(capsys, settings, "publish", "system.announcement", "--data", ANNOUNCEMENT)
    # then
    port = settings.broker_url.split(":")[-1].split("/")[0]
    assert (code, out) == (1, "")
    assert err == (
        f"tidings: error: cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:{port}: "
        "ConnectionRefusedError: [Errno 111] Connection refused\n"
    )
    assert "s3cret" not in err


def test_publish_to_a_host_that_does_not_resolve_is_one_line_too(capsys, settings: Settings) -> None:
    unknown = Settings(database_url=settings.database_url, broker_url="amqp://guest:s3cret@nohost.invalid:5672/%2F")
    code, _, err = run(capsys, unknown, "publish", "system.announcement", "--data", ANNOUNCEMENT)
    assert code == 1
    assert err.startswith("tidings: error: cannot reach RabbitMQ at amqp://guest:***@nohost.invalid:5672: ")
    assert len(err.splitlines()) == 1


def test_dead_letter_commands_with_rabbitmq_down_name_the_url_and_the_cause(capsys, settings: Settings) -> None:
    for argv in (["dlq", "list"], ["dlq", "replay", "--all"], ["dlq", "purge"]):
        code, _, err = run(capsys, settings, *argv)
        assert code == 1, argv
        assert err.startswith("tidings: error: cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:"), argv
        assert err.endswith("ConnectionRefusedError: [Errno 111] Connection refused\n"), argv


# --- a closed pipe -----------------------------------------------------------------------------------------------


def tidings(*argv: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The `tidings` console script, its stdout a pipe this test closes early."""
    script = Path(sys.executable).parent / "tidings"
    return subprocess.Popen(
        [str(script), *argv], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose database holds 2,000 users: `users list` prints far more than a pipe buffers."""
    url = f"sqlite:///{tmp_path / 'pipe.db'}"
    init_database(url)
    migrate()
    User.insert_many([{"id": f"user-{n:04}", "changed_at": "2026-01-01 00:00:00"} for n in range(2000)]).execute()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    return {**clean, "TIDINGS_DATABASE_URL": url}


@pytest.mark.parametrize(
    ("argv", "read"),
    [
        # closed before the command writes anything (it is still starting)
        (["openapi"], 0),
        (["schema"], 0),
        (["users", "list", "--json"], 0),
        # closed after a little, while the command is still writing (2,000 users are far more than a pipe holds)
        (["users", "list", "--json"], 100),
        (["users", "list"], 100),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else f"after {value} bytes",
)
def test_a_reader_that_closes_the_pipe_early_gets_no_traceback(env: dict[str, str], argv: list[str], read: int) -> None:
    # given
    process = tidings(*argv, env=env)
    assert process.stdout is not None and process.stderr is not None
    # when the reader takes a little of the output (or none), then goes, as `| head` does
    process.stdout.read(read)
    process.stdout.close()
    # then
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1
    assert err == ""


def test_a_shell_pipeline_into_head_prints_only_what_head_prints(env: dict[str, str]) -> None:
    script = Path(sys.executable).parent / "tidings"
    result = subprocess.run(
        ["bash", "-c", f"{script} users list --json 2>err.txt | head -n 3; cat err.txt"],
        cwd=env["TIDINGS_DATABASE_URL"].removeprefix("sqlite:///").rsplit("/", 1)[0],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout == '[\n  {\n    "id": "user-0000",\n'
    assert result.stderr == ""
