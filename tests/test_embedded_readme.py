"""The README's first two commands, as a newcomer types them: a fresh virtualenv, then ``tidings dev``."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.embedded import DevProcess, tidings_env
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def readme_try_it() -> tuple[str, str]:
    """The two lines after ``<!-- try-it -->``: the install, then the run."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("<!-- try-it -->")
    block = [line for line in lines[start + 1 : start + 6] if line and not line.startswith("```")]
    assert len(block) >= 2, "README.md's try-it block holds two commands"
    return block[0], block[1]


def copy_of_the_project(target: Path) -> Path:
    """The project's files (what a clone would hold, with the uncommitted changes), without its .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    return target


def test_the_readmes_first_two_commands_in_a_fresh_virtualenv_deliver_an_event_with_rabbitmq_unreachable(
    tmp_path: Path,
) -> None:
    install, run = readme_try_it()
    project = copy_of_the_project(tmp_path / "tidings")
    installed = subprocess.run(
        ["bash", "-c", install], cwd=project, env=tidings_env(), capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    assert not (project / ".venv" / "bin" / "pytest").exists(), "the README installs no test tools"

    command = shlex.split(run)
    with DevProcess(project, command=command).start() as dev:
        wait_for(lambda: "Demo: 13 events published" in dev.log(), timeout=30, what="the demo")
        with dev.client() as client:
            response = dev.publish(
                client,
                "team.invite.sent",
                {"recipients": ["ben"], "team_name": "Wolves", "inviter_name": "Mira"},
                id="readme-1",
            )
        assert response.status_code == 202, response.text

        def bens_invite() -> list[dict]:
            with dev.user_client("ben") as client:
                items: list[dict] = client.get("/v1/me/notifications").json()["items"]
            return [item for item in items if "Wolves" in item["title"]]

        wait_for(bens_invite, timeout=15, what="ben's invite in his inbox, read over the API")
        wait_for(
            lambda: any(b"Wolves" in path.read_bytes() for path in dev.emails()),
            timeout=15,
            what="ben's invite in ./outbox",
        )
    assert "cannot start" not in dev.log()
