"""A slow receiver stops email for no one (security finding 5).

An HTTPS webhook receiver answering one byte every 4 s never trips the 10 s
per-read timeout. When email, Discord and webhooks shared the `sender` group's
eight threads, eight such requests held them all and a critical email waited 45 s
and more. Now email has its own group (`sender`), Discord and webhooks theirs
(`hooks`), and every outward request has a total deadline, from connect to last
byte (TIDINGS_HTTP_TOTAL_TIMEOUT).
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from dispatcher.amqp.publisher import build_event
from dispatcher.commands.endpoints import new_secret
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, User, WebhookEndpoint
from tests.support.deployment import Deployment
from tests.support.http import HttpServer, Reply
from tests.support.http import https_server as https_server  # a fixture
from tests.support.procfile import start_procfile
from tests.support.publishing import publish_as_tidings, publish_event_as_tidings
from tests.support.smtp import SmtpServer
from tests.support.tls import Certificate
from tests.support.tls import certificate as certificate  # a fixture
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRICKLE = 4.0  # seconds per byte, as in the finding
HOOKS_THREADS = 8  # the hooks group's threads, as in the Procfile
EVENTS = 2 * HOOKS_THREADS  # webhook events in the burst: enough to keep every hooks thread busy twice over
TOTAL = 8.0  # TIDINGS_HTTP_TOTAL_TIMEOUT here (30 s by default), below the 10 s read timeout to tell them apart
PROMPT = 5.0  # seconds within which the critical email must reach the SMTP server
MARGIN = 2.0  # seconds a request may end after its deadline: a bound on a timeout, not a speed test
DEADLINE_ERROR = f"did not finish within {TOTAL:g} s (TIDINGS_HTTP_TOTAL_TIMEOUT)"
SOURCE = "/slow-receivers"


@pytest.fixture
def trickling_receiver(https_server: HttpServer) -> HttpServer:
    """An HTTPS receiver that answers every request one byte every 4 s, from its status line on."""
    https_server.default = Reply(trickle_headers=TRICKLE)
    return https_server


def webhook_deliveries(event_ids: list[str]) -> list[Delivery]:
    return list(Delivery.select().join(Event).where(Delivery.channel == "webhook", Event.event_id.in_(event_ids)))


def all_cut_at_the_deadline(event_ids: list[str]) -> list[Delivery]:
    """The webhook deliveries of these events once the deadline has ended each one's attempt (else [])."""
    cut = [
        d
        for d in webhook_deliveries(event_ids)
        if d.status == DeliveryStatus.PENDING and DEADLINE_ERROR in (d.last_error or "")
    ]
    return cut if len(cut) == len(event_ids) else []


def test_webhooks_to_a_trickling_receiver_neither_hold_up_a_critical_email_nor_hang_past_their_deadline(
    deployment: Deployment, smtp_server: SmtpServer, trickling_receiver: HttpServer, certificate: Certificate
) -> None:
    # given the Procfile's groups, a user with an email address, and a webhook endpoint for match.* on a receiver
    # that answers a byte every 4 s; a retry of a cut webhook waits 5 minutes, so each event is tried once here
    deployment.configure(
        **certificate.https_settings(),
        TIDINGS_HTTP_TOTAL_TIMEOUT=f"{TOTAL:g}",
        TIDINGS_WEBHOOK_RETRY_SCHEDULE="0,300",
    )
    start_procfile(deployment)
    publish_event_as_tidings(
        deployment, "tidings.user.upsert", {"id": "ana", "email": "ana@example.com"}, source=SOURCE
    )
    publish_event_as_tidings(
        deployment,
        "tidings.webhook.upsert",
        {"id": "scores", "url": trickling_receiver.url("/hooks/scores"), "secret": new_secret(), "types": ["match.*"]},
        source=SOURCE,
    )
    wait_for(
        lambda: User.select().count() == 1 and WebhookEndpoint.select().count() == 1,
        what="the user and the webhook endpoint",
    )

    # when a burst of match events goes to the receiver, and every hooks thread is stuck in a trickling answer
    ids = [f"match-{n}" for n in range(EVENTS)]
    match_started = {"recipients": ["ana"], "tournament_name": "Cup", "opponent_name": "Owls"}
    publish_as_tidings(deployment, *(build_event("match.started", match_started, source=SOURCE, id=i) for i in ids))
    wait_for(
        lambda: len(trickling_receiver.requests()) >= HOOKS_THREADS,
        timeout=15,
        what="a trickling request on every hooks thread",
    )
    first_request = trickling_receiver.requests()[0].at
    # and then a critical event comes for the user
    published = time.monotonic()
    publish_event_as_tidings(
        deployment, "payout.received", {"recipients": ["ana"], "amount": "250.00", "currency": "EUR"}, source=SOURCE
    )

    # then its email reaches the SMTP server promptly, while the webhooks are still trickling
    [email] = wait_for(
        lambda: smtp_server.messages_to("ana@example.com"),
        timeout=PROMPT,
        interval=0.05,
        what="the critical email while the webhooks trickle",
    )
    email_took = time.monotonic() - published
    assert "250.00 EUR" in str(email["Subject"])
    assert time.monotonic() < first_request + TOTAL, "the email did not wait for any deadline"
    assert not any(d.status == DeliveryStatus.SENT for d in webhook_deliveries(ids))

    # and every webhook request is cut at its deadline, none left trickling on
    cut = wait_for(
        lambda: all_cut_at_the_deadline(ids),
        timeout=2 * (TOTAL + MARGIN) + 10,
        interval=0.2,
        what="the deadline to cut every webhook request",
    )
    attempt_took = [(d.updated_at - d.claimed_at) / dt.timedelta(seconds=1) for d in cut]
    assert all(TOTAL <= took < TOTAL + MARGIN for took in attempt_took), attempt_took
    assert all(d.attempts == 1 and "/hooks/scores" not in d.last_error for d in cut)
    print(
        f"\n{EVENTS} webhooks to a receiver answering a byte every {TRICKLE:g} s: the critical email reached SMTP "
        f"{email_took:.2f} s after it was published; each webhook request was cut after "
        f"{min(attempt_took):.2f}–{max(attempt_took):.2f} s (deadline {TOTAL:g} s)"
    )
