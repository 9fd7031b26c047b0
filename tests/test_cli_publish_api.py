"""`tidings publish --api URL`: an event POSTed to a Tidings' /v1/events, the server's answer printed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dispatcher.core.settings import Settings
from dispatcher.storage.models import InboxItem, User
from tests.support.cli import run
from tests.support.deployment import Deployment
from tests.support.events import cloud_event, invite
from tests.support.services import free_port
from tests.support.wait import wait_for

EVENTS_KEY = "cli-events-key-0123456789abcdefghijklmnopqr"
COMMANDS_KEY = "cli-commands-key-0123456789abcdefghijklmnop"
API_KEYS = f"app:events:{EVENTS_KEY},ops:events+commands:{COMMANDS_KEY}"


@pytest.mark.integration
def test_publish_with_api_posts_the_event_and_prints_the_servers_answer(
    capsys: pytest.CaptureFixture[str], running: Deployment, tmp_path: Path
) -> None:
    # given the web process beside a worker, and the CLI with an events key in TIDINGS_API_KEY
    settings = dataclasses.replace(running.settings, api_key=EVENTS_KEY)
    commands_key = tmp_path / "commands-key"
    commands_key.write_text(COMMANDS_KEY + "\n")  # as `tidings dev` writes it, with a newline
    with running.web(TIDINGS_API_KEYS=API_KEYS).start() as web:
        # when
        data = json.dumps(invite(["ana"]))
        code, out, err = run(
            capsys, settings, "publish", "team.invite.sent", "--id", "inv-1", "--data", data, "--api", web.url
        )
        # then the 202's id and source are printed, and the event reaches ana's inbox
        assert (code, out, err) == (0, f"published team.invite.sent id=inv-1 source=/tidings/cli to {web.url}\n", "")
        wait_for(lambda: InboxItem.get_or_none(InboxItem.user_id == "ana"), what="ana's notification")

        # when a command is posted with the events key alone, then with the key from a file that has the scope
        upsert = tmp_path / "upsert.json"
        upsert.write_text(json.dumps(cloud_event("tidings.user.upsert", {"id": "bo", "email": "bo@example.com"})))
        code, out, err = run(capsys, settings, "publish", "--file", str(upsert), "--api", web.url)
        # then the first is refused with the problem's detail, and the second applies
        assert (code, out) == (1, "")
        assert err.startswith(f"tidings: error: {web.url} answered 403 to POST /v1/events: tidings.user.upsert is")
        assert err.endswith("(an API key needs the 'commands' scope)\n") and len(err.splitlines()) == 1
        argv = ["publish", "--file", str(upsert), "--api", web.url + "/", "--api-key-file", str(commands_key)]
        assert run(capsys, settings, *argv)[0] == 0
        wait_for(lambda: User.get_or_none(User.id == "bo"), what="bo, upserted")

        # when an event breaks the contract, or the key is not one the server knows
        code, _, err = run(
            capsys, settings, "publish", "team.invite.sent", "--data", '{"recipients": ["ana"]}', "--api", web.url
        )
        assert code == 1 and err.startswith(f"tidings: error: {web.url} answered 422 to POST /v1/events: ")
        assert "inviter_name" in err
        stranger = dataclasses.replace(settings, api_key="not-a-key-of-this-server-0123456789abcdef")
        code, _, err = run(capsys, stranger, "publish", "team.invite.sent", "--data", "{}", "--api", web.url)
        assert code == 1 and err.startswith(f"tidings: error: {web.url} answered 401 to POST /v1/events: ")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'cli.db'}", api_key=EVENTS_KEY)


def test_publish_with_api_to_a_closed_port_names_the_url_and_the_cause(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, settings, "publish", "system.announcement", "--data", "{}", "--api", url)
    refused = "ConnectionRefusedError: [Errno 111] Connection refused"
    assert (code, err) == (1, f"tidings: error: cannot reach {url}: {refused}\n")


def test_publish_with_api_needs_a_key_from_the_environment_or_a_file(
    capsys: pytest.CaptureFixture[str], settings: Settings, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    keyless = dataclasses.replace(settings, api_key=None)
    code, _, err = run(capsys, keyless, "publish", "system.announcement", "--api", url)
    assert (code, err) == (
        1,
        "tidings: error: publishing with --api needs an API key: set TIDINGS_API_KEY, or give --api-key-file FILE\n",
    )
    code, _, err = run(capsys, keyless, "publish", "system.announcement", "--api", url, "--api-key-file", "/nope")
    assert (code, err) == (1, "tidings: error: cannot read the API key from /nope: No such file or directory\n")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    code, _, err = run(capsys, keyless, "publish", "system.announcement", "--api", url, "--api-key-file", str(empty))
    assert (code, err) == (1, f"tidings: error: {empty} is empty: it should hold an API key\n")
    code, _, err = run(capsys, keyless, "publish", "system.announcement", "--api-key-file", str(empty))
    assert (code, err) == (1, "tidings: error: --api-key-file goes with --api URL\n")


def test_the_api_key_is_read_from_tidings_api_key_and_never_shown() -> None:
    settings = Settings.from_env({"TIDINGS_API_KEY": f" {EVENTS_KEY} "})
    assert settings.api_key == EVENTS_KEY
    assert EVENTS_KEY not in repr(settings)
