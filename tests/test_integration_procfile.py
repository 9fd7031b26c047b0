"""The Procfile as operators run it: separate worker groups keep a slow SMTP server away from in-app.

`tidings run` starts every Procfile line: the `worker`, `sender` and `hooks` dramatiq groups and the scheduler.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from dispatcher.amqp.publisher import build_event
from dispatcher.core.settings import PROJECT_ROOT
from dispatcher.storage.models import InboxItem, User
from tests.support.deployment import Deployment
from tests.support.events import invite
from tests.support.procfile import option, procfile_groups
from tests.support.publishing import publish_as_tidings, publish_users_as_tidings
from tests.support.smtp import SmtpServer
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 12
USERS = ["ana", "bo", "cara"]


def test_a_slow_smtp_server_does_not_delay_in_app_delivery(deployment: Deployment, smtp_server: SmtpServer) -> None:
    # given every Procfile process running, and an SMTP server taking 3 s per message
    smtp_server.handler.delay = 3.0
    processes = sum(option(arguments, "--processes") for arguments in procfile_groups(deployment.namespace).values())
    log_path = deployment.tmp_path / "run.log"
    with open(log_path, "wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "dispatcher.cli", "run"],
            cwd=PROJECT_ROOT,
            env=deployment.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: log_path.read_text().count("Worker process is ready") == processes,
            timeout=30,
            what=f"the {processes} worker processes of the worker, sender and hooks groups",
        )
        deployment.use_database()
        publish_users_as_tidings(deployment, USERS)
        wait_for(lambda: User.select().count() == 3, what="the users")
        # when far more email is queued than the sender has threads
        publish_as_tidings(deployment, *(build_event("team.invite.sent", invite(USERS)) for _ in range(EVENTS)))
        # then in-app delivery finishes while the emails are still going out
        wait_for(lambda: InboxItem.select().count() == EVENTS * 3, timeout=5, what="every in-app row")
        assert len(smtp_server.messages) < EVENTS * 3 / 2
        wait_for(lambda: len(smtp_server.messages) == EVENTS * 3, timeout=60, what="every email, eventually")
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=40)
