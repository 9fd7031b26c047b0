"""``tidings dev``: the whole of Tidings in one process, RabbitMQ unreachable, seen from outside over HTTP."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.embedded import DevProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

INVITE = {"team_name": "Night Owls", "inviter_name": "Ben Okafor"}


def upsert_user(dev: DevProcess, user: str) -> None:
    with dev.client() as client:
        response = dev.publish(
            client, "tidings.user.upsert", {"id": user, "email": f"{user}@example.test", "name": user}, id=f"u-{user}"
        )
    assert response.status_code == 202, response.text


def inbox(dev: DevProcess, user: str) -> list[dict]:
    with dev.user_client(user) as client:
        response = client.get("/v1/me/notifications")
    assert response.status_code == 200, response.text
    items: list[dict] = response.json()["items"]
    return items


def test_an_event_published_over_http_reaches_the_inbox_and_the_outbox_without_rabbitmq(tmp_path: Path) -> None:
    with DevProcess(tmp_path / "dev").start() as dev:
        upsert_user(dev, "ana")
        with dev.client() as client:
            response = dev.publish(client, "team.invite.sent", {"recipients": ["ana"], **INVITE}, id="invite-1")
        assert response.status_code == 202, response.text

        # The 202 came after ingest committed: the inbox row follows within the worker's first pass.
        items = wait_for(lambda: inbox(dev, "ana"), timeout=10, what="ana's inbox row")
        assert [item["type"] for item in items] == ["team.invite.sent"]
        assert "Night Owls" in items[0]["title"]
        emails = wait_for(dev.emails, timeout=10, what="the email in the outbox")
        assert len(emails) == 1 and b"ana@example.test" in emails[0].read_bytes()

        with dev.client() as client:
            listing = client.get("/dev/outbox")
            page = client.get(f"/dev/outbox/{emails[0].name}")
            html = client.get(f"/dev/outbox/{emails[0].name}/html")
            readiness = client.get("/readyz")
        assert listing.status_code == 200 and emails[0].name in listing.text
        assert "Night Owls" in listing.text
        assert page.status_code == 200 and "<iframe" in page.text and "sandbox" in page.text
        assert html.headers["content-security-policy"].startswith("sandbox;")
        assert readiness.json() == {"database": "ok", "broker": "ok (embedded: no broker)", "channels_off": []}
    assert "AMQPConnectionError" not in dev.log(), "nothing in the embedded mode may try RabbitMQ"


def test_an_event_the_contract_refuses_gets_422_and_leaves_nothing(tmp_path: Path) -> None:
    with DevProcess(tmp_path / "dev").start() as dev, dev.client() as client:
        missing = dev.publish(client, "team.invite.sent", {"recipients": ["ana"]}, id="bad-1")
        bad_command = dev.publish(client, "tidings.user.upsert", {"id": "ana", "timezone": "Mars/Base"}, id="bad-2")
    assert missing.status_code == 422 and "team_name" in missing.json()["detail"]
    assert bad_command.status_code == 422, bad_command.text
    database = sqlite3.connect(tmp_path / "dev" / ".tidings" / "tidings.db")
    assert database.execute("SELECT count(*) FROM event").fetchone() == (0,)


def test_the_pages_escape_what_events_carry_and_refuse_names_outside_the_outbox(tmp_path: Path) -> None:
    with DevProcess(tmp_path / "dev").start() as dev:
        upsert_user(dev, "ana")
        hostile = {"recipients": ["ana"], "team_name": "<script>alert(1)</script>", "inviter_name": "Ben"}
        with dev.client() as client:
            assert dev.publish(client, "team.invite.sent", hostile, id="x-1").status_code == 202
        wait_for(dev.emails, timeout=10, what="the email")
        with dev.client() as client:
            listing = client.get("/dev/outbox")
            traversal = client.get("/dev/outbox/..%2F.tidings%2Fsecrets.json")
            odd = client.get("/dev/outbox/secrets.json")
    assert "<script>alert(1)</script>" not in listing.text and "&lt;script&gt;" in listing.text
    assert traversal.status_code == 404 and odd.status_code == 404
    assert dev.secrets["api_key"] not in traversal.text + odd.text


def test_the_demo_fills_the_inbox_the_outbox_and_the_webhooks_page(tmp_path: Path) -> None:
    with DevProcess(tmp_path / "dev", args=["--demo"]).start() as dev:
        wait_for(lambda: "Demo: 13 events published" in dev.log(), timeout=20, what="the demo")
        types = wait_for(
            lambda: (
                {item["type"] for item in inbox(dev, "ana")}
                >= {"payout.received", "ranking.changed", "series.completed"}
                and {item["type"] for item in inbox(dev, "ana")}
            ),
            timeout=15,
            what="ana's demo notifications",
        )
        assert {"team.invite.accepted", "match.scheduled", "match.completed"} <= types
        [series] = [item for item in inbox(dev, "ana") if item["type"] == "series.completed"]
        assert series["title"] == "Night Owls lost the series 1-2 against Red Foxes"
        assert [item["type"] for item in inbox(dev, "chloe")] == ["team.invite.sent"]
        wait_for(lambda: len(dev.emails()) >= 5, timeout=15, what="the demo's emails")

        def webhooks_page() -> str:
            with dev.client() as client:
                text: str = client.get("/dev/webhooks").text
            return text if text.count("signature valid (endpoint demo)") >= 6 else ""

        page = wait_for(webhooks_page, timeout=15, what="the demo's signed webhooks")
        assert "not valid" not in page
        assert "ranking.changed" in page and "payout.received" in page
    # A second --demo on the same directory adds nothing: the events have fixed ids.
    before = len(inbox_rows(tmp_path / "dev"))
    with DevProcess(tmp_path / "dev", args=["--demo"]).start() as dev:
        wait_for(lambda: dev.log().count("Demo: 13 events published") == 2, timeout=20, what="the second demo")
    assert len(inbox_rows(tmp_path / "dev")) == before


def inbox_rows(directory: Path) -> list[tuple[int, str, str]]:
    """(delivery id, user, type) of every inbox row, read from the embedded mode's own SQLite file."""
    with sqlite3.connect(directory / ".tidings" / "tidings.db") as database:
        return database.execute("SELECT delivery_id, user_id, type FROM inbox_item").fetchall()


def test_a_sigkill_mid_burst_then_a_restart_leaves_every_accepted_event_in_each_inbox_exactly_once(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "dev"
    users = ["ana", "ben", "chloe"]
    accepted: list[str] = []
    lock = threading.Lock()
    dev = DevProcess(directory).start()
    for user in users:
        upsert_user(dev, user)

    def publish(number: int) -> None:
        try:
            with dev.client() as client:
                response = dev.publish(client, "team.invite.sent", {"recipients": users, **INVITE}, id=f"e-{number}")
        except Exception:  # the kill cuts requests off: those were not accepted
            return
        if response.status_code == 202:
            with lock:
                accepted.append(f"e-{number}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(publish, number) for number in range(400)]
        wait_for(lambda: len(accepted) >= 60, timeout=60, what="60 events accepted")
        dev.kill()  # mid-burst: requests in flight, deliveries queued in memory only
        concurrent.futures.wait(futures)
    assert 60 <= len(accepted) < 400, "the kill must land in the middle of the burst"
    with sqlite3.connect(directory / ".tidings" / "tidings.db") as database:
        left_unfinished = database.execute(
            "SELECT count(*) FROM delivery WHERE status = 'sending' OR (status = 'pending' AND NOT held)"
        ).fetchone()[0]

    with DevProcess(directory).start() as restarted:
        expected = {(event_id, user) for event_id in accepted for user in users}

        def delivered() -> set[tuple[str, str]]:
            with sqlite3.connect(directory / ".tidings" / "tidings.db") as database:
                rows = database.execute(
                    "SELECT e.event_id, i.user_id FROM inbox_item i "
                    "JOIN delivery d ON d.id = i.delivery_id JOIN event e ON e.id = d.event_id"
                ).fetchall()
            return {(event_id, user) for event_id, user in rows}

        wait_for(lambda: delivered() >= expected, timeout=90, what="every accepted event in every inbox")
        # what the kill left unfinished (emails: in-app rows commit with their event) was sent again
        assert ("unfinished_deliveries_requeued" in restarted.log()) == (left_unfinished > 0), left_unfinished
    with sqlite3.connect(directory / ".tidings" / "tidings.db") as database:
        per_delivery = collections.Counter(row[0] for row in database.execute("SELECT delivery_id FROM inbox_item"))
        per_event_user = collections.Counter(
            database.execute(
                "SELECT e.event_id, i.user_id FROM inbox_item i "
                "JOIN delivery d ON d.id = i.delivery_id JOIN event e ON e.id = d.event_id"
            ).fetchall()
        )
        unfinished = database.execute(
            "SELECT count(*) FROM delivery WHERE channel = 'in_app' AND status != 'sent'"
        ).fetchone()
    assert max(per_delivery.values()) == 1 and max(per_event_user.values()) == 1, "an inbox row twice"
    assert unfinished == (0,)


def test_the_publish_command_the_banner_prints_reaches_the_embedded_inbox(tmp_path: Path) -> None:
    with DevProcess(tmp_path / "dev").start() as dev:
        upsert_user(dev, "ana")
        banner = wait_for(lambda: "tidings publish --api" in dev.log() and dev.log(), timeout=10, what="the banner")
        assert f"--api {dev.url} --api-key-file {tmp_path / 'dev' / '.tidings' / 'api-key'}" in banner
        published = subprocess.run(
            [
                str(Path(sys.executable).parent / "tidings"),
                "publish",
                "--api",
                dev.url,
                "--api-key-file",
                ".tidings/api-key",
                "team.invite.sent",
                "--data",
                json.dumps({"recipients": ["ana"], **INVITE}),
            ],
            cwd=tmp_path / "dev",
            env=dev.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert published.returncode == 0, published.stderr
        assert published.stdout.startswith("published team.invite.sent id=")
        wait_for(lambda: inbox(dev, "ana"), timeout=10, what="ana's invite")
